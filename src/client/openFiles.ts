import fs from 'node:fs'
import { DEFAULT_MAX_PENDING_BYTES } from '../shared/defaults'
import { BadRequestError, BusyError, DfsError, ForbiddenError, InsufficientStorageError, LocalCacheError, NotFoundError, ServerUnavailableError, StaleHandleError } from '../shared/errors'
import { KeyedMutex } from '../shared/keyedMutex'
import { monotonicMs } from '../shared/clock'
import { normalizePath, parentOf } from '../shared/paths'
import type { FileMeta } from '../shared/protocol'
import { AppendBuffer } from './appendBuffer'
import { BytesReader } from './copyReader'
import { RangeReader } from './rangeReader'
import type { CopyReader } from './copyReader'
import type { Download } from './localCache'
import type { HeldLock } from './lockClient'
import { databaseOfJournal, HELD_JOURNAL_CLOSED_MS, JOURNAL_HEADER_BYTES, JOURNAL_SUFFIX, looksLikeRollbackJournal } from './heldJournals'
import { WorkingCopy } from './workingCopy'
import type { WorkingCopyBackend } from './workingCopy'

const { O_RDONLY, O_WRONLY, O_RDWR, O_APPEND, O_EXCL } = fs.constants
/** Linux's mask of the access mode bits of open flags; Node does not export it. */
export const O_ACCMODE = 3

const NO_HANDLES: ReadonlySet<never> = new Set()
/** What a file created here holds until its first write. */
const NO_BYTES = Buffer.alloc(0)
/** How often a read tries to deliver what the mount has shown beyond its copy (see readPastCopy). */
const READ_PAST_COPY_ATTEMPTS = 3
/**
 * A read this far past what a download has brought asks the server for its bytes alone
 * (DfsClient.readRange) rather than wait: at the few hundred MB/s a download comes at
 * here, about 30 ms of waiting, against one request of about a millisecond.
 */
const RANGE_READ_AHEAD_BYTES = 8 * 1024 * 1024
/**
 * A download with more than this still to come when its reader reads that far ahead is
 * called off, and the handle reads by ranges from then on: a `tail` of a large log, or a
 * seek into a disk image, does not fetch the whole file for a few blocks of it.
 */
const CALL_OFF_DOWNLOAD_BYTES = 16 * 1024 * 1024
/**
 * What a handle that stays open wrote is sent anyway once its writes pause this long, or at
 * the latest WRITE_BEHIND_MAX_MS after the first of them, as an fsync would send it: a
 * daemon's log, or `nohup job > out.log`, reaches its server (and every other mount) within
 * seconds, not only at close, and a mount killed meanwhile loses at most that much. A
 * program that closes sooner (`echo >>`, an editor's save), or writes without a pause until
 * it closes, still costs one request and is seen whole or not at all.
 */
export const WRITE_BEHIND_IDLE_MS = 1000
export const WRITE_BEHIND_MAX_MS = 2000
/**
 * A working copy (a file written in place) is stored behind only while that costs at most
 * this: a bulk copy over an existing file is not stored again and again as it grows, only
 * at its close; a log it rewrites from the start is, in small range writes.
 */
const WRITE_BEHIND_STORE_BYTES = 8 * 1024 * 1024

/** A descriptor that lives on after its file was unlinked (UnlinkedFiles): whether it was opened with O_APPEND. */
export interface Survivor {
  id: number
  append: boolean
}

/** A time as utimensat gives it: ms since the epoch, or UTIME_NOW / UTIME_OMIT. */
export type TimeArgument = number | 'now' | 'omit'

/** A version opened for reading (DfsClient.openForReading). */
export interface OpenedForReading {
  reader: CopyReader
  meta: FileMeta
  /** The copy `reader` reads while it is still arriving; null for a copy in place, bytes in memory, or ranges. */
  download: Download | null
  /** Read by ranges, with no copy: a large file not cached here (see `rangesAbove`). */
  byRanges?: true
}

/** What the open-file table needs of the client core (DfsClient has it all). */
export interface OpenFileBackend extends WorkingCopyBackend {
  /** Where working copies are kept. */
  readonly workDir: string
  openForReading: (path: string, opts?: { rangesAbove?: number }) => Promise<OpenedForReading>
  /** Metadata, possibly remembered for a moment. */
  stat: (path: string) => Promise<FileMeta>
  /** What stat would answer with no request, or undefined. */
  statKnown: (path: string) => FileMeta | undefined
  /** The same, from the server's callback promise where it holds one (no request). */
  statCurrent: (path: string) => Promise<FileMeta>
  append: (path: string, data: Buffer) => Promise<FileMeta>
  truncate: (path: string, size: number) => Promise<FileMeta>
  utimes: (path: string, mtimeMs: number, atimeMs?: number) => Promise<FileMeta>
  /** A new file with its bytes in one request (see DfsClient.createWithContent). */
  createWithContent: (path: string, data: Buffer, opts: { mode?: number, mtimeMs?: number, exclusive: boolean, appendIfTaken?: boolean, keepWriting?: boolean }) => Promise<{ meta: FileMeta, storedAs: string }>
  /** Drops what is remembered of a path (its server, its metadata). */
  forget: (path: string) => void
  /** Why this client's credential cannot change files now (a read-only or expired token), or null. */
  writeRefusal: () => string | null
  /** A reader of `meta`'s version by ranges, with no copy: StaleHandleError once the file is another. */
  rangeReaderOf: (path: string, meta: FileMeta) => CopyReader
  /** A line for the client's log (the mount's). */
  logLine: (line: string) => void
  /** Whether a write's bytes fit on the file's server (see DfsClient.roomFor). */
  roomFor: (path: string, adding: number, heldBack: number, isNew: boolean) => Promise<boolean>
}

/**
 * A file created on this mount whose create rides in its first flush (see OpenFileTable.create):
 * until then it exists only here, with these attributes.
 */
interface UnbornFile {
  meta: FileMeta
  /** O_EXCL: a name another mount took meanwhile fails the close (EEXIST). */
  exclusive: boolean
  /**
   * Every write so far came through an O_APPEND handle (and no truncation): if another mount
   * takes the name first, the bytes are appended to its file, as on a local disk (two
   * machines' `>> log` of a new log); else they are kept beside it as a conflict copy.
   */
  appendedOnly: boolean
  /** A time set before the first flush (cp -p, tar): sent with the create. */
  mtimeMs?: number
  /**
   * sqlite's rollback journal of a database open here for writing, kept here through its
   * fsyncs, and past its close until its unlink (heldJournals.ts): sent only when a server
   * may need it.
   */
  held?: boolean
}

/**
 * Why a handle's data is flushed: the program's fsync; its close (or the handle's release);
 * write-behind after a pause; or because the bytes must be on the server now (a read, an
 * open, a full buffer, an unmount).
 */
type FlushReason = 'fsync' | 'close' | 'idle' | 'needed'

/**
 * Appends of one path that wait for a flush, from every handle of the path on this mount,
 * in the order of the write() calls: one buffer per path, as one inode has one end.
 */
interface PathAppends {
  buffer: AppendBuffer
  /** Remote size the pending bytes will be appended to. */
  base: number
  /** Bytes sent and not answered yet (see sendBehind): they land between `base` and the buffer. */
  sending: number
}

interface OpenFile {
  id: number
  path: string
  flags: number
  /** The local copy this handle reads from (a cached version). */
  reader: CopyReader | null
  /** The reader's copy while it is still arriving; reads wait for their bytes. */
  download: Download | null
  /** The version `reader` holds. */
  readerMeta: FileMeta
  /** The path's appends not sent yet, shared by its handles on this mount. */
  appends: PathAppends
  /** Appends to the path were sent since `reader` was opened: it may not hold them. */
  readerBehind: boolean
  /**
   * The last flush failed and nothing was written since: the caller's close() has been told,
   * so the release that follows must not store the data after all (the server may be back).
   */
  flushFailed: boolean
  working: WorkingCopy | null
  /** The send of its appends after a pause in its writes (see sendLater), if it stays open that long. */
  writeBehind: NodeJS.Timeout | null
  /** When the first write the timer waits to send came (monotonic ms). */
  writeBehindSince: number
  /** Another client removed the file while this handle had it open (an append found nothing): its writes fail with ESTALE. */
  removedElsewhere: boolean
  /**
   * Another client renamed a file onto this handle's name while this handle had it open for
   * reading (renamedElsewhere): the name holds another file now, so the handle reads on what
   * it opened and never moves to a newer version of the name.
   */
  replacedElsewhere: boolean
  /**
   * Opened by ranges (a large file with no copy here): its whole copy is fetched at its first
   * read near the start, as `cat` or a copy reads; until then each read moves only its bytes.
   */
  wholeCopyLater: boolean
}

function removedElsewhereError (path: string): StaleHandleError {
  return new StaleHandleError(`${path} was removed by another client while it was open here`, { path })
}

/**
 * The open-file table behind a mount: what one open() of a remote file means until its
 * close. Opening for reading revalidates the local copy with the file server (close-to-open
 * consistency) and reads come from that copy. Writes at the end of the file are gathered
 * and sent as one locked append on flush, so many small write() calls cost one request.
 * A write anywhere else takes the file's lock, moves the handle onto the path's working
 * copy of the current version, and the whole copy is stored on flush: other clients see the
 * file as it was before or after, never half written.
 */
export class OpenFileTable {
  private readonly files = new Map<number, OpenFile>()
  private readonly byPath = new Map<string, Set<OpenFile>>()
  private readonly workingCopies = new Map<string, WorkingCopy>()
  /** Working copies being made (lock, fetch, copy): later writers wait for the same one. */
  private readonly startingCopies = new Map<string, Promise<WorkingCopy>>()
  private readonly flushes = new KeyedMutex()
  /** Held journals closed and not unlinked yet: each is sent when its timer runs out (HELD_JOURNAL_CLOSED_MS). */
  private readonly heldClosed = new Map<string, NodeJS.Timeout>()
  private readonly appends = new Map<string, PathAppends>()
  /** Per path, the send of a full append buffer that runs while writes go on (see sendBehind). */
  private readonly sendingBehind = new Map<string, Promise<void>>()
  /** The attributes last seen of each path open here (see attributes()). */
  private readonly lastSeen = new Map<string, FileMeta>()
  /** Files created here and not sent yet (see create()). */
  private readonly unborn = new Map<string, UnbornFile>()
  private nextId = 1

  constructor (private readonly client: OpenFileBackend, private readonly maxPendingBytes = DEFAULT_MAX_PENDING_BYTES) {}

  async open (filePath: string, flags: number): Promise<number> {
    const canonical = normalizePath(filePath)
    if ((flags & O_ACCMODE) !== O_RDONLY) this.refuseWithoutWriteRights(canonical)
    // A file created here goes to its server first: the open reads it from there.
    await this.settle(canonical)
    try {
      return await this.openExisting(canonical, flags)
    } catch (err) {
      // The kernel looked the name up before this open; gone now means another mount removed it.
      if (!(err instanceof NotFoundError)) throw err
      this.client.forget(canonical)
      throw new StaleHandleError(`${canonical} was removed after it was looked up`, { path: canonical })
    }
  }

  private async openExisting (canonical: string, flags: number): Promise<number> {
    const access = flags & O_ACCMODE
    // What other handles of this mount wrote is there for this one, as on a local disk.
    await this.sendPendingOf(canonical)
    let opened: OpenedForReading | null = null
    let meta: FileMeta
    if (access !== O_WRONLY) {
      opened = await this.client.openForReading(canonical, { rangesAbove: RANGE_READ_AHEAD_BYTES })
      meta = opened.meta
    } else if ((flags & O_APPEND) !== 0) {
      // Where the bytes go is the server's end of the file, whatever size we know; the stat
      // only makes a missing file or a server known to be down fail the open, where the
      // shell reports it (`echo x >> f` ignores errors of close()). The kernel's getattr
      // just before the open has usually refreshed it.
      meta = await this.client.stat(canonical)
    } else {
      // Tells an append (a write at the end) from an overwrite: this size must be current,
      // as the server has it or as its callback vouches for it (no change is answered before
      // this mount heard of it; after this mount's own store, the store's answer).
      meta = await this.client.statCurrent(canonical)
    }
    this.lastSeen.set(canonical, meta)
    return this.register(canonical, flags, opened, meta)
  }

  /** A new handle of a path whose end on the server is `seen.size`, with what it reads (null: opened for writing only). */
  private register (canonical: string, flags: number, opened: OpenedForReading | null, seen: FileMeta): number {
    const appendBase = seen.size
    const id = this.nextId++
    // Other handles' appends were sent before: the path's end is the size just seen.
    let appends = this.appends.get(canonical)
    if (!appends) this.appends.set(canonical, appends = { buffer: new AppendBuffer(this.maxPendingBytes), base: appendBase, sending: 0 })
    else if (appends.buffer.size === 0 && appends.sending === 0) appends.base = appendBase
    const file: OpenFile = {
      id, path: canonical, flags, reader: opened?.reader ?? null, download: opened?.download ?? null, readerMeta: seen, appends,
      readerBehind: false, flushFailed: false, working: null, writeBehind: null, writeBehindSince: 0, removedElsewhere: false, replacedElsewhere: false, wholeCopyLater: opened?.byRanges === true
    }
    this.files.set(id, file)
    let handles = this.byPath.get(canonical)
    if (!handles) this.byPath.set(canonical, handles = new Set())
    handles.add(file)
    return id
  }

  /**
   * create(2) with no request: the file exists on this mount at once (attributes(),
   * unbornIn() for listings) and its create rides in its first flush, the close's at the
   * latest, with the bytes written by then, as one request (DfsClient.createWithContent):
   * on the server's disk and claimed with the directory before the close returns. The
   * kernel looked the name up just before (a lookup that found nothing, which is never
   * remembered): that is the check of the namespace. A name another mount takes between
   * that lookup and the close: with O_EXCL the close fails with EEXIST (the one that lost
   * is told, the one that won keeps its file). Without O_EXCL the caller asked for the name
   * whether it existed or not, and either outcome of the race could be right, so neither
   * side's bytes are dropped: the other mount's file keeps the name. A file this mount only
   * appended to (or did not write) is then that file, as it would be on a local disk: the
   * bytes are appended to it. Other bytes are kept beside it as NAME.conflict-HOST-TIME and
   * the mount logs it, as a store that lost its lease does; the close succeeds, since the
   * bytes are on disk.
   */
  async create (filePath: string, mode?: number, flags: number = O_RDWR): Promise<number> {
    const canonical = normalizePath(filePath)
    this.refuseWithoutWriteRights(canonical)
    const meta: FileMeta = { path: canonical, kind: 'file', version: 0, size: 0, mtimeMs: Date.now(), mode }
    // What it holds until its first write: nothing, read from memory (no descriptor to open).
    const reader = new BytesReader(NO_BYTES)
    this.unborn.set(canonical, { meta, exclusive: (flags & O_EXCL) !== 0, appendedOnly: true })
    this.lastSeen.set(canonical, meta)
    return this.register(canonical, flags & ~O_ACCMODE | O_RDWR, { reader, meta, download: null }, meta)
  }

  /**
   * Under a read-only or expired token an open for writing fails here (EACCES), where the
   * program sees it: taken, its bytes would be refused at the close, whose error shells
   * ignore. A token file replaced by a good one counts from the next open.
   */
  private refuseWithoutWriteRights (path: string): void {
    const refusal = this.client.writeRefusal()
    if (refusal !== null) throw new ForbiddenError(`${refusal}: ${path} cannot be opened for writing`, { path })
  }

  /** Whether a path is a file created here whose create was not sent yet. */
  isUnborn (filePath: string): boolean {
    return this.unborn.has(normalizePath(filePath))
  }

  /** The files created in a folder on this mount and not sent yet, for its listing. */
  unbornIn (folder: string): FileMeta[] {
    const canonical = normalizePath(folder)
    return [...this.unborn.values()].filter((u) => parentOf(u.meta.path) === canonical).map((u) => this.localView(u.meta))
  }

  /**
   * Sends the create of a file made here (with what was written so far) before an operation
   * that needs the file on its server: another open of it, a rename, an unlink, a lock.
   */
  async settle (filePath: string): Promise<void> {
    const canonical = normalizePath(filePath)
    if (!this.unborn.has(canonical)) return
    await this.flushes.run(canonical, async () => {
      const appends = this.appends.get(canonical)
      if (appends !== undefined) await this.bear(canonical, appends)
    })
  }

  /**
   * Before this mount renames `from` (a file, or a folder with what is under it): what its
   * handles here hold back is sent to the file under its old name, so the rename takes it
   * along. A file written here through a working copy (other than by appending) is not
   * renamed (BusyError, EBUSY, as for a folder with writers): its copy is stored under its
   * path's lock. Names this rename lands on must have no handles here: libfuse moves an
   * open target aside first (to a hidden name, see UnlinkedFiles).
   */
  async beforeRename (from: string, to: string): Promise<void> {
    const source = normalizePath(from)
    for (const path of this.openPathsAt(source)) {
      if (this.workingCopies.has(path) || this.startingCopies.has(path)) {
        throw new BusyError(`${path} is being written on this mount (not by appending): rename it once it is closed`, { path })
      }
      await this.sendPendingOf(path)
    }
    const target = normalizePath(to)
    if (this.openPathsAt(target).length > 0) throw new BusyError(`${target} is open on this mount: rename onto it once it is closed`, { path: target })
  }

  /**
   * After this mount renamed `from` to `to`: its handles of the file, or of the files under
   * the folder, follow it to the new name, as descriptors do on a local disk, so what a
   * program writes through one after the rename (a log rotated under a writer) is stored
   * where the file now is, not refused at close under a name that is gone.
   */
  renamed (from: string, to: string): void {
    const source = normalizePath(from)
    const target = normalizePath(to)
    for (const path of this.openPathsAt(source)) {
      const moved = target + path.slice(source.length)
      // Handles of a file the move replaced (renamedElsewhere: they only read what they
      // opened) stay, and share the name with those that came, as after a removal and a
      // new file by that name. What the name's tables held of the replaced file goes.
      const staying = this.byPath.get(moved)
      const coming = this.byPath.get(path)
      for (const table of [this.byPath, this.appends, this.lastSeen, this.sendingBehind] as Array<Map<string, unknown>>) {
        const entry = table.get(path)
        table.delete(moved)
        if (entry === undefined) continue
        table.delete(path)
        table.set(moved, entry)
      }
      for (const file of coming ?? []) file.path = moved
      if (staying !== undefined && coming !== undefined) for (const file of staying) coming.add(file)
    }
  }

  /**
   * Another client renamed `from` to `to` (a file server said so with its callback's break,
   * or the directory, DfsClient.followMove): handles of it here follow, as after renamed(),
   * so their later writes land in the file under its new name; so does a working copy, which
   * gave its lease back for the rename (the rename waited for its changes to be stored) and
   * takes it again under the new name at its next change. `to` may be open here too, only
   * for reading, with nothing of it unsent (a log viewed while the next one is rotated onto
   * it): those handles read on what they opened, as after another mount's removal of a file
   * open here. Not where `to` is written here, nor a copy still starting or holding its
   * lease or changes: those stay, and a later write or store under the old name fails (ESTALE).
   */
  renamedElsewhere (from: string, to: string): boolean {
    const source = normalizePath(from)
    const target = normalizePath(to)
    if (!this.byPath.has(source) || this.startingCopies.has(source)) return false
    if (this.byPath.has(target) && !this.onlyReadHere(target)) return false
    const working = this.workingCopies.get(source)
    if (working !== undefined && !(working.leaseGivenBack && !working.holdsUnstoredChanges)) return false
    for (const file of this.handlesOf(target)) file.replacedElsewhere = true
    this.renamed(source, target)
    if (working !== undefined) {
      this.workingCopies.delete(source)
      this.workingCopies.set(target, working)
      working.renamedTo(target)
    }
    return true
  }

  /** Whether the file at `path` is open here only for reading, with nothing of it unsent or being written. */
  private onlyReadHere (path: string): boolean {
    if (this.writtenHere(path) || this.isAppendedHere(path)) return false
    return [...this.handlesOf(path)].every((file) => (file.flags & O_ACCMODE) === O_RDONLY)
  }

  /** Paths open here that are `root` or under it. */
  private openPathsAt (root: string): string[] {
    const prefix = root === '/' ? '/' : root + '/'
    return [...this.byPath.keys()].filter((path) => path === root || path.startsWith(prefix))
  }

  /** settle() for every file made here below a folder (before an rmdir or a rename of it). */
  async settleUnder (folder: string): Promise<void> {
    const prefix = normalizePath(folder) + '/'
    for (const path of [...this.unborn.keys()]) if (path.startsWith(prefix)) await this.settle(path)
  }

  /** permission bits of a file made here and not sent yet: sent with its create. False when the path is not such a file. */
  setUnbornMode (filePath: string, mode: number): boolean {
    const unborn = this.unborn.get(normalizePath(filePath))
    if (unborn === undefined) return false
    unborn.meta = { ...unborn.meta, mode: mode & 0o7777 }
    return true
  }

  /**
   * Runs inside the path's flush turn: the create with the bytes held back, then the path is
   * an ordinary file. `keepWriting`: an fsync of a file that stays open (DfsClient.createWithContent).
   */
  private async bear (canonical: string, appends: PathAppends, keepWriting = false): Promise<void> {
    const unborn = this.unborn.get(canonical)
    if (unborn === undefined) return
    const data = appends.buffer.take()
    appends.sending += data.length
    try {
      const appendIfTaken = data.length === 0 || unborn.appendedOnly
      const { meta, storedAs } = await this.client.createWithContent(canonical, data, { mode: unborn.meta.mode, mtimeMs: unborn.mtimeMs, exclusive: unborn.exclusive, appendIfTaken, keepWriting })
      this.unborn.delete(canonical)
      this.stopHeldTimer(canonical)
      if (storedAs === canonical) {
        appends.base = meta.size
        this.lastSeen.set(canonical, meta)
      } else {
        this.lastSeen.delete(canonical)
      }
      // A held journal closed already: nothing of it stays in the tables.
      if (this.handlesOf(canonical).size === 0 && this.appends.get(canonical) === appends) {
        this.appends.delete(canonical)
        this.lastSeen.delete(canonical)
      }
      // Their readers hold the empty file of the create: the stored bytes are in the cache now.
      for (const other of this.handlesOf(canonical)) if (other.reader) other.readerBehind = true
    } catch (err) {
      appends.buffer.putBack(data)
      throw err
    } finally {
      appends.sending -= data.length
    }
  }

  /**
   * Sends the journal this mount holds for a database (heldJournals.ts), if it holds one,
   * before something that may let another mount write the database or see it half made:
   * a lock given up or shared, its rename or unlink.
   */
  async sendHeldJournalOf (databasePath: string): Promise<void> {
    const journal = normalizePath(databasePath) + JOURNAL_SUFFIX
    if (this.unborn.get(journal)?.held === true) await this.settle(journal)
  }

  /** Whether the path is a journal held here (heldJournals.ts). */
  isHeldJournal (filePath: string): boolean {
    return this.unborn.get(normalizePath(filePath))?.held === true
  }

  /**
   * unlink of a held journal no handle has open (sqlite's commit): it goes with no request,
   * as it never reached a server. False when the path is no such journal.
   */
  async dropHeldJournal (filePath: string): Promise<boolean> {
    const canonical = normalizePath(filePath)
    if (this.unborn.get(canonical)?.held !== true) return false
    return await this.flushes.run(canonical, async () => {
      if (this.unborn.get(canonical)?.held !== true || this.handlesOf(canonical).size > 0) return false
      this.forgetHeldJournal(canonical)
      return true
    })
  }

  /** A held journal leaves the tables: a flush of a handle still on its way out then finds nothing to send. */
  private forgetHeldJournal (canonical: string): void {
    this.appends.get(canonical)?.buffer.take()
    this.appends.delete(canonical)
    this.unborn.delete(canonical)
    this.lastSeen.delete(canonical)
    this.stopHeldTimer(canonical)
  }

  /**
   * At an fsync of a file made here: whether it is sqlite's rollback journal of a database
   * this mount has open for writing, all of it still here (heldJournals.ts).
   */
  private mayHoldJournal (canonical: string, appends: PathAppends): boolean {
    const database = databaseOfJournal(canonical)
    if (database === null || appends.sending > 0 || appends.base !== 0) return false
    if (![...this.handlesOf(database)].some((file) => (file.flags & O_ACCMODE) !== O_RDONLY)) return false
    return looksLikeRollbackJournal(appends.buffer.head(JOURNAL_HEADER_BYTES))
  }

  /** A held journal closed: sent after HELD_JOURNAL_CLOSED_MS unless unlinked first. */
  private sendHeldLater (canonical: string): void {
    this.stopHeldTimer(canonical)
    const timer = setTimeout(() => {
      this.heldClosed.delete(canonical)
      this.settle(canonical).catch((err: unknown) => {
        this.client.logLine(`could not send ${canonical}, a journal held here, to its server: ${err instanceof Error ? err.message : String(err)}; trying again`)
        if (this.unborn.get(canonical)?.held === true) this.sendHeldLater(canonical)
      })
    }, HELD_JOURNAL_CLOSED_MS)
    timer.unref()
    this.heldClosed.set(canonical, timer)
  }

  private stopHeldTimer (canonical: string): void {
    clearTimeout(this.heldClosed.get(canonical))
    this.heldClosed.delete(canonical)
  }

  async read (id: number, buffer: Buffer, length: number, position: number, reopened = false): Promise<number> {
    const file = this.get(id)
    await this.sendPendingOf(file.path)
    const working = file.working ?? this.workingCopies.get(file.path)
    // Opened by ranges and read near the start: the whole file is wanted (RANGE_READ_AHEAD_BYTES).
    const wholeWanted = file.wholeCopyLater && position < RANGE_READ_AHEAD_BYTES
    // The cache may have replaced the copy the reader has open rather than append to it.
    if (!working && !file.replacedElsewhere && (file.readerBehind || wholeWanted)) await this.reopenReader(file, wholeWanted)
    const source = working ?? file.reader
    if (!source) throw new BadRequestError(`${file.path} is not open for reading`)
    if (!working && file.download) {
      // Far ahead of a large file's download (tail, a seek, an archive's index at its end):
      // those bytes of the same version are fetched by themselves, not waited for.
      if (!file.download.finished && position > file.download.received + RANGE_READ_AHEAD_BYTES) {
        const bytes = await this.readAhead(file, position, length)
        if (bytes !== null) return bytes.copy(buffer, 0)
      }
      try {
        await file.download.waitFor(position + length)
      } catch (err) {
        // The cache folder could not hold the copy (its disk filled up): the same version by ranges, with no copy.
        if (!(err instanceof LocalCacheError)) throw err
        this.client.logLine(`${err.message}: reading it from its server by ranges`)
        await this.readByRanges(file)
        return await this.read(id, buffer, length, position, reopened)
      }
      // Bytes that just arrived are still in memory: no read of the copy for them.
      const copied = file.download.copyRecent(buffer, length, position)
      if (copied === length) return copied
    }
    let bytesRead: number
    try {
      bytesRead = (await source.read(buffer, 0, length, position, !working && file.download?.justWritten === true)).bytesRead
    } catch (err) {
      // Read by ranges, and the file changed since it was opened (a log another mount appends
      // to): opened again, as after this mount's own appends (readPastCopy), and read as it is now.
      if (reopened || file.replacedElsewhere || !(source instanceof RangeReader) || !(err instanceof StaleHandleError)) throw err
      await this.reopenReader(file)
      return await this.read(id, buffer, length, position, true)
    }
    // A replaced handle's file ends where its copy does: what the name shows now is another file's.
    if (working || bytesRead === length || file.replacedElsewhere) return bytesRead
    return await this.readPastCopy(file, buffer, length, position, bytesRead)
  }

  /**
   * A read that the reader's copy ends short of. The kernel takes the size this mount showed
   * last (getattr: the server's, plus this mount's appends under way) for the file's length,
   * and fills what a read does not deliver with zeros that a reader then sees as the file's
   * end. So while the mount has shown more than the copy holds, the appends under way land
   * first and the read is answered again from a current copy: read delivers what getattr
   * promised. Bounded: a mount appending without pause could otherwise keep a read waiting.
   */
  private async readPastCopy (file: OpenFile, buffer: Buffer, length: number, position: number, bytesRead: number): Promise<number> {
    for (let attempt = 0; attempt < READ_PAST_COPY_ATTEMPTS && position + bytesRead < this.shownSize(file.path); attempt++) {
      await this.sendPendingOf(file.path)
      await this.sendsUnderWay(file.path)
      if (this.workingCopies.has(file.path)) break
      await this.reopenReader(file)
      if (file.download) await file.download.waitFor(position + length)
      bytesRead = (await (file.reader as CopyReader).read(buffer, 0, length, position)).bytesRead
      if (bytesRead === length) break
    }
    return bytesRead
  }

  /** The size getattr shows of a path open here (see attributes()), or 0 when none was seen. */
  private shownSize (filePath: string): number {
    const seen = this.lastSeen.get(filePath)
    return seen === undefined ? 0 : this.localView(seen).size
  }

  /** Waits for the appends of a path that are on their way to the server (a flush under way). */
  private async sendsUnderWay (filePath: string): Promise<void> {
    if ((this.appends.get(filePath)?.sending ?? 0) > 0) await this.flushes.run(filePath, async () => {})
  }

  async write (id: number, data: Buffer, position: number): Promise<number> {
    const file = this.get(id)
    if (file.removedElsewhere) throw removedElsewhereError(file.path)
    file.flushFailed = false
    const unborn = this.unborn.get(file.path)
    if (unborn !== undefined) unborn.mtimeMs = undefined // a write moves the time, as on a local disk
    const appending = (file.flags & O_APPEND) !== 0
    if (unborn !== undefined && !appending) unborn.appendedOnly = false
    const heldBack = data.length + (file.working ? 0 : file.appends.sending + file.appends.buffer.size)
    if (!(await this.client.roomFor(file.path, data.length, heldBack, unborn !== undefined))) {
      throw new InsufficientStorageError(`no room for ${data.length} more bytes of ${file.path} on its file server`, { path: file.path })
    }
    if (!file.working) {
      const { appends } = file
      const end = appends.base + appends.sending + appends.buffer.size
      // A file made here and not sent yet has all its bytes in the buffer: a write elsewhere
      // than at its end stays there too, over them (a header written after the body: sqlite's
      // journal, zip) or past a gap of zeros (sqlite's next journal header), but no gap longer
      // than a full buffer (a sparse file goes on in a working copy).
      const overBuffered = !appending && unborn !== undefined && appends.sending === 0 && position >= appends.base && position - appends.base <= this.maxPendingBytes
      if (!this.workingCopies.has(file.path) && (appending || position === end || overBuffered)) {
        if (overBuffered) appends.buffer.writeAt(position - appends.base, data)
        else appends.buffer.push(data)
        if (appends.buffer.size >= this.maxPendingBytes) await this.sendBehind(file)
        else this.sendLater(file)
        return data.length
      }
      // A send under way lands first: the copy is made from the file as it then is.
      await this.sendingBehind.get(file.path)
      await this.settle(file.path)
      await this.useWorkingCopy(file)
    }
    const working = file.working as WorkingCopy
    await working.write(data, appending ? working.size : position)
    this.sendLater(file)
    return data.length
  }

  /** ftruncate: always through the working copy, so it is stored with the other changes. */
  async truncate (id: number, size: number): Promise<void> {
    const file = this.get(id)
    file.flushFailed = false
    // A file made here and not sent yet: its bytes are all in the append buffer.
    const unborn = this.unborn.get(file.path)
    if (unborn !== undefined) unborn.appendedOnly = false
    if (!file.working && unborn !== undefined && file.appends.sending === 0 && size <= file.appends.buffer.size) {
      const kept = file.appends.buffer.take().subarray(0, size)
      if (kept.length > 0) file.appends.buffer.putBack(kept)
      return
    }
    // Cut to nothing (open(O_TRUNC), cp over a file): the old bytes need not be fetched.
    if (!file.working) {
      await this.sendingBehind.get(file.path)
      await this.settle(file.path)
      await this.useWorkingCopy(file, size === 0)
    }
    await (file.working as WorkingCopy).truncate(size)
  }

  /**
   * truncate(path): applied to the path's working copy, or through a handle that has the
   * path open for writing, if there is one (the change then lands with the store on close);
   * else on the file server at once. The kernel sends open(O_TRUNC) this way, with no
   * handle: applied to the server at once, `echo x > file` would leave the file empty for
   * everyone until close, and empty for good if the write then failed.
   */
  async truncatePath (filePath: string, size: number): Promise<void> {
    const canonical = normalizePath(filePath)
    const working = this.workingCopies.get(canonical)
    if (working) return await working.truncate(size)
    const writers = [...this.handlesOf(canonical)].filter((f) => (f.flags & O_ACCMODE) !== O_RDONLY)
    const writer = writers[writers.length - 1]
    if (writer) return await this.truncate(writer.id, size)
    await this.settle(canonical) // a held journal closed here: its server has it first
    await this.client.truncate(canonical, size)
  }

  /**
   * Sends what this handle wrote so far; errors reach the caller's close(). Flushes of one
   * path run one at a time (appends keep their order), and writes that arrive meanwhile,
   * from this handle or another, are kept for the next flush.
   */
  async flush (id: number, opts: { staysOpen?: boolean } = {}): Promise<void> {
    await this.flushHandle(this.get(id), opts.staysOpen === true ? 'fsync' : 'close')
  }

  private async flushHandle (file: OpenFile, why: FlushReason): Promise<void> {
    try {
      await this.flushNow(file, why)
      file.flushFailed = false
    } catch (err) {
      file.flushFailed = true
      throw err
    }
  }

  /**
   * An fsync, or write-behind, leaves the file open: the program goes on writing to it (a
   * database's journal). A database's store at any time but its fsync may leave its server a
   * transaction half made: its journal held here goes first (heldJournals.ts).
   */
  private async flushNow (file: OpenFile, why: FlushReason): Promise<void> {
    const staysOpen = why === 'fsync' || why === 'idle'
    await this.flushes.run(file.path, async () => {
      if (file.removedElsewhere) throw removedElsewhereError(file.path)
      if (why !== 'fsync' && this.holdsUnstored(file)) await this.sendHeldJournalOf(file.path)
      const unborn = this.unborn.get(file.path)
      if (unborn !== undefined) {
        if (why === 'fsync' && unborn.held !== true) unborn.held = this.mayHoldJournal(file.path, file.appends)
        if (unborn.held === true && why !== 'needed') {
          if (why === 'close') this.sendHeldLater(file.path)
          return
        }
        await this.bear(file.path, file.appends, staysOpen && (file.flags & O_ACCMODE) !== O_RDONLY)
      }
      if (file.appends.buffer.size > 0) {
        if (file.working) {
          await file.working.append(file.appends.buffer.take()) // stored with the copy
        } else if (this.workingCopies.has(file.path) || this.startingCopies.has(file.path)) {
          await this.useWorkingCopy(file) // the appends go into the copy, and are stored with it
        } else {
          await this.sendPending(file)
        }
      }
      await file.working?.store(this.client)
    })
  }

  /** Whether a handle's path has bytes here its server has not: appends, or a working copy's changes. */
  private holdsUnstored (file: OpenFile): boolean {
    return file.appends.buffer.size > 0 || (file.working ?? this.workingCopies.get(file.path))?.holdsUnstoredChanges === true
  }

  /**
   * A full append buffer leaves while the next one fills: the write waits only for the send
   * before it, so the kernel's writes, the request and the server's fsync overlap (a large
   * sequential write runs at the speed of the slowest, not of their sum). A send that fails
   * has put its bytes back (sendPending): the next flush, at the latest the close's, sends
   * them again and reports the error, so nothing is lost and nothing goes unreported.
   */
  private async sendBehind (file: OpenFile): Promise<void> {
    await this.sendingBehind.get(file.path)
    const sending = this.flushHandle(file, 'needed').catch(() => {})
    this.sendingBehind.set(file.path, sending)
    void sending.then(() => {
      if (this.sendingBehind.get(file.path) === sending) this.sendingBehind.delete(file.path)
    })
  }

  /**
   * Sends the handle's appends once its writes pause WRITE_BEHIND_IDLE_MS, or WRITE_BEHIND_MAX_MS
   * after the first write waiting, unless a flush sent them first (see sendIdle).
   */
  private sendLater (file: OpenFile): void {
    const now = monotonicMs()
    if (file.writeBehind === null) file.writeBehindSince = now
    else clearTimeout(file.writeBehind)
    const delay = Math.min(WRITE_BEHIND_IDLE_MS, file.writeBehindSince + WRITE_BEHIND_MAX_MS - now)
    file.writeBehind = setTimeout(() => {
      file.writeBehind = null
      void this.sendIdle(file)
    }, Math.max(0, delay))
    file.writeBehind.unref()
  }

  /**
   * Sends what a handle still open wrote, as an fsync would: its appends (a file made here is
   * created, and its lease kept for the writes to come), or its working copy's changes while
   * they are small (WRITE_BEHIND_STORE_BYTES). A send that fails has put its bytes back and
   * is tried again later; the close sends them and reports.
   */
  private async sendIdle (file: OpenFile): Promise<void> {
    if (this.files.get(file.id) !== file || this.startingCopies.has(file.path)) return
    const working = file.working ?? this.workingCopies.get(file.path)
    if (working !== undefined && working.unstoredBytes + file.appends.buffer.size > WRITE_BEHIND_STORE_BYTES) return
    if (working === undefined && file.appends.buffer.size === 0) return
    try {
      await this.flushNow(file, 'idle')
    } catch {
      if (this.files.get(file.id) === file && !file.removedElsewhere) this.sendLater(file)
    }
  }

  private async sendPending (file: OpenFile): Promise<void> {
    const { appends } = file
    const data = appends.buffer.take()
    appends.sending += data.length
    try {
      const meta = await this.appendWhereItIs(file, data)
      appends.base = meta.size
      this.lastSeen.set(file.path, meta)
    } catch (err) {
      if (err instanceof NotFoundError) {
        // Removed by another client while open here, with no word of a rename: these bytes
        // have nowhere to go. Kept, they would pile up for as long as the program writes (a
        // daemon's log); refused, the program hears of it at its next write, or its close,
        // as NFS answers ESTALE, and may open the path again.
        for (const handle of this.handlesOf(file.path)) if (handle.working === null) handle.removedElsewhere = true
        throw removedElsewhereError(file.path)
      }
      appends.buffer.putBack(data)
      throw err
    } finally {
      appends.sending -= data.length
    }
    for (const other of this.handlesOf(file.path)) if (other.reader) other.readerBehind = true
  }

  /**
   * Bytes far ahead of the handle's download, by themselves (RANGE_READ_AHEAD_BYTES); null
   * where they cannot be had so (the file moved on, the server did not answer): the caller
   * waits for the download, which holds the version opened. A download with much still to
   * come and no read waiting for it is then called off, and the handle reads by ranges.
   */
  private async readAhead (file: OpenFile, position: number, length: number): Promise<Buffer | null> {
    const download = file.download as Download
    let bytes: Buffer
    try {
      bytes = await this.client.readRange(file.path, file.readerMeta, position, length)
    } catch (err) {
      if (err instanceof DfsError) return null
      throw err
    }
    if (file.download === download && download.unwaited && file.readerMeta.size - download.received > CALL_OFF_DOWNLOAD_BYTES) {
      download.cancel()
      await this.readByRanges(file)
    }
    return bytes
  }

  /** The handle reads the version it opened by ranges from now on, with no copy (StaleHandleError once the file is another: read() then opens it again). */
  private async readByRanges (file: OpenFile): Promise<void> {
    const copy = file.reader
    file.reader = this.client.rangeReaderOf(file.path, file.readerMeta)
    file.download = null
    await copy?.close()
  }

  /**
   * Appends to the file under the name it has now. Another mount may rename it while the
   * bytes are on their way, or may have renamed it while this mount held no callback on it:
   * the server then finds nothing under the old name, and its word of the rename
   * (renamedElsewhere) comes later (the holders hear of a rename after its switch with the
   * directory) or never. So a miss asks the directory where the file went (followMove),
   * which moves the handles as the word would, and is sent again to the new name.
   */
  private async appendWhereItIs (file: OpenFile, data: Buffer): Promise<FileMeta> {
    const sentTo = file.path
    try {
      return await this.client.append(sentTo, data)
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err
      // No word of a rename came (this mount held no callback on the file): the directory
      // knows where a rename took it. Its switch is a rename's commit point, made before the
      // file leaves its old path, so a file it knows no move of was removed.
      if (file.path === sentTo) await this.client.followMove(sentTo)
      if (file.path === sentTo) throw err
      return await this.client.append(file.path, data)
    }
  }

  /**
   * The last close of a handle: its data is stored, then its copy closed. The handle leaves
   * the path's tables first, so an open or a truncate(path) that comes meanwhile (the kernel
   * sends release after close() has returned) does not join a copy that is about to close
   * and lose its change with it: it starts a copy of its own, after this one's lock.
   */
  async release (id: number): Promise<void> {
    const file = this.get(id)
    this.files.delete(id)
    if (file.writeBehind !== null) clearTimeout(file.writeBehind)
    const handles = this.byPath.get(file.path)
    handles?.delete(file)
    if (handles?.size === 0) {
      this.byPath.delete(file.path)
      // A held journal outlives its last handle until its unlink: its bytes stay.
      if (this.unborn.get(file.path)?.held !== true) {
        this.lastSeen.delete(file.path)
        this.appends.delete(file.path)
      }
    }
    const working = file.working
    const lastUser = working !== null && --working.users === 0
    if (lastUser && this.workingCopies.get(file.path) === working) this.workingCopies.delete(file.path)
    try {
      if (!file.flushFailed) await this.flushNow(file, 'close')
    } finally {
      // A create that failed (the close was told) goes with the file's last handle here.
      if ((handles === undefined || handles.size === 0) && this.unborn.get(file.path)?.held !== true) this.unborn.delete(file.path)
      await file.reader?.close()
      if (lastUser) await working.close(this.client)
    }
  }

  /**
   * Attributes as this mount shows them: the server's, with the size counting what open
   * handles hold back. While the file's server does not answer, a file open here keeps the
   * attributes last seen, so a program writing to it (whose close will wait for the server)
   * is not failed by the kernel's getattr in between.
   */
  async attributes (filePath: string): Promise<FileMeta> {
    const canonical = normalizePath(filePath)
    const known = this.attributesKnownOf(canonical)
    if (known !== undefined) return known
    try {
      return this.seen(canonical, await this.client.stat(canonical))
    } catch (err) {
      const known = this.lastSeen.get(canonical)
      if (!(err instanceof ServerUnavailableError) || known === undefined) throw err
      return this.localView(known)
    }
  }

  /** The attributes as `attributes` answers them, when that needs no request; else undefined. */
  attributesKnown (filePath: string): FileMeta | undefined {
    return this.attributesKnownOf(normalizePath(filePath))
  }

  private attributesKnownOf (canonical: string): FileMeta | undefined {
    const unborn = this.unborn.get(canonical)
    if (unborn !== undefined) return this.localView(unborn.mtimeMs === undefined ? unborn.meta : { ...unborn.meta, mtimeMs: unborn.mtimeMs })
    const known = this.client.statKnown(canonical)
    return known === undefined ? undefined : this.seen(canonical, known)
  }

  /** The server's attributes of a path, remembered while it is open here, as this mount shows them. */
  private seen (canonical: string, meta: FileMeta): FileMeta {
    if (this.byPath.has(canonical)) this.lastSeen.set(canonical, meta)
    return this.localView(meta)
  }

  /**
   * utimensat: each time in ms, 'now' or 'omit' (UTIME_NOW, UTIME_OMIT). What this mount
   * holds back of the file is sent first: stored later, it would stamp the file with the
   * time of its store (cp -p sets the times before it closes).
   */
  async setTimes (filePath: string, atime: TimeArgument, mtime: TimeArgument): Promise<void> {
    if (atime === 'omit' && mtime === 'omit') return
    const canonical = normalizePath(filePath)
    const unborn = this.unborn.get(canonical)
    if (unborn !== undefined) {
      // Sent with the create, unless a write comes after (it moves the time).
      if (mtime !== 'omit') unborn.mtimeMs = mtime === 'now' ? Date.now() : mtime
      return
    }
    if (mtime !== 'omit') for (const file of [...this.handlesOf(canonical)]) await this.flushHandle(file, 'needed')
    const mtimeMs = mtime === 'omit' ? (await this.client.stat(canonical)).mtimeMs : mtime === 'now' ? Date.now() : mtime
    const atimeMs = atime === 'omit' ? undefined : atime === 'now' ? Date.now() : atime
    await this.client.utimes(canonical, mtimeMs, atimeMs)
  }

  /**
   * Whether nothing of this mount's is at work on the path: no handle open, nothing held
   * back, under way or being created. Only then are its attributes the file server's alone
   * (localView adds nothing), so a callback on it vouches for all the mount would answer.
   */
  isQuiet (filePath: string): boolean {
    const canonical = normalizePath(filePath)
    return !this.byPath.has(canonical) && !this.appends.has(canonical) && !this.writtenHere(canonical)
  }

  /** Whether this mount writes the path: a copy written in place or starting, a create held back, a send under way. */
  private writtenHere (canonical: string): boolean {
    return this.workingCopies.has(canonical) || this.startingCopies.has(canonical) || this.unborn.has(canonical) || this.sendingBehind.has(canonical)
  }

  /** Whether a handle of this mount has the path open for appending, or its appends are on their way. */
  isAppendedHere (filePath: string): boolean {
    const canonical = normalizePath(filePath)
    const appends = this.appends.get(canonical)
    if (appends !== undefined && appends.buffer.size + appends.sending > 0) return true
    return [...this.handlesOf(canonical)].some((file) => (file.flags & O_APPEND) !== 0)
  }

  /** A size that counts what open handles hold back, as a local file system would show it. */
  localView (meta: FileMeta): FileMeta {
    if (meta.kind !== 'file') return meta
    // A copy that gave its lease back holds nothing unstored: the server's size is the newer.
    const working = this.workingCopies.get(meta.path)
    let size = working !== undefined && !working.leaseGivenBack ? working.size : meta.size
    const appends = this.appends.get(meta.path)
    // Bytes under way are counted until the answer: the memo's size has them from then on.
    if (appends !== undefined) size += appends.buffer.size + appends.sending
    return size === meta.size ? meta : { ...meta, size }
  }

  /**
   * unlink of a path this mount holds open: the bytes as this mount sees them (its working
   * copy, or the stored file with this mount's appends sent first) are copied to `localFile`,
   * then `remove` takes the name away on the servers, under the lease of the path's working
   * copy if there is one. The path's handles then leave this table, their unstored changes
   * going with the file; answers them (id, and whether opened with O_APPEND), to live on
   * with the local copy (UnlinkedFiles). If `remove` fails, the handles stay as they were.
   *
   * With no handle left here, nothing is copied: libfuse counts a file open until the
   * release it sent has been answered, and the kernel sends a close's release after close(2)
   * returned, so a program's close and unlink right after it (sqlite's journal at each
   * commit) often comes here as a hide of a file this table has already let go of.
   */
  async detach (filePath: string, localFile: string, remove: (lease?: HeldLock) => Promise<void>): Promise<Survivor[]> {
    const canonical = normalizePath(filePath)
    const heldJournalSurvivors = await this.detachHeldJournal(canonical, localFile)
    if (heldJournalSurvivors !== null) return heldJournalSurvivors
    await this.settle(canonical)
    await this.startingCopies.get(canonical)
    const working = this.workingCopies.get(canonical)
    const handles = [...this.handlesOf(canonical)]
    if (handles.length === 0 && working === undefined) {
      await remove()
      return []
    }
    if (working) {
      for (const file of handles) if (file.appends.buffer.size > 0) await working.append(file.appends.buffer.take())
      await working.copyTo(localFile)
    } else {
      await this.sendPendingOf(canonical)
      const { reader, download } = await this.client.openForReading(canonical)
      try {
        await download?.waitFor(Number.POSITIVE_INFINITY)
        await copyWhole(reader, localFile)
      } finally {
        await reader.close()
      }
    }
    await remove(working?.lease)
    const survivors = await this.handOver(canonical, handles)
    this.appends.delete(canonical)
    this.lastSeen.delete(canonical)
    if (working) {
      this.workingCopies.delete(canonical)
      await working.close(this.client, { keep: false })
    }
    return survivors
  }

  /** A path's handles leave this table at its unlink, to go on elsewhere (UnlinkedFiles): which they are. */
  private async handOver (canonical: string, handles: OpenFile[]): Promise<Survivor[]> {
    for (const file of handles) {
      this.files.delete(file.id)
      await file.reader?.close()
    }
    this.byPath.delete(canonical)
    return handles.map((file) => ({ id: file.id, append: (file.flags & O_APPEND) !== 0 }))
  }

  /**
   * detach() of a held journal (sqlite unlinks it at its commit, often before the kernel's
   * release of its last handle has been answered): no server ever had it, so nothing is
   * removed there; the handles still open go on with its bytes in `localFile`. Null when
   * the path is no held journal.
   */
  private async detachHeldJournal (canonical: string, localFile: string): Promise<Survivor[] | null> {
    if (this.unborn.get(canonical)?.held !== true) return null
    return await this.flushes.run(canonical, async () => {
      const appends = this.appends.get(canonical)
      if (this.unborn.get(canonical)?.held !== true || appends === undefined) return null
      const handles = [...this.handlesOf(canonical)]
      if (handles.length > 0) await fs.promises.writeFile(localFile, appends.buffer.head(appends.buffer.size))
      const survivors = await this.handOver(canonical, handles)
      this.forgetHeldJournal(canonical)
      return survivors
    })
  }

  /** Sends everything held back, e.g. before unmounting. */
  async flushAll (): Promise<void> {
    await Promise.allSettled([...this.files.values()].map(async (file) => await this.flushHandle(file, 'needed')))
    const held = [...this.unborn].filter(([, unborn]) => unborn.held === true).map(([path]) => path)
    await Promise.allSettled(held.map(async (path) => await this.settle(path)))
  }

  private async sendPendingOf (filePath: string): Promise<void> {
    await this.sendingBehind.get(filePath)
    for (const file of [...this.handlesOf(filePath)]) {
      if (file.appends.buffer.size > 0) await this.flushHandle(file, 'needed')
    }
  }

  /**
   * Moves a handle onto the path's working copy, making the copy if there is none: the lock,
   * then the version current under the lock. The handle's unsent appends go into the copy
   * and are stored with it.
   */
  private async useWorkingCopy (file: OpenFile, empty = false): Promise<void> {
    let working = this.workingCopies.get(file.path)
    if (!working) {
      let starting = this.startingCopies.get(file.path)
      if (!starting) {
        starting = WorkingCopy.start(this.client, file.path, this.client.workDir, empty)
          .then((made) => {
            this.workingCopies.set(file.path, made)
            return made
          })
          .finally(() => this.startingCopies.delete(file.path))
        this.startingCopies.set(file.path, starting)
      }
      working = await starting
    }
    working.users++
    file.working = working
    if (file.appends.buffer.size > 0) await working.append(file.appends.buffer.take())
  }

  /** The handle reads the current version from now on; `whole`: from a whole copy, never by ranges (wholeCopyLater). */
  private async reopenReader (file: OpenFile, whole = false): Promise<void> {
    let opened: OpenedForReading
    try {
      opened = await this.client.openForReading(file.path, whole ? {} : { rangesAbove: RANGE_READ_AHEAD_BYTES })
    } catch (err) {
      // Removed (by another client) since this handle opened it, and no copy here to read: as NFS says it.
      if (err instanceof NotFoundError) throw new StaleHandleError(`${file.path} was removed since it was opened here`, { path: file.path })
      throw err
    }
    await file.reader?.close()
    file.reader = opened.reader
    file.download = opened.download
    file.readerMeta = opened.meta
    file.readerBehind = false
    file.wholeCopyLater = opened.byRanges === true
  }

  /**
   * A program on this mount was just granted an fcntl lock on the path: what it reads from
   * now on must include what another mount stored before it let go of its lock (sqlite
   * reads its pages after taking a shared lock). Handles reading a copy older than the
   * file's current version move to the current one. A working copy that kept its lease kept
   * every other writer out; one that gave it back to another mount catches up (WorkingCopy.catchUp).
   * True when some handle moved to a newer version: pages the kernel cached of the file (a
   * program's shared mapping of it) are then out of date.
   */
  async revalidate (filePath: string): Promise<boolean> {
    const canonical = normalizePath(filePath)
    const working = this.workingCopies.get(canonical)
    if (working !== undefined) return await working.catchUp()
    if (this.startingCopies.has(canonical)) return false
    const readers = [...this.handlesOf(canonical)].filter((file) => file.reader !== null && file.working === null && !file.replacedElsewhere)
    if (readers.length === 0) return false
    const current = await this.client.statCurrent(canonical)
    const behind = readers.filter((file) => file.readerMeta.version !== current.version)
    for (const file of behind) await this.reopenReader(file)
    return behind.length > 0
  }

  /** The open handles of a path: getattr and every read ask, so they must not scan all handles. */
  private handlesOf (filePath: string): ReadonlySet<OpenFile> {
    return this.byPath.get(filePath) ?? NO_HANDLES
  }

  private get (id: number): OpenFile {
    const file = this.files.get(id)
    if (!file) throw new BadRequestError(`no open file ${id}`)
    return file
  }
}

/** Copies everything a handle's file holds to a new file. */
async function copyWhole (source: CopyReader, target: string): Promise<void> {
  const out = await fs.promises.open(target, 'w')
  try {
    const chunk = Buffer.alloc(1024 * 1024)
    for (let position = 0; ;) {
      const { bytesRead } = await source.read(chunk, 0, chunk.length, position)
      if (bytesRead === 0) break
      await out.write(chunk, 0, bytesRead, position)
      position += bytesRead
    }
  } finally {
    await out.close()
  }
}
