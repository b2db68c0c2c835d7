import fs from 'node:fs'
import os from 'node:os'
import type { DfsClient, ListEntry } from '../client/dfsClient'
import { baseName } from '../shared/paths'
import { O_ACCMODE } from '../client/openFiles'
import type { OpenFileTable, TimeArgument } from '../client/openFiles'
import { isHiddenName, UnlinkedFiles } from '../client/unlinkedFiles'
import type { FileMeta } from '../shared/protocol'
import { noteFailure } from '../shared/requestContext'
import { errnoOf } from './errno'
import { DROP_CACHED_PAGES, OPEN_DIRECT_IO } from './loadFuse'
import { FuseLocks } from './fuseLocks'
import type { FuseFlockRequest, FuseLockRequest } from './loadFuse'
import { InodeNumbers } from './inodeNumbers'

type Callback = (code: number, ...values: unknown[]) => void

export interface FuseStat {
  mode: number
  size: number
  nlink: number
  ino: number
  uid: number
  gid: number
  blocks: number
  blksize: number
  mtime: number
  atime: number
  ctime: number
}

const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const S_IFLNK = 0o120000
/** Permission bits of a mode the kernel hands over (it has already applied the caller's umask). */
const PERMISSION_BITS = 0o7777
const { O_APPEND, O_RDWR } = fs.constants

/**
 * How the kernel is to treat a handle. One opened for appending bypasses the page cache: the
 * kernel would put each appended write into its cached pages at the end of the file as it
 * knows it, while the file server puts the bytes at the file's real end, after appends of
 * other mounts the kernel has not seen; a reader of this mount would then read its own lines
 * out of place, or zeros. A reader of a file this mount is appending to bypasses it too: the
 * kernel cuts a cached read at the size it knows, which its own appends have moved on from
 * a size other mounts' appends have overtaken, so the read would end inside another mount's
 * line.
 *
 * One opened for reading and writing bypasses it too: such a file may be shared through locks
 * (a database: sqlite keeps it open and reads its pages after each fcntl lock). Through
 * direct_io every read reaches this mount, whose lock operation moves the handle to the
 * current version first (OpenFileTable.revalidate), as NFS revalidates at lock. The price:
 * such reads are not served from the page cache. sqlite's WAL index (NAME-shm, mapped
 * shared, used only within one machine) keeps the page cache.
 * Other handles opened read-only keep the page cache (auto_cache drops it at open when the
 * file changed).
 *
 * A shared mapping (mmap MAP_SHARED) of a direct_io handle goes through the page cache
 * (patch level 7 allows it); pages mapped before another mount's change are dropped when a
 * lock moves a handle on (DROP_CACHED_PAGES). That would also let handles opened for reading
 * and writing keep the page cache; they do not yet: this is the path every database test
 * runs, and such a change wants measurements of its own.
 */
function cachingOf (path: string, flags: number, appendedHere: boolean): number {
  if ((flags & O_APPEND) !== 0 || appendedHere) return OPEN_DIRECT_IO
  return (flags & O_ACCMODE) === O_RDWR && !path.endsWith(SQLITE_SHARED_MEMORY_SUFFIX) ? OPEN_DIRECT_IO : 0
}

/**
 * The longest the kernel keeps a file's attributes (kernelKeepsFor): `ls -l` and `stat` run
 * again within it make no FUSE round trip. Short, so that a change the mount missed (none
 * should be) shows within a second.
 */
const KERNEL_ATTRIBUTES_MS = 1000
/** Taken off the callback's lease as this mount counts it: the kernel's copy ends first. */
const KERNEL_ATTRIBUTES_MARGIN_MS = 200

/** sqlite's WAL index file, NAME-shm: mapped with mmap(MAP_SHARED) (see cachingOf). */
const SQLITE_SHARED_MEMORY_SUFFIX = '-shm'
const EPERM = -os.constants.errno.EPERM
const ENOTSUP = -os.constants.errno.ENOTSUP
/** fallocate(2)'s mode bit that leaves the size alone (linux/falloc.h); Node does not export it. */
const FALLOC_FL_KEEP_SIZE = 0x01

/**
 * `ino`: the number the mount shows (use_ino). A folder's link count is 1: the count of its
 * subfolders would cost a listing per stat, a folder may span servers, and 1 is what
 * find and fts take as "unknown" (as on btrfs), where 2 would be too low and make them
 * skip subfolders.
 */
export function statOf (meta: FileMeta, ino: number, owner: FileOwner = mountingUser()): FuseStat {
  const isDir = meta.kind === 'dir'
  const size = meta.size
  const mtime = meta.mtimeMs || Date.now()
  return {
    mode: meta.kind === 'symlink' ? S_IFLNK | 0o777 : (isDir ? S_IFDIR : S_IFREG) | (meta.mode ?? (isDir ? 0o755 : 0o644)),
    size,
    nlink: 1,
    ino,
    uid: owner.uid,
    gid: owner.gid,
    blocks: Math.ceil(size / 512),
    blksize: 4096,
    mtime,
    atime: mtime,
    ctime: mtime
  }
}

/** Who owns every file as the mount shows it (dfs keeps no owners). */
export interface FileOwner {
  uid: number
  gid: number
}

function mountingUser (): FileOwner {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }
}

/**
 * Answers a FUSE callback from a promise. fuse-native needs a number as the first argument
 * of every callback (anything else leaves the kernel request hanging), so every outcome,
 * thrown or not, ends in exactly one numeric answer.
 */
function answer<T> (cb: Callback, work: () => Promise<T>, reply: (value: T) => unknown[] = () => []): void {
  work().then(
    (value) => cb(0, ...reply(value)),
    (err: unknown) => cb(failed(err))
  )
}

/** The errno for a failure, which is noted for the mount's log (an EIO is logged with its cause). */
function failed (err: unknown): number {
  noteFailure(err)
  return errnoOf(err)
}

/** A synchronous answer, or undefined when there is none (a bad path: the asynchronous way reports it). */
function knownOrUndefined<T> (known: () => T | undefined): T | undefined {
  try {
    return known()
  } catch {
    return undefined
  }
}

/**
 * The FUSE operations: a thin adapter from syscalls to the client proxy and its open-file
 * table. Nothing here decides anything about caching, locking or versions.
 */
export function createFuseOperations (client: DfsClient, files: OpenFileTable, owner: FileOwner = mountingUser()): Record<string, unknown> {
  const refuse = (code: number) => (...args: unknown[]) => (args[args.length - 1] as Callback)(code)
  const locks = new FuseLocks(client.advisoryLocks)
  const inodes = new InodeNumbers()
  // A file another mount renamed while open here: its descriptors follow it, with its number.
  client.onRenamedElsewhere((from, to) => {
    if (files.renamedElsewhere(from, to)) inodes.renamed(from, to)
  })
  const described = (meta: FileMeta): FuseStat => statOf(meta, inodes.of(meta.path), owner)
  // Descriptors of files unlinked while open here (see unlinkedFiles.ts): served from a local copy.
  const unlinked = new UnlinkedFiles(client.workDir)
  /** ftruncate of a handle, whose file may have been unlinked while open (then its name is a hidden one). */
  const truncateHandle = async (fd: number, size: number): Promise<void> => unlinked.has(fd) ? await unlinked.truncate(fd, size) : await files.truncate(fd, size)
  /**
   * How long the kernel may keep a file's attributes, in ms (patch level 8): while its
   * callback vouches for them (another mount's change breaks it first, and the mount then
   * has the kernel drop them: mountDfs) and nothing of this mount's is at work on the file,
   * for at most KERNEL_ATTRIBUTES_MS, ending before the callback's lease could run out.
   * Folders, links and files open here answer 0: asked each time, as before.
   */
  const kernelKeepsFor = (path: string, meta: FileMeta): number => {
    if (meta.kind !== 'file' || unlinked.holds(path) || !files.isQuiet(path)) return 0
    const vouched = client.attributesVouchedForMs(path) - KERNEL_ATTRIBUTES_MARGIN_MS
    return vouched > 0 ? Math.min(KERNEL_ATTRIBUTES_MS, vouched) : 0
  }
  /**
   * A lock (fcntl or flock) granted: the file's handles move to the version now current, and
   * the kernel drops the pages it cached of the file if one moved (the lock's answer).
   */
  const refreshedAtLock = async (path: string): Promise<typeof DROP_CACHED_PAGES | undefined> =>
    await files.revalidate(path) ? DROP_CACHED_PAGES : undefined
  return {
    init: (cb: Callback) => cb(0),
    getattr: (path: string, cb: Callback) => {
      // What the mount knows with no request (a callback, a held folder, the memo) is answered
      // at once, with no promise made: `ls -l` asks once per entry, each a FUSE round trip.
      const known = unlinked.holds(path) ? undefined : knownOrUndefined(() => files.attributesKnown(path))
      if (known !== undefined) cb(0, described(known), kernelKeepsFor(path, known))
      else answer(cb, async () => await unlinked.attributes(path) ?? await files.attributes(path), (meta) => [described(meta), kernelKeepsFor(path, meta)])
    },
    // Files created here whose create rides in their close are listed here at once.
    readdir: (path: string, cb: Callback) => answer(cb, async () => withUnborn(await client.list(path), files.unbornIn(path)), (entries) => {
      const self = described({ path, kind: 'dir', version: 0, size: 0, mtimeMs: 0 })
      return [['.', '..', ...entries.map((e) => e.name)], [self, self, ...entries.map(described)]]
    }),
    // A file gone since the kernel looked its name up answers ESTALE (StaleHandleError), after
    // which the kernel looks the name up once more: see src/shared/errors.ts.
    open: (path: string, flags: number, cb: Callback) => answer(cb, async () => await files.open(path, flags), (id) => [id, cachingOf(path, flags, files.isAppendedHere(path))]),
    // The patched fuse-native (level 4) passes the open flags: O_EXCL decides what a name
    // taken meanwhile means at the close (OpenFileTable.create). The new handle may read and
    // write. The mode is the caller's, after its umask (the kernel applies it): the file server keeps it.
    create: (path: string, mode: number, flags: number, cb: Callback) => answer(cb, async () => await files.create(path, mode & PERMISSION_BITS, flags), (id) => [id]),
    read: (_path: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => {
      const reading = unlinked.has(fd) ? unlinked.read(fd, buffer, length, position) : files.read(fd, buffer, length, position)
      reading.then((n) => cb(n), (err: unknown) => cb(failed(err)))
    },
    write: (_path: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => {
      const data = buffer.subarray(0, length)
      const writing = unlinked.has(fd) ? unlinked.write(fd, data, position) : files.write(fd, data, position)
      writing.then((n) => cb(n), (err: unknown) => cb(failed(err)))
    },
    // An unlinked file's bytes are stored nowhere: flush and fsync have nothing to send.
    flush: (_path: string, fd: number, cb: Callback) => answer(cb, async () => unlinked.has(fd) ? undefined : await files.flush(fd)),
    // The file stays open after an fsync: a file made here may keep its lease for the writes that follow.
    fsync: (_path: string, _datasync: number, fd: number, cb: Callback) => answer(cb, async () => unlinked.has(fd) ? undefined : await files.flush(fd, { staysOpen: true })),
    release: (_path: string, fd: number, cb: Callback) => answer(cb, async () => {
      try {
        if (unlinked.has(fd)) await unlinked.release(fd)
        else await files.release(fd)
      } finally {
        await locks.released(fd)
      }
    }),
    truncate: (path: string, size: number, cb: Callback) => answer(cb, async () => await files.truncatePath(path, size)),
    ftruncate: (_path: string, fd: number, size: number, cb: Callback) => answer(cb, async () => await truncateHandle(fd, size)),
    // Space lives on the file servers, where nothing can be set aside for a file ahead of its
    // bytes: a plain fallocate (posix_fallocate, `fallocate -l`) makes the file at least that
    // long, zeros to its new end as ftruncate makes them; KEEP_SIZE has nothing to do. The
    // modes that change bytes (punch a hole, zero, collapse or insert a range) are refused as
    // a file system without them refuses them (EOPNOTSUPP).
    fallocate: (path: string, fd: number, mode: number, offset: number, length: number, cb: Callback) => {
      if ((mode & ~FALLOC_FL_KEEP_SIZE) !== 0) return cb(ENOTSUP)
      if ((mode & FALLOC_FL_KEEP_SIZE) !== 0) return cb(0)
      answer(cb, async () => {
        const size = unlinked.has(fd) ? (await unlinked.attributes(path))?.size ?? 0 : (await files.attributes(path)).size
        if (offset + length > size) await truncateHandle(fd, offset + length)
      })
    },
    opendir: (_path: string, _flags: number, cb: Callback) => cb(0, 0),
    releasedir: (_path: string, _fd: number, cb: Callback) => cb(0),
    access: (path: string, _mode: number, cb: Callback) => answer(cb, async () => files.isUnborn(path) ? undefined : await client.stat(path)),
    statfs: (_path: string, cb: Callback) => answer(cb, async () => await client.statfs(), (space) => [statfsOf(space.totalBytes, space.freeBytes)]),
    // A hidden name is libfuse's: it unlinks it at the last close, when its bytes went already.
    // sqlite's journal held here (heldJournals.ts) goes with no request. A file created here
    // and not sent yet is sent first (OpenFileTable.settle): the servers decide. A database
    // removed: its held journal is sent first, as a local disk would keep it.
    unlink: (path: string, cb: Callback) => answer(cb, async () => {
      if (unlinked.forget(path)) return
      if (await files.dropHeldJournal(path)) return
      await files.sendHeldJournalOf(path)
      await files.settle(path)
      await client.unlink(path)
    }),
    // libfuse unlinks a file open here by renaming it to a hidden name: the unlink it is
    // (OpenFileTable.detach sends a file made here first, unless it is a held journal).
    rename: (from: string, to: string, cb: Callback) => answer(cb, async () => {
      await files.settleUnder(from)
      if (isHiddenName(to)) await unlinked.hide(files, from, to, async (lease) => await client.unlink(from, { lease }))
      else {
        for (const path of [from, to]) {
          await files.sendHeldJournalOf(path)
          await files.settle(path)
        }
        // Handles open here follow the file (a log rotated under its writer keeps its lines).
        await files.beforeRename(from, to)
        await client.rename(from, to)
        files.renamed(from, to)
      }
      inodes.renamed(from, to)
    }),
    mkdir: (path: string, mode: number, cb: Callback) => answer(cb, async () => {
      await files.settle(path)
      await client.mkdir(path, mode & PERMISSION_BITS)
    }),
    rmdir: (path: string, cb: Callback) => answer(cb, async () => {
      await files.settleUnder(path)
      await client.rmdir(path)
    }),
    // The patched fuse-native (patches/) passes each time as ms, 'now' or 'omit' (UTIME_NOW,
    // UTIME_OMIT: touch -a leaves the mtime alone, touch -m the atime). dfs keeps one mtime
    // per file, so an omitted mtime is the one it has now. Bytes still held back by open
    // handles are sent first: cp -p sets the times before close, and a store at close would
    // stamp the file with the time of the store. (The table flushes only all handles at once.)
    utimens: (path: string, atime: TimeArgument, mtime: TimeArgument, cb: Callback) => answer(cb, async () => await files.setTimes(path, atime, mtime)),
    chmod: (path: string, mode: number, cb: Callback) => answer(cb, async () => files.setUnbornMode(path, mode) ? undefined : await client.chmod(path, mode)),
    // Files belong to whoever mounted (or -o uid=,gid=); tar and cp -p as that user ask for exactly that.
    chown: (_path: string, uid: number, gid: number, cb: Callback) => {
      const same = (uid === owner.uid || uid === 0xffffffff) && (gid === owner.gid || gid === 0xffffffff)
      cb(same ? 0 : EPERM)
    },
    // fcntl and flock locks, held on the lock server for every mount to see (fuseLocks.ts).
    // A lock granted: what the program reads next includes what other mounts stored before.
    // A lock let go of or shared (anything but a write lock taken) may let another mount write
    // the file: a database's journal held here reaches the servers first (heldJournals.ts).
    // A held journal holds no lock (taking one would send it): libfuse's unlock at each of
    // its closes has nothing to do, and must not send it.
    lock: (path: string, _fd: number, request: FuseLockRequest, signal: AbortSignal, cb: Callback) =>
      answer(cb, async () => {
        if (request.type === 'unlock' && files.isHeldJournal(path)) return undefined
        await files.settle(path)
        if (request.cmd !== 'getlk' && request.type !== 'write') await files.sendHeldJournalOf(path)
        const conflict = await locks.lock(path, request, signal)
        if (request.cmd === 'getlk' || request.type === 'unlock') return conflict
        return await refreshedAtLock(path)
      }, (answered) => [answered]),
    flock: (path: string, fd: number, request: FuseFlockRequest, signal: AbortSignal, cb: Callback) =>
      answer(cb, async () => {
        if (request.op === 'unlock' && files.isHeldJournal(path)) return
        await files.settle(path)
        if (request.op !== 'exclusive') await files.sendHeldJournalOf(path)
        await locks.flock(path, fd, request, signal)
        if (request.op === 'unlock') return undefined
        return await refreshedAtLock(path)
      }, (answered) => [answered]),
    // libfuse hands over the link's target first, then where the link goes.
    symlink: (target: string, path: string, cb: Callback) => answer(cb, async () => {
      await files.settle(path)
      return await client.symlink(target, path)
    }),
    readlink: (path: string, cb: Callback) => answer(cb, async () => await client.readlink(path), (target) => [target]),
    link: refuse(ENOTSUP),
    // Only fifos, sockets and devices come here (libfuse makes a regular file's mknod(2) a
    // create): refused with EPERM, as mknod(2) and sshfs do for a type a file system does not hold.
    mknod: refuse(EPERM),
    setxattr: refuse(ENOTSUP),
    removexattr: refuse(ENOTSUP)
  }
}

/** A folder's listing with the files created in it on this mount and not sent yet. */
function withUnborn (listed: ListEntry[], unborn: FileMeta[]): ListEntry[] {
  if (unborn.length === 0) return listed
  const names = new Set(listed.map((entry) => entry.path))
  return [...listed, ...unborn.filter((meta) => !names.has(meta.path)).map((meta) => ({ ...meta, name: baseName(meta.path) }))]
}

/** statfs in 4 KiB blocks, or larger ones where the count would not fit fuse-native's 32 bits. */
export function statfsOf (totalBytes: number, freeBytes: number): Record<string, number> {
  let bsize = 4096
  while (totalBytes / bsize > 0xffffffff) bsize *= 2
  const blocks = Math.floor(totalBytes / bsize)
  const free = Math.floor(freeBytes / bsize)
  return { bsize, frsize: bsize, blocks, bfree: free, bavail: free, files: 1_000_000, ffree: 1_000_000, favail: 1_000_000, namemax: 255 }
}
