import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import nodePath from 'node:path'
import { Readable } from 'node:stream'
import zlib from 'node:zlib'
import { BadPathError, BadRequestError, ConflictError, IsDirectoryError, NotDirectoryError, NotEmptyError, NotFoundError } from '../../src/shared/errors'
import { KeyedMutex } from '../../src/shared/keyedMutex'
import type { FileMeta, MetaKind, StatfsAnswer } from '../../src/shared/protocol'
import { baseName, joinPath, parentOf } from '../../src/shared/paths'
import { diskModeOf, ModeRecord } from './modeRecord'
import { VersionLog } from './versionLog'
import { QUICK_WRITE_BYTES, readFully, syncFile, writeGathered } from '../common/diskSteps'
import { timedSync } from '../common/metrics'
import { crashPoint } from '../common/crashPoints'
import { noteProblem } from '../common/problems'
import { AppendHandles } from './appendHandles'
import { DeferredUnlinks } from './deferredUnlinks'
import { applyRanges, RangeJournal } from './rangeJournal'
import { decodeRanges, encodeRanges } from '../../src/shared/rangeFrames'

/** Opens never follow a symbolic link at the last step: a link is served as a link, never as what it points to. */
const { O_NOFOLLOW } = fs.constants

/**
 * The version a received file gets: above both the sender's and any this server had at the
 * path (a cached copy of either must not look current); a drain's move keeps the sender's
 * when that is already above, so clients' copies stay valid across the move.
 */
function receivedVersion (opts: ReceiveOptions, known: number): number {
  return opts.keepVersion === true ? Math.max(opts.fromVersion, known + 1) : Math.max(opts.fromVersion, known) + 1
}

/** Reads of 1 MiB rather than the default 64 KiB: a quarter fewer round trips per byte sent. */
const READ_CHUNK_BYTES = 1024 * 1024

/** A listing's lstats between two turns of the event loop. */
const LIST_STATS_AT_ONCE = 1024

/** Folder under the root where the server keeps its own state; never served. */
export const STATE_DIR_NAME = '.dfs'

/** Uploads in progress, under the state folder: on the same disk, so a rename moves them into place. */
export const UPLOAD_DIR_NAME = 'tmp'

/** How a received file is placed (see FileStore.receive). */
export interface ReceiveOptions {
  /** Version of the file whose bytes these are; the new version is above it. */
  fromVersion: number
  mtimeMs: number
  mode?: number
  /** A symbolic link's target: the link is placed, and `body` is empty. */
  target?: string
  /** Whether an existing file at the path is replaced; otherwise it is a conflict. */
  replace: boolean
  /** The same file moved here (a drain): it keeps `fromVersion` unless the path had that or more here. */
  keepVersion?: boolean
}

/**
 * Runs first inside a file's write lock: the fencing check belongs there, so that a writer
 * whose lease is superseded while it waits for the lock is refused, not written after.
 */
export type WriteGuard = () => Promise<unknown>
const noGuard: WriteGuard = async () => {}

/**
 * What another server does beside a change's rounds of fsyncs (the directory's claim of
 * a new name, its drop of a removed one), and how to take it back if the change fails.
 */
export interface SideStep {
  run: () => Promise<unknown>
  undo: () => Promise<unknown>
}

export interface OpenedFile {
  meta: FileMeta
  /** Exactly meta.size bytes: appends that land while it streams are not included. */
  stream: Readable
}

/** A promise's outcome, never rejected: a step started early is awaited (and its failure read) later. */
async function settledOf<T> (promise: Promise<T>): Promise<PromiseSettledResult<T>> {
  return (await Promise.allSettled([promise]))[0]
}

/**
 * The files under one root folder, with their versions. Every path given to it is already
 * canonical (src/paths.ts); it still refuses anything that resolves outside the root, such
 * as a symlink pointing out. Writes to one file are serialized; each is on disk before it
 * returns.
 */
export class FileStore {
  private readonly writes = new KeyedMutex()

  /**
   * Files this store gave a second name itself (a rename's link, a new file placed by link),
   * as dev:ino: their other names are inside the root. Any other file with more than one
   * name may be a hard link to a file outside the root, and is not served.
   */
  private readonly ownLinks = new Set<string>()

  /**
   * How many files this store now vouches for as having a second name of its own (ownLinks):
   * only those between the making of a second name and the removal of one, so it stays
   * small however many files the store makes.
   */
  get vouchedLinks (): number {
    return this.ownLinks.size
  }

  /** Per path, the read streams still open (openRead): a range write then leaves their inode alone. */
  private readonly reading = new Map<string, number>()

  /**
   * Per path, the file as it was before the append under way: its bytes reach the disk as
   * they arrive, and until the append is done a stat or listing shows this, not a size that
   * counts half an append under the old version (a reader would take it as the end of the
   * file and read a line cut in two).
   */
  private readonly beforeAppend = new Map<string, FileMeta>()

  /** O_APPEND handles kept between appends to a file. */
  private readonly appendHandles = new AppendHandles()
  /** Removed files, whose space is freed off the request path. */
  private readonly unlinks = new DeferredUnlinks()
  /** The next upload's file, made ahead (takeUpload). */
  private spareUpload: Promise<Upload> | null = null
  /** Where uploadPath names files, and how: see there. */
  private readonly uploadPrefix: string
  private uploadsNamed = 0

  private constructor (
    readonly root: string,
    private readonly realRoot: string,
    private readonly versions: VersionLog,
    private readonly modes: ModeRecord,
    private readonly rangeJournal: RangeJournal
  ) {
    this.uploadPrefix = nodePath.join(root, STATE_DIR_NAME, UPLOAD_DIR_NAME, crypto.randomBytes(6).toString('hex'))
  }

  static async open (root: string): Promise<FileStore> {
    const absolute = nodePath.resolve(root)
    await fsp.mkdir(absolute, { recursive: true })
    const realRoot = await fsp.realpath(absolute)
    // An append a crash cut off leaves the file as before it: cut back to the size recorded first.
    const versions = await VersionLog.open(nodePath.join(absolute, STATE_DIR_NAME), {
      cut: async (filePath, size) => {
        // O_NOFOLLOW: whatever is at the path now, a link is not followed out of the root.
        const handle = await fsp.open(nodePath.join(absolute, filePath), fs.constants.O_RDWR | O_NOFOLLOW).catch(() => null)
        if (handle === null) return
        try {
          const stats = await handle.stat()
          if (stats.isFile() && stats.size > size) {
            await handle.truncate(size)
            await handle.sync()
          }
        } finally {
          await handle.close()
        }
      },
      crcOf: async (filePath, from, to) => await crcOfRange(nodePath.join(absolute, filePath), from, to)
    })
    const modes = await ModeRecord.open(nodePath.join(absolute, STATE_DIR_NAME))
    const rangeJournal = await RangeJournal.open(nodePath.join(absolute, STATE_DIR_NAME))
    // A range write a crash cut short before it was answered: done again, all of it (see RangeJournal).
    for (const intent of await rangeJournal.pending()) {
      const version = versions.get(intent.path) ?? 1
      if (version !== intent.fromVersion && version !== intent.fromVersion + 1) continue
      const handle = await fsp.open(nodePath.join(absolute, intent.path), fs.constants.O_RDWR | O_NOFOLLOW).catch(() => null)
      if (handle === null) continue
      try {
        const stats = await handle.stat()
        if (!stats.isFile() || (intent.inode !== undefined && intent.inode !== inodeOf(stats))) continue
        await applyRanges(handle, decodeRanges(intent.body), intent.size)
        await handle.sync()
      } finally {
        await handle.close()
      }
      if (version === intent.fromVersion) await versions.set(intent.path, intent.fromVersion + 1, intent.changeId)
    }
    await rangeJournal.clear()
    // Uploads cut off by a crash were never acknowledged: nothing in here is worth keeping.
    const uploads = nodePath.join(absolute, STATE_DIR_NAME, UPLOAD_DIR_NAME)
    await fsp.rm(uploads, { recursive: true, force: true })
    await fsp.mkdir(uploads)
    return new FileStore(absolute, realRoot, versions, modes, rangeJournal)
  }

  async close (): Promise<void> {
    // A range write answered before its fsyncs finishes them first (writeRanges).
    await this.writes.idle()
    await this.appendHandles.closeAll()
    await this.unlinks.idle()
    const spare = await this.spareUpload?.catch(() => null)
    this.spareUpload = null
    if (spare) {
      await spare.handle.close()
      await fsp.rm(spare.file, { force: true })
    }
    await this.rangeJournal.close()
    await this.versions.close()
    await this.modes.close()
  }

  /** Every file and folder below a folder (the root: for the report to the directory server). */
  async scan (top = '/'): Promise<FileMeta[]> {
    const found: FileMeta[] = []
    const walk = async (folder: string): Promise<void> => {
      const entries = await fsp.readdir(this.diskPath(folder), { withFileTypes: true })
      for (const entry of entries) {
        if (folder === '/' && entry.name === STATE_DIR_NAME) continue
        const child = joinPath(folder, entry.name)
        if (entry.isDirectory()) {
          found.push(await this.stat(child))
          await walk(child)
        } else if (entry.isFile() || entry.isSymbolicLink()) {
          found.push(await this.stat(child))
        }
      }
    }
    await walk(top)
    return found
  }

  async stat (path: string): Promise<FileMeta> {
    const stats = await this.lstatInside(path)
    return await this.describe(path, stats)
  }

  async list (path: string): Promise<Array<FileMeta & { name: string }>> {
    const stats = await this.lstatInside(path)
    if (!stats.isDirectory()) throw new NotDirectoryError(`not a folder: ${path}`, { path })
    const folderOnDisk = this.diskPath(path)
    const names = (await fsp.readdir(folderOnDisk, { withFileTypes: true }))
      .filter((entry) => !(path === '/' && entry.name === STATE_DIR_NAME) && (entry.isFile() || entry.isDirectory() || entry.isSymbolicLink()))
    const result: Array<FileMeta & { name: string }> = []
    // The entries' lstats run on the event loop, as the other quick steps do (see
    // servers/common/diskSteps.ts): each is a few microseconds when the inode is cached, and
    // 50,000 trips through the thread pool took seconds of a busy machine where the same
    // lstats take a fraction of one.
    // Between batches the event loop takes its turn, so callbacks' renewals and heartbeats
    // are answered while a large folder is listed.
    for (let start = 0; start < names.length; start += LIST_STATS_AT_ONCE) {
      if (start > 0) await new Promise((resolve) => setImmediate(resolve))
      for (const entry of names.slice(start, start + LIST_STATS_AT_ONCE)) {
        // The folder itself was checked to be inside the root, and readdir says the entry is
        // no symlink: an lstat is enough (no realpath per entry). Gone since the readdir: not listed.
        const stats = fs.lstatSync(nodePath.join(folderOnDisk, entry.name), { throwIfNoEntry: false })
        if (stats === undefined || !(stats.isFile() || stats.isDirectory() || stats.isSymbolicLink())) continue
        const child = joinPath(path, entry.name)
        const meta = stats.isSymbolicLink()
          ? await this.describe(child, stats).catch((err: NodeJS.ErrnoException) => {
            if (err.code === 'ENOENT') return null // a link deleted between lstat and readlink
            throw err
          })
          : this.metaOf(child, stats)
        if (meta !== null) result.push({ name: entry.name, ...meta })
      }
    }
    return result
  }

  /**
   * The meta of a file no write touched while it was read, or null if one may have: then
   * size, mtime and version could be from before and after one write. Cheap, and waits for
   * no writer, so a version check of a current copy costs no open file.
   */
  async statSettled (path: string): Promise<FileMeta | null> {
    if (this.writes.busy(path)) return null
    const started = this.writes.started
    const meta = await this.stat(path)
    return this.writes.busy(path) || this.writes.started !== started ? null : meta
  }

  /**
   * The meta of a file, folder or link, with the bytes of a file of at most `upTo` bytes read
   * in the same step (GET /stat?inline=): one check of the path, one open, one read, under the
   * write lock so size, version and bytes belong together. A first read of a small file is
   * this one request, so each trip through the thread pool saved here is one the reader waits for.
   */
  async statWithContent (path: string, upTo: number): Promise<{ meta: FileMeta, content?: Buffer }> {
    return await this.writes.run(path, async () => {
      const checked = await this.lstatInside(path)
      if (!checked.isFile() || checked.size > upTo) return { meta: await this.describe(path, checked) }
      // The open, fstat and close on the event loop (quick steps, servers/common/diskSteps.ts);
      // the bytes through the thread pool (a page not in memory is a read from the disk).
      const { fd, stats } = this.openCheckedSync(path, checked, fs.constants.O_RDONLY)
      try {
        const meta = this.metaOf(path, stats)
        if (meta.size > upTo) return { meta }
        const content = Buffer.allocUnsafe(meta.size)
        const filled = await readFully(fd, content, 0)
        return { meta: { ...meta, size: filled }, content: content.subarray(0, filled) }
      } finally {
        fs.closeSync(fd)
      }
    })
  }

  /**
   * Up to `length` bytes from `position`, with the metadata of the version they belong to
   * (fewer at the end of the file, none past it): a client reading far into a large file
   * whose download has not come that far yet.
   */
  async readRange (path: string, position: number, length: number): Promise<{ meta: FileMeta, bytes: Buffer }> {
    return await this.writes.run(path, async () => {
      const checked = await this.lstatInside(path)
      if (checked.isDirectory()) throw new IsDirectoryError(`is a folder: ${path}`, { path })
      const { fd, stats } = this.openCheckedSync(path, checked, fs.constants.O_RDONLY)
      try {
        const meta = this.metaOf(path, stats)
        const bytes = Buffer.allocUnsafe(Math.max(0, Math.min(length, meta.size - position)))
        const filled = await readFully(fd, bytes, position)
        return { meta, bytes: bytes.subarray(0, filled) }
      } finally {
        fs.closeSync(fd)
      }
    })
  }

  /** Opens a file for reading and pins the version, size and bytes that belong together. */
  async openRead (path: string): Promise<OpenedFile> {
    // Under the write lock, so no append is half done between fstat and version read
    // (openInside checks the path there: a check before it would be a second trip for nothing).
    return await this.writes.run(path, async () => {
      const handle = await this.openInside(path, fs.constants.O_RDONLY)
      try {
        const stats = await handle.stat()
        if (stats.isDirectory()) throw new IsDirectoryError(`is a folder: ${path}`, { path })
        const meta = this.metaOf(path, stats)
        if (meta.size === 0) {
          await handle.close()
          return { meta, stream: Readable.from([]) }
        }
        const stream = handle.createReadStream({ start: 0, end: meta.size - 1, autoClose: true, highWaterMark: READ_CHUNK_BYTES })
        this.reading.set(path, (this.reading.get(path) ?? 0) + 1)
        stream.once('close', () => {
          const left = (this.reading.get(path) ?? 1) - 1
          if (left === 0) this.reading.delete(path)
          else this.reading.set(path, left)
        })
        return { meta, stream }
      } catch (err) {
        await handle.close()
        throw err
      }
    })
  }

  /**
   * Appends a body to a file and makes both data and new version durable before returning,
   * in one round of fsyncs: the intent line is written (not synced) before the first byte,
   * then the data and the version line, with the range's CRC, are synced side by side (see
   * VersionLog for why a crash at any point leaves the file as before). A body that fails
   * midway is cut off again, so a failed append leaves the file as before.
   */
  async append (path: string, body: Readable, guard: WriteGuard = noGuard, changeId?: string): Promise<FileMeta> {
    return await this.writes.run(path, async () => {
      const checked = await this.lstatInside(path)
      const current = requireFile(await this.describe(path, checked))
      if (changeId !== undefined && this.versions.applied(path, changeId)) {
        // A retry of an append whose answer was lost: applied once already.
        body.resume()
        return current
      }
      await guard()
      // The quick steps run on the event loop (servers/common/diskSteps.ts); an open and the
      // syncs wait for the thread pool, side by side where they need not follow each other.
      // The intent line only has to be written before the first byte, not before the open. A
      // handle kept from the file's last append (AppendHandles) saves the open, its fstat and
      // the close; lstatInside above checked the path as for an open, and the handle is taken
      // only if the path still names the inode it was opened on.
      const inode = inodeOf(checked)
      const kept = this.appendHandles.take(path, inode)
      const [intent, opened] = await Promise.allSettled([
        this.versions.appendStarting(path, current.size),
        kept?.handle ?? this.openChecked(path, checked, fs.constants.O_WRONLY | fs.constants.O_APPEND)
      ])
      if (opened.status === 'rejected') throw opened.reason
      const handle = opened.value
      let keep = false
      try {
        if (intent.status === 'rejected') throw intent.reason
        let written: Written
        this.beforeAppend.set(path, current)
        try {
          written = await writeAll(handle, body)
        } catch (err) {
          await handle.truncate(current.size)
          throw err
        }
        const range = { from: current.size, to: current.size + written.bytes, crc: written.crc }
        // fdatasync: the size goes with the data; the mtime may not (so its check runs beside
        // the syncs), but the version that goes up with every append keeps the ETag apart
        // from any before it.
        const [after] = await Promise.all([
          this.keepMtimeGrowing(handle, current),
          timedSync('file', handle.datasync()),
          this.versions.set(path, current.version + 1, changeId, range)
        ])
        keep = true
        // Bytes and version line on disk: the log need not carry this append's lines into a compaction.
        this.versions.appendDone(path)
        this.beforeAppend.delete(path)
        return { ...this.metaOf(path, after.stats), mtimeMs: after.mtimeMs }
      } finally {
        this.beforeAppend.delete(path)
        // Kept for the next append; after a failure closed, unwaited (nothing is left to sync).
        if (keep) this.appendHandles.keep(path, { handle, inode })
        else handle.close().catch(() => {})
      }
    })
  }

  /**
   * Creates an empty file, a folder or a symbolic link in an existing folder. The file is
   * opened with O_EXCL, so one that already exists here is a conflict, never truncated. A
   * file or link starts one version above any that had the path before on this server.
   * `mode` (permission bits; default: what the server's umask gives) is the dfs mode, kept
   * even where the disk needs more bits (ModeRecord). A link's `target` is stored as given,
   * never resolved or followed here.
   */
  async create (path: string, kind: MetaKind, opts: { mode?: number, target?: string } = {}): Promise<FileMeta> {
    if (path === '/') throw new ConflictError('the root folder always exists', { path })
    if (kind === 'symlink') checkLinkTarget(path, opts.target)
    await this.requireParentFolder(path)
    return await this.writes.run(path, async () => {
      const disk = this.diskPath(path)
      const mode = opts.mode === undefined ? undefined : opts.mode & 0o7777
      let handle: fsp.FileHandle | null = null
      try {
        if (kind === 'dir') await fsp.mkdir(disk, { mode: mode === undefined ? undefined : diskModeOf(mode, true) })
        else if (kind === 'symlink') await fsp.symlink(opts.target as string, disk)
        else handle = await fsp.open(disk, 'wx')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ConflictError(`${path} already exists`, { path })
        throw err
      }
      try {
        // The umask of the server process must not cut the mode asked for.
        if (mode !== undefined && handle !== null) await handle.chmod(diskModeOf(mode, false))
        if (kind === 'dir' && mode !== undefined) await fsp.chmod(disk, diskModeOf(mode, true))
        // The new inode, its name in the folder, its mode record and the version line, synced
        // side by side: one round of fsyncs (on a journaling file system they share one commit).
        // A file's answer comes from its handle, beside the syncs: no trip to lstat it again.
        const [stats] = await Promise.all([
          handle?.stat(),
          handle === null ? undefined : timedSync('file', handle.sync()),
          syncFile(nodePath.dirname(disk)),
          mode !== undefined && kind !== 'symlink' ? this.modes.set(path, mode, kind === 'dir') : undefined,
          kind !== 'dir' ? this.versions.set(path, this.versions.highest(path) + 1) : undefined
        ])
        if (stats !== undefined) return this.metaOf(path, stats)
      } finally {
        await handle?.close()
      }
      return await this.stat(path)
    })
  }

  /**
   * A new file with its bytes, mode and mtime in one step (a create that rides in a
   * client's close). The body goes to an upload file, which is synced, then linked at the
   * path exclusively: a path that exists is a ConflictError, and the path never shows part
   * of the bytes. The name in its folder, the mode record and the version line are then
   * synced side by side: two rounds of fsyncs, the bytes before the name that shows them.
   * `alongside` (the claim with the directory) runs beside both rounds, from before the
   * first: for that moment the directory maps a name this disk does not show yet, which
   * readers take as not there (a file being created). A crash before the second round ends
   * leaves the file with all its bytes or no file, and the server's report at its restart
   * replaces its claims either way. If either side fails, the file is removed again and the
   * error thrown; `alongside` undoes its own part then (`undo`). Measured on the demo
   * cluster, interleaved with the claim beside the second round only: a create's close
   * 2.65, 2.72, 2.80 ms against 2.82, 2.82, 2.93.
   * `repeated`: a retry whose first try placed the file already (`changeId`) is answered
   * as the file is, so a create whose answer was lost is not refused as a clash with itself;
   * `alongside` does not run then (the caller checks what it must).
   * `guard` (the creator's lease, checked while the body arrives) must pass before anything
   * takes the path.
   */
  async createWithContent (path: string, body: Readable, opts: { mode?: number, mtimeMs?: number, changeId?: string, guard?: WriteGuard } = {},
    alongside?: SideStep): Promise<{ meta: FileMeta, repeated: boolean }> {
    if (path === '/') throw new ConflictError('the root folder always exists', { path })
    const disk = this.diskPath(path)
    // A create is a mount's close, waited for by the program: the quick steps run on the event
    // loop (servers/common/diskSteps.ts), and the waits for the disk side by side where they
    // need not follow each other.
    const parentChecked = this.requireParentFolder(path)
    // Its failure is thrown where it is awaited, after the upload; until then it is not unhandled.
    parentChecked.catch(() => {})
    return await this.withUpload(body, async (upload) => await this.writes.run(path, async () => {
      await parentChecked
      await opts.guard?.()
      if (opts.changeId !== undefined && this.versions.applied(path, opts.changeId)) {
        const placed = await this.statOrNull(path)
        if (placed !== null) return { meta: placed, repeated: true }
      }
      // `alongside` (the directory's claim, a request that also waits for other clients to
      // hear of the new name) starts now and runs beside both rounds of fsyncs, not only the
      // second: it took longer than that round alone. A claim refused, or a step here that
      // fails, undoes the other.
      const besideRun = alongside === undefined ? undefined : settledOf(alongside.run())
      const undoBeside = async (): Promise<void> => {
        if ((await besideRun)?.status === 'fulfilled') await alongside?.undo().catch(() => {})
      }
      const mode = opts.mode === undefined ? undefined : opts.mode & 0o7777
      let stats: fs.Stats
      try {
        if (mode !== undefined) fs.fchmodSync(upload.handle.fd, diskModeOf(mode, false))
        if (opts.mtimeMs !== undefined) fs.futimesSync(upload.handle.fd, new Date(), secondsOf(opts.mtimeMs))
        stats = fs.fstatSync(upload.handle.fd)
        await timedSync('file', upload.handle.sync())
        this.ownLinks.add(inodeOf(stats))
        try {
          fs.linkSync(upload.file, disk)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ConflictError(`${path} already exists`, { path })
          throw err
        }
      } catch (err) {
        await undoBeside()
        throw err
      }
      const [synced, beside] = await Promise.all([
        settledOf(Promise.all([
          // The version and mode lines are written (synchronously, at these calls) before the
          // folder's fsync starts, so that fsync's commit of the file system's journal can take
          // them along. (Measured only together with this commit's other steps.)
          this.versions.set(path, this.versions.highest(path) + 1, opts.changeId),
          mode !== undefined ? this.modes.set(path, mode, false) : undefined,
          syncFile(nodePath.dirname(disk))
        ])),
        besideRun ?? { status: 'fulfilled' as const, value: undefined }
      ])
      if (synced.status === 'rejected' || beside.status === 'rejected') {
        await undoBeside()
        await fsp.rm(disk, { force: true })
        if (mode !== undefined) await this.modes.drop(path).catch(() => {})
        throw synced.status === 'rejected' ? synced.reason : (beside as PromiseRejectedResult).reason
      }
      // The fstat above is the linked file's: bytes, mode and mtime were set before it.
      return { meta: this.metaOf(path, stats), repeated: false }
    }))
  }

  /**
   * Replaces a file's bytes whole. The body goes to a temp file first, which is renamed over
   * the file once it is on disk, so a reader sees the old bytes or the new, never a mix,
   * and a body that fails midway changes nothing.
   */
  async overwrite (path: string, body: Readable, guard: WriteGuard = noGuard, changeId?: string): Promise<FileMeta> {
    requireFile(await this.stat(path))
    return await this.withUpload(body, async (upload) => await this.writes.run(path, async () => {
      // A retry of a store whose answer was lost: placing it again would undo later changes.
      if (changeId !== undefined && this.versions.applied(path, changeId)) return await this.stat(path)
      await guard()
      const current = await this.stat(path)
      await this.keepMtimeGrowing(upload.handle, current)
      await this.install(upload, path, current, current.version + 1, diskModeOf(current.mode ?? 0o644, false), changeId)
      return await this.stat(path)
    }))
  }

  /**
   * Replaces a small file's bytes whole as a range write of all of them (writeRanges), at
   * whatever version is current: in place behind a redo intent, answered once the intent
   * is durable and the bytes are in place. One round of fsyncs before the answer instead of
   * overwrite's two (its upload's, then the folder's after the rename), and the file keeps
   * its inode. A reader sees the old bytes or the new, never a mix: every read of the bytes
   * here takes the file's write lock, and one that streams it makes writeRanges write into a
   * copy renamed over it instead. The intent holds the bytes, so the caller keeps this to
   * small bodies (IN_PLACE_OVERWRITE_BYTES).
   */
  async overwriteInPlace (path: string, data: Buffer, guard: WriteGuard = noGuard, changeId?: string): Promise<FileMeta> {
    return await this.writeRanges(path, encodeRanges([{ offset: 0, data }]), data.length, null, guard, changeId)
  }

  /**
   * A range write: the ranges (framed, rangeFrames.ts) placed into the file at
   * `fromVersion`, then the file cut or grown to `size`, as one new version; all or nothing
   * across crashes. In place, behind a redo intent (RangeJournal), so the cost is the bytes
   * changed; while a reader streams the file, into a copy renamed over it instead (the
   * reader keeps the old inode and its bytes). A file no longer at `fromVersion` is a
   * conflict: the caller's ranges describe changes to another version. `fromVersion` null:
   * whatever version is current under the lock (a whole replacement, overwriteInPlace).
   *
   * In place, the write is answered once its intent is durable and its bytes are in the file
   * (in the page cache): a crash from then on leaves the intent, which the start replays to
   * the same bytes at the same version (RangeJournal), so the write is durable already. The
   * file's fsync and the version line's go on after the answer, still under the file's write
   * lock, so no other change of the file, and no read that takes the lock (GET /content, a
   * stat with the bytes), starts before they are done; the intent's slot is reused only then. One round of fsyncs on the caller's path instead
   * of two (a database's commit makes two range writes: the journal's and the file's).
   */
  async writeRanges (path: string, body: Buffer, size: number, fromVersion: number | null, guard: WriteGuard = noGuard, changeId?: string): Promise<FileMeta> {
    const ranges = decodeRanges(body)
    if (ranges.some(({ offset, data }) => offset + data.length > size)) throw new BadRequestError('a range ends past the size given', { path })
    let answer: (meta: FileMeta) => void = () => {}
    const answered = new Promise<FileMeta>((resolve) => { answer = resolve })
    const whole = this.writes.run(path, async () => {
      if (changeId !== undefined && this.versions.applied(path, changeId)) return await this.stat(path)
      await guard()
      const checked = await this.lstatInside(path)
      const current = requireFile(await this.describe(path, checked))
      if (fromVersion !== null && current.version !== fromVersion) throw new ConflictError(`${path} is at version ${current.version}, not ${fromVersion}`, { path })
      if (this.reading.has(path)) {
        const file = this.uploadPath()
        await fsp.copyFile(this.diskPath(path), file, fs.constants.COPYFILE_EXCL)
        const handle = await fsp.open(file, 'r+')
        try {
          await applyRanges(handle, ranges, size)
          await this.keepMtimeGrowing(handle, current)
          await this.install({ file, handle }, path, current, current.version + 1, diskModeOf(current.mode ?? 0o644, false), changeId)
        } finally {
          await handle.close()
          await fsp.rm(file, { force: true })
        }
        return await this.stat(path)
      }
      // In place, in two rounds of fsyncs: the intent, then the file's bytes beside its version line (RangeJournal).
      // The open and the intent side by side: the intent only has to be on disk before the first byte.
      const [opened, recorded] = await Promise.allSettled([
        this.openChecked(path, checked, fs.constants.O_RDWR),
        this.rangeJournal.record({ path, fromVersion: current.version, size, body, inode: inodeOf(checked), changeId })
      ])
      if (opened.status === 'rejected') {
        if (recorded.status === 'fulfilled') await this.rangeJournal.cancel(recorded.value)
        throw opened.reason
      }
      const handle = opened.value
      try {
        if (recorded.status === 'rejected') throw recorded.reason
        const slot = recorded.value
        crashPoint('range:recorded')
        await applyRanges(handle, ranges, size, current.size)
        const after = await this.keepMtimeGrowing(handle, current)
        crashPoint('range:written')
        const synced = Promise.all([
          timedSync('file', handle.datasync()),
          this.versions.setBeforeDurable(path, current.version + 1, changeId)
        ])
        // The version above counts already: the answer names it.
        const meta = { ...this.metaOf(path, after.stats), size, mtimeMs: after.mtimeMs }
        answer(meta)
        await synced
        crashPoint('range:synced')
        // Only now: a write that failed on the way keeps its slot, so the next start replays it.
        this.rangeJournal.done(slot)
        return meta
      } finally {
        await handle.close()
      }
    })
    return await firstAnswer(answered, whole, (err) => {
      // The write was answered and its intent is on disk: the next start replays it.
      noteProblem(`the fsync after a range write to ${path} failed, after its answer (its intent is replayed at the next start): ${err instanceof Error ? err.message : String(err)}`)
    })
  }

  async truncate (path: string, size: number, guard: WriteGuard = noGuard): Promise<FileMeta> {
    return await this.writes.run(path, async () => {
      await guard()
      const current = requireFile(await this.stat(path))
      const handle = await this.openInside(path, fs.constants.O_RDWR)
      try {
        await handle.truncate(size)
        await this.keepMtimeGrowing(handle, current)
        await timedSync('file', handle.sync())
      } finally {
        await handle.close()
      }
      await this.versions.set(path, current.version + 1)
      return await this.stat(path)
    })
  }

  /**
   * Removes a file or symbolic link. Its version stays on record, so a file made later at the
   * path starts above it. `alongside` (the drop of the name with the directory) runs beside
   * the folder's fsync, the file moved aside (parked) meanwhile: if either fails, the file is
   * put back at its name, `alongside` undoes its own part, and the error is thrown. A reader
   * of this server may find the name gone while the drop is under way, as once it is done.
   */
  async remove (path: string, alongside?: SideStep): Promise<void> {
    await this.writes.run(path, async () => {
      const stats = await this.lstatInside(path)
      const current = await this.describe(path, stats)
      if (current.kind === 'dir') throw new IsDirectoryError(`is a folder: ${path}`, { path })
      const disk = this.diskPath(path)
      const parking = this.uploadPath()
      this.appendHandles.drop(path)
      // A file that cannot be parked (a folder of the root that is another file system's mount
      // point) is removed in place, only once the other side's step is done.
      const parked = this.unlinks.park(disk, parking)
      if (!parked) {
        await alongside?.run()
        fs.unlinkSync(disk)
      }
      // The version stays on record (a file made again at the path goes on from it). Its line
      // is written at this call, before the folder's fsync starts, and synced beside it: one
      // round of fsyncs instead of two (1.5 ms of an unlink's 6 at the server, measured).
      const recorded = this.versions.get(path) === undefined ? this.versions.set(path, current.version) : undefined
      const [synced, beside] = await Promise.allSettled([
        Promise.all([recorded, syncFile(nodePath.dirname(disk))]),
        parked ? alongside?.run() : undefined
      ])
      if (synced.status === 'rejected' || beside.status === 'rejected') {
        if (parked) {
          if (beside.status === 'fulfilled') await alongside?.undo().catch(() => {})
          try {
            this.unlinks.restore(parking, disk)
            await syncFile(nodePath.dirname(disk))
          } catch (err) {
            noteProblem(`could not put ${path} back after its removal failed (it is left at ${parking}, which the next start empties): ${err instanceof Error ? err.message : String(err)}`)
          }
        }
        throw synced.status === 'rejected' ? synced.reason : (beside as PromiseRejectedResult).reason
      }
      if (parked) this.unlinks.release(parking)
      // Gone for good now: its version is kept as a removed path's (a file made there later starts above it).
      this.versions.removed(path)
      // A rename's old name going (linkAs left the file two): the other has it alone now.
      if (stats.nlink <= 2) this.ownLinks.delete(inodeOf(stats))
      await this.modes.drop(path)
    })
  }

  async removeFolder (path: string): Promise<void> {
    if (path === '/') throw new BadPathError('the root folder cannot be removed', { path })
    const stats = await this.lstatInside(path)
    if (!stats.isDirectory()) throw new NotDirectoryError(`not a folder: ${path}`, { path })
    const disk = this.diskPath(path)
    try {
      await fsp.rmdir(disk)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new NotEmptyError(`${path} is not empty`, { path })
      throw err
    }
    await syncFile(nodePath.dirname(disk))
    await this.modes.drop(path)
  }

  async setTimes (path: string, mtimeMs: number, atimeMs?: number): Promise<FileMeta> {
    return await this.writes.run(path, async () => {
      const stats = await this.lstatInside(path)
      const disk = this.diskPath(path)
      // lutimes: a link's own times (touch -h), never those of what it points to.
      await fsp.lutimes(disk, atimeMs === undefined ? stats.atime : secondsOf(atimeMs), secondsOf(mtimeMs))
      if (!stats.isSymbolicLink()) await syncFile(disk)
      else await syncFile(nodePath.dirname(disk))
      return await this.stat(path)
    })
  }

  /**
   * Sets permission bits. The disk keeps the owner's read and write (and search on a
   * folder) so this server can still serve the entry; the mode as asked is what stat shows
   * (ModeRecord). A symbolic link has no mode of its own (Linux has no lchmod): unchanged.
   */
  async chmod (path: string, mode: number): Promise<FileMeta> {
    return await this.writes.run(path, async () => {
      const stats = await this.lstatInside(path)
      if (stats.isSymbolicLink()) return await this.stat(path)
      const disk = this.diskPath(path)
      await fsp.chmod(disk, diskModeOf(mode, stats.isDirectory()))
      await syncFile(disk)
      await this.modes.set(path, mode, stats.isDirectory())
      return await this.stat(path)
    })
  }

  /**
   * Takes back, as names this store made, the two names of a rename on this server that a
   * crash cut between its link and its unlink (renameIntents.ts): their file has two links,
   * both in the root, and must be served (and cleaned up) rather than refused as a hard link
   * from outside. Only for paths of the store's own rename intents.
   */
  async adoptRenameLinks (paths: string[]): Promise<void> {
    for (const path of paths) {
      const stats = await fsp.lstat(this.diskPath(path)).catch(() => null)
      if (stats?.isFile() === true && stats.nlink > 1) this.ownLinks.add(inodeOf(stats))
    }
  }

  /**
   * Gives a file's bytes a second name, `to`, for a rename on this server: a hard link, so
   * nothing is copied. `to` gets a version above both names' before; `from` stays until
   * removed, so a reader always finds the file under one name or the other.
   */
  async linkAs (from: string, to: string, replace: boolean): Promise<FileMeta> {
    await this.requireParentFolder(to)
    return await this.withPaths([from, to], async () => {
      const source = await this.stat(from)
      if (source.kind === 'dir') throw new IsDirectoryError(`is a folder: ${from}`, { path: from })
      const previous = await this.placeableAt(to, replace)
      const version = Math.max(source.version, this.knownVersion(to, previous)) + 1
      const staged = this.uploadPath()
      try {
        this.ownLinks.add(inodeOf(await fsp.lstat(this.diskPath(from))))
        await linkOrCopy(this.diskPath(from), staged)
        await this.place(staged, to, previous)
      } finally {
        await fsp.rm(staged, { force: true })
      }
      // The same inode under a new name: its mode record goes along (`from`'s is dropped with it).
      if (source.mode !== undefined && source.kind === 'file') await this.modes.set(to, source.mode, false)
      else await this.modes.drop(to)
      await this.versions.set(to, version)
      return await this.stat(to)
    })
  }

  /**
   * Places a file another server sends for a rename: the bytes and mtime of `from` there,
   * a version above both that file's and any this server had at the path.
   */
  async receive (path: string, body: Readable, opts: ReceiveOptions): Promise<FileMeta> {
    await this.requireParentFolder(path)
    if (opts.target !== undefined) return await this.receiveLink(path, body, opts, checkLinkTarget(path, opts.target))
    return await this.withUpload(body, async (upload) => await this.writes.run(path, async () => {
      const previous = await this.placeableAt(path, opts.replace)
      const version = receivedVersion(opts, this.knownVersion(path, previous))
      const stats = await upload.handle.stat()
      await upload.handle.utimes(stats.atime, secondsOf(opts.mtimeMs))
      await this.install(upload, path, previous, version, opts.mode === undefined ? undefined : diskModeOf(opts.mode, false))
      if (opts.mode !== undefined) await this.modes.set(path, opts.mode, false)
      else await this.modes.drop(path)
      return await this.stat(path)
    }))
  }

  /** receive() of a symbolic link: made beside, then placed as a file would be. */
  private async receiveLink (path: string, body: Readable, opts: ReceiveOptions, target: string): Promise<FileMeta> {
    body.resume()
    return await this.writes.run(path, async () => {
      const previous = await this.placeableAt(path, opts.replace)
      const version = receivedVersion(opts, this.knownVersion(path, previous))
      const staged = this.uploadPath()
      try {
        await fsp.symlink(target, staged)
        await fsp.lutimes(staged, secondsOf(opts.mtimeMs), secondsOf(opts.mtimeMs))
        await this.place(staged, path, previous)
      } finally {
        await fsp.rm(staged, { force: true })
      }
      await this.modes.drop(path)
      await this.versions.set(path, version)
      return await this.stat(path)
    })
  }

  /**
   * Moves a folder on this disk. The files below it get versions above their old ones and
   * above any their new paths had; answers them as [old path, new path].
   */
  async moveFolder (from: string, to: string): Promise<Array<[string, string]>> {
    if (from === '/') throw new BadPathError('the root folder cannot be renamed', { path: from })
    const stats = await this.lstatInside(from)
    if (!stats.isDirectory()) throw new NotDirectoryError(`not a folder: ${from}`, { path: from })
    await this.requireParentFolder(to)
    const files = (await this.scan(from)).filter((entry) => entry.kind !== 'dir').map((entry) => entry.path)
    const moved = files.map((path): [string, string] => [path, to + path.slice(from.length)])
    return await this.withPaths([...files, ...moved.map(([, path]) => path)], async () => {
      const target = await this.statOrNull(to)
      if (target && target.kind !== 'dir') throw new NotDirectoryError(`${to} is a file`, { path: to })
      const versions = moved.map(([old, path]) => Math.max(this.versions.get(old) ?? 1, this.versions.highest(path)) + 1)
      // rename(2) replaces an empty folder and refuses a full one.
      this.appendHandles.dropUnder(from)
      await this.renameOnDisk(from, to)
      await this.modes.move(from, to, true)
      for (const [i, [, path]] of moved.entries()) await this.versions.set(path, versions[i])
      const arrived = new Set(moved.map(([, path]) => path))
      for (const [old] of moved) if (!arrived.has(old)) this.versions.removed(old)
      return moved
    })
  }

  /** Puts a folder moved by moveFolder back, when the directory server refused the move. */
  async unmoveFolder (from: string, to: string): Promise<void> {
    this.appendHandles.dropUnder(to)
    await this.renameOnDisk(to, from)
    await this.modes.move(to, from, true)
  }

  /** Size and free space of the disk the root is on. */
  async statfs (): Promise<StatfsAnswer> {
    const disk = await fsp.statfs(this.root)
    // A disk that makes inodes as it needs them says it has none (files 0): no limit to tell.
    return { totalBytes: disk.blocks * disk.bsize, freeBytes: disk.bavail * disk.bsize, ...(disk.files > 0 ? { freeFiles: disk.ffree } : {}) }
  }

  async statOrNull (path: string): Promise<FileMeta | null> {
    try {
      return await this.stat(path)
    } catch (err) {
      if (err instanceof NotFoundError) return null
      throw err
    }
  }

  private async renameOnDisk (from: string, to: string): Promise<void> {
    const fromDisk = this.diskPath(from)
    const toDisk = this.diskPath(to)
    try {
      await fsp.rename(fromDisk, toDisk)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new NotEmptyError(`${to} is not empty`, { path: to })
      throw err
    }
    await syncFile(nodePath.dirname(fromDisk))
    if (nodePath.dirname(toDisk) !== nodePath.dirname(fromDisk)) await syncFile(nodePath.dirname(toDisk))
  }

  /** What is at a path a file is about to be placed at: nothing, or a file `replace` allows to go. */
  private async placeableAt (path: string, replace: boolean): Promise<FileMeta | null> {
    const previous = await this.statOrNull(path)
    if (previous?.kind === 'dir') throw new IsDirectoryError(`${path} is a folder`, { path })
    if (previous && !replace) throw new ConflictError(`${path} already exists`, { path })
    return previous
  }

  /** The highest version a path may have had here: its file's, the one on record after a removal, or the floor of forgotten removals (VersionLog.highest). */
  private knownVersion (path: string, current: FileMeta | null): number {
    return current?.version ?? this.versions.highest(path)
  }

  private async requireParentFolder (path: string): Promise<void> {
    const parent = parentOf(path)
    const stats = await this.lstatInside(parent)
    if (!stats.isDirectory()) throw new NotDirectoryError(`not a folder: ${parent}`, { path })
  }

  /** Streams a body into a fresh file under the upload folder; the task decides where it goes. */
  private async withUpload<T> (body: Readable, task: (upload: Upload) => Promise<T>): Promise<T> {
    const { file, handle } = await this.takeUpload()
    try {
      await writeAll(handle, body)
      return await task({ file, handle })
    } finally {
      // Removing the name of an open file is fine, and a placed upload has its own name by
      // now; one renamed into place left none here, which existsSync tells with no exception.
      if (fs.existsSync(file)) {
        fs.unlinkSync(file)
        // One linked into place has one name again: nothing left to vouch for (ownLinks).
        this.ownLinks.delete(inodeOf(fs.fstatSync(handle.fd)))
      }
      await handle.close()
    }
  }

  /** Makes an upload the file at `path`, durably: bytes, then the name, then the version. */
  private async install (upload: Upload, path: string, previous: FileMeta | null, version: number, mode?: number, changeId?: string): Promise<void> {
    // A quick step on the event loop (servers/common/diskSteps.ts), as a create's.
    if (mode !== undefined) fs.fchmodSync(upload.handle.fd, mode)
    await timedSync('file', upload.handle.sync())
    // The version line beside the folder's fsync, as a create's: one round of fsyncs after
    // the bytes', not two. A crash between the two leaves the new bytes with the old version
    // or the old bytes with the new one; either way the ETag (version, size and mtime, which
    // keepMtimeGrowing moved) differs from every copy a client holds, and the write was
    // never answered, so its client sends it again.
    await this.place(upload.file, path, previous, async () => await this.versions.set(path, version, changeId))
  }

  /**
   * Renames over the previous file, or links exclusively where there was none (a file that
   * appeared meanwhile is a conflict); then syncs the folder, with `beside` (called first, so
   * a line it writes can go with that fsync's commit) alongside.
   */
  private async place (staged: string, path: string, previous: FileMeta | null, beside?: () => Promise<unknown>): Promise<void> {
    const disk = this.diskPath(path)
    // The file at the path is replaced: a handle kept for appends would keep its old inode's space.
    this.appendHandles.drop(path)
    try {
      if (previous) {
        await fsp.rename(staged, disk)
      } else {
        this.ownLinks.add(inodeOf(await fsp.lstat(staged)))
        await fsp.link(staged, disk)
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ConflictError(`${path} already exists`, { path })
      throw err
    }
    await Promise.all([beside?.(), syncFile(nodePath.dirname(disk))])
  }

  /**
   * A fresh, empty file in the upload folder, open for writing. One is kept made ahead: making
   * a file is a trip to the thread pool and an inode, measured at 1 ms of a create's 5.
   */
  private async takeUpload (): Promise<Upload> {
    const taken = this.spareUpload ?? this.openUpload()
    this.spareUpload = this.openUpload()
    this.spareUpload.catch(() => {}) // a failure is thrown to the request that takes it
    return await taken
  }

  private async openUpload (): Promise<Upload> {
    const file = this.uploadPath()
    return { file, handle: await fsp.open(file, 'wx') }
  }

  /**
   * A fresh name in the upload folder, which every start empties: random once per store,
   * then counted (a crypto.randomBytes per upload was about 30 µs of a create's CPU at the
   * servers in a profile of 1,000 creates).
   */
  private uploadPath (): string {
    this.uploadsNamed++
    return `${this.uploadPrefix}.${this.uploadsNamed.toString(36)}`
  }

  /** Runs a task holding the write lock of several paths, taken in one order so two tasks never wait on each other. */
  private async withPaths<T> (paths: string[], task: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(paths)].sort()
    const hold = async (i: number): Promise<T> => i === sorted.length ? await task() : await this.writes.run(sorted[i], async () => await hold(i + 1))
    return await hold(0)
  }

  /**
   * The kernel and clients notice a change by mtime and size; two writes within one
   * millisecond that keep the size would otherwise look like no change at all.
   */
  private async keepMtimeGrowing (handle: fsp.FileHandle, before: FileMeta): Promise<{ stats: fs.Stats, mtimeMs: number }> {
    const stats = fs.fstatSync(handle.fd)
    if (Math.floor(stats.mtimeMs) > Math.floor(before.mtimeMs)) return { stats, mtimeMs: Math.floor(stats.mtimeMs) }
    const mtimeMs = Math.floor(before.mtimeMs) + 1
    fs.futimesSync(handle.fd, stats.atime, secondsOf(mtimeMs))
    return { stats, mtimeMs }
  }

  /** The meta of a file, folder or link whose lstat is `stats`; a link's target is read, never followed. */
  private async describe (path: string, stats: fs.Stats): Promise<FileMeta> {
    if (!stats.isSymbolicLink()) return this.metaOf(path, stats)
    const target = await fsp.readlink(this.diskPath(path))
    return { ...this.metaOf(path, stats), size: Buffer.byteLength(target), target }
  }

  private metaOf (path: string, stats: fs.Stats): FileMeta {
    const before = this.beforeAppend.get(path)
    if (before !== undefined && stats.isFile()) return before
    const kind: MetaKind = stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'symlink' : 'file'
    return {
      path,
      kind,
      version: kind === 'dir' ? 0 : this.versions.get(path) ?? this.versions.removedVersion(path) ?? 1,
      size: kind === 'dir' ? 0 : stats.size,
      mtimeMs: Math.floor(stats.mtimeMs),
      // A link's mode means nothing on Linux: 0o777, as lstat shows it everywhere.
      mode: kind === 'symlink' ? 0o777 : this.modes.modeOf(path, stats.mode)
    }
  }

  /** Opens a file of this store; a symbolic link at the path is refused (ELOOP), never followed. */
  private diskPath (path: string): string {
    if (path.split('/')[1] === STATE_DIR_NAME) throw new BadPathError(`${STATE_DIR_NAME} is reserved`, { path })
    return nodePath.join(this.root, path)
  }

  /**
   * lstat of an entry of this store: a file, a folder or a symbolic link (the link itself).
   * Every folder on the way must be a real folder under the root: the real path of the
   * parent must be exactly where the path says, so no link, of dfs or put on the disk by
   * hand, leads a request anywhere else, inside the root or out of it.
   */
  private async lstatInside (path: string): Promise<fs.Stats> {
    const disk = this.diskPath(path)
    let stats: fs.Stats
    let realParent: string | null = null
    try {
      // On the event loop (servers/common/diskSteps.ts).
      if (path === '/') stats = fs.statSync(disk)
      else {
        // The path's own error goes first (a path too long is ENAMETOOLONG, not its missing
        // folder's ENOENT).
        stats = fs.lstatSync(disk)
        realParent = fs.realpathSync.native(nodePath.dirname(disk))
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`no such file: ${path}`, { path })
      throw err
    }
    // Compared as strings, not joined: a '..' in a path that is not canonical matches nothing.
    const parent = parentOf(path)
    if (realParent !== null && realParent !== (parent === '/' ? this.realRoot : this.realRoot + parent)) {
      throw new NotFoundError(`no such file: ${path}`, { path })
    }
    if (!stats.isFile() && !stats.isDirectory() && !stats.isSymbolicLink()) throw new NotFoundError(`not a regular file: ${baseName(path)}`, { path })
    if (stats.isFile()) {
      const inode = inodeOf(stats)
      if (stats.nlink === 1) {
        this.ownLinks.delete(inode)
      } else if (!this.ownLinks.has(inode)) {
        // Its other name may be outside the root (a hard link): serving it, or appending
        // through it, would reach a file the root does not hold.
        throw new NotFoundError(`no such file: ${path} (it has other names: hard links are not served)`, { path })
      }
    }
    return stats
  }

  /**
   * Opens a file that lstatInside allowed, and checks that the opened file is the one that
   * was checked (same device and inode; a symlink put in its place is not followed), so a
   * path swapped between the check and the open cannot lead outside the root.
   */
  private async openInside (path: string, flags: number): Promise<fsp.FileHandle> {
    return await this.openChecked(path, await this.lstatInside(path), flags)
  }

  /** openInside with the path's lstatInside already done (`checked`). */
  private async openChecked (path: string, checked: fs.Stats, flags: number): Promise<fsp.FileHandle> {
    let handle: fsp.FileHandle
    try {
      handle = await fsp.open(this.diskPath(path), flags | fs.constants.O_NOFOLLOW)
    } catch (err) {
      throw this.openFailure(path, checked, err)
    }
    try {
      this.requireChecked(path, checked, fs.fstatSync(handle.fd))
    } catch (err) {
      await handle.close()
      throw err
    }
    return handle
  }

  /**
   * openChecked on the event loop, as a descriptor with its fstat (quick steps:
   * servers/common/diskSteps.ts); the caller closes it.
   */
  private openCheckedSync (path: string, checked: fs.Stats, flags: number): { fd: number, stats: fs.Stats } {
    let fd: number
    try {
      fd = fs.openSync(this.diskPath(path), flags | fs.constants.O_NOFOLLOW)
    } catch (err) {
      throw this.openFailure(path, checked, err)
    }
    try {
      const stats = fs.fstatSync(fd)
      this.requireChecked(path, checked, stats)
      return { fd, stats }
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  /** What an open's failure means for a path lstatInside allowed (`checked`). */
  private openFailure (path: string, checked: fs.Stats, err: unknown): unknown {
    const code = (err as NodeJS.ErrnoException).code
    // ELOOP: a symbolic link, served as a link, never opened (what it points to may be outside).
    if (code === 'ELOOP' && checked.isSymbolicLink()) return new BadRequestError(`is a symbolic link: ${path}`, { path })
    if (code === 'ELOOP' || code === 'ENOENT' || code === 'ENOTDIR') return new NotFoundError(`no such file: ${path}`, { path })
    return err
  }

  /** The opened file is the one that was checked (same device and inode), or the path changed in between. */
  private requireChecked (path: string, checked: fs.Stats, opened: fs.Stats): void {
    if (inodeOf(opened) !== inodeOf(checked)) throw new NotFoundError(`no such file: ${path} (it changed while it was opened)`, { path })
  }
}

interface Upload {
  file: string
  handle: fsp.FileHandle
}

function inodeOf (stats: fs.Stats): string {
  return `${stats.dev}:${stats.ino}`
}

/** A link's target as Linux takes it: 1 to 4095 bytes, no NUL. */
function checkLinkTarget (path: string, target: string | undefined): string {
  if (target === undefined || target === '') throw new BadRequestError('a symbolic link needs a target', { path })
  if (target.includes('\0') || Buffer.byteLength(target) > 4095) throw new BadRequestError('a link target must be 1 to 4095 bytes without NUL', { path })
  return target
}

/** The file a store operation needs at a path, or the error for a folder or a link there. */
function requireFile (meta: FileMeta): FileMeta {
  if (meta.kind === 'dir') throw new IsDirectoryError(`is a folder: ${meta.path}`, { path: meta.path })
  if (meta.kind === 'symlink') throw new BadRequestError(`is a symbolic link: ${meta.path}`, { path: meta.path })
  return meta
}

/**
 * A hard link where the disk has them (link(2) links a symbolic link itself, never what it
 * points to), else a copy with the same mtime: of a link, a new link with the same target.
 */
async function linkOrCopy (from: string, to: string): Promise<void> {
  try {
    await fsp.link(from, to)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV' && code !== 'EMLINK') throw err
    const source = await fsp.lstat(from)
    if (source.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(from), to)
      return
    }
    await fsp.copyFile(from, to, fs.constants.COPYFILE_EXCL)
    const stats = await fsp.stat(from)
    await fsp.utimes(to, stats.atime, secondsOf(stats.mtimeMs))
    await syncFile(to)
  }
}

interface Written {
  bytes: number
  /** CRC-32 of the bytes written. */
  crc: number
}

/** Chunks that arrive while a write is under way wait for it up to this many bytes; then the body waits. */
const GATHERED_WRITE_BYTES = 1024 * 1024

/**
 * Writes a stream through a handle we keep (a stream made from the handle would pin it
 * open). Each chunk goes to the disk as it comes; chunks that arrive while a write is under
 * way go down together in the next one (one writev through the thread pool for many 64 KiB
 * chunks of HTTP, not one write each).
 */
async function writeAll (handle: fsp.FileHandle, body: Readable): Promise<Written> {
  let bytes = 0
  let crc = 0
  let pending: Buffer[] = []
  let pendingBytes = 0
  let writing: Promise<void> | null = null
  let failure: { error: unknown } | null = null
  let written = 0
  const writePending = async (): Promise<void> => {
    try {
      while (pendingBytes > 0) {
        const chunks = pending
        const total = pendingBytes
        pending = []
        pendingBytes = 0
        // On the event loop only while the whole body so far is small (servers/common/diskSteps.ts).
        await writeGathered(handle, chunks, total, written + total <= QUICK_WRITE_BYTES)
        written += total
      }
    } catch (error) {
      failure = { error }
    } finally {
      writing = null
    }
  }
  try {
    for await (const chunk of body) {
      if (failure !== null) break
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string)
      bytes += buffer.length
      crc = zlib.crc32(buffer, crc)
      pending.push(buffer)
      pendingBytes += buffer.length
      if (writing === null) writing = writePending()
      else if (pendingBytes >= GATHERED_WRITE_BYTES) await writing
    }
  } finally {
    // A body that fails midway: the write under way lands before the caller cuts the file back.
    await writing
  }
  if (failure === null && pendingBytes > 0) await writePending()
  if (failure !== null) throw (failure as { error: unknown }).error
  return { bytes, crc }
}

/**
 * What `answered` gives, or `whole`'s outcome if that comes first (a failure before the
 * answer, or a way that answers at the end). A failure of `whole` after the answer goes to
 * `late`, as it can no longer reach the caller.
 */
async function firstAnswer<T> (answered: Promise<T>, whole: Promise<T>, late: (err: unknown) => void): Promise<T> {
  let answeredFirst = false
  void answered.then(() => { answeredFirst = true })
  whole.catch((err: unknown) => { if (answeredFirst) late(err) })
  return await Promise.race([answered, whole])
}

/** The CRC-32 of a file's bytes in [from, to), or null if it is shorter than `to` or gone. */
async function crcOfRange (file: string, from: number, to: number): Promise<number | null> {
  let handle: fsp.FileHandle
  try {
    handle = await fsp.open(file, fs.constants.O_RDONLY | O_NOFOLLOW)
  } catch {
    return null
  }
  try {
    if ((await handle.stat()).size < to) return null
    const buffer = Buffer.alloc(Math.min(READ_CHUNK_BYTES, Math.max(0, to - from)))
    let crc = 0
    for (let at = from; at < to;) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, to - at), at)
      if (bytesRead === 0) return null
      crc = zlib.crc32(buffer.subarray(0, bytesRead), crc)
      at += bytesRead
    }
    return crc
  } finally {
    await handle.close()
  }
}

/**
 * A whole-millisecond time as utimes wants it. ms / 1000 is often a hair below the true
 * value in binary (…391.9999 for …392), and libuv truncates to the microsecond, so the disk
 * kept the millisecond before. Half a microsecond more (above the double's precision here,
 * below what libuv keeps) lands exactly on the intended millisecond.
 */
function secondsOf (ms: number): number {
  return (Math.floor(ms) + 0.0005) / 1000
}
