import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import type { FileMeta } from '../shared/protocol'
import type { CachedFile } from './localCache'
import type { HeldLock } from './lockClient'
import type { ByteRange } from '../shared/rangeFrames'
import { bytesOf, DirtyRanges } from './dirtyRanges'
import { removeLocalFile, uniqueSuffix } from './localFiles'
import { AbsentRanges } from './absentRanges'
import { ConflictError, LeaseError, localCacheFailure, NotFoundError, StaleHandleError } from '../shared/errors'

/**
 * Above this, a store sends the copy whole: the range write is held in memory on both ends,
 * and a copy changed over half its size costs less replaced than patched (a range write puts
 * its bytes on the server's disk twice: intent, then file).
 */
const MAX_RANGE_STORE_BYTES = 64 * 1024 * 1024

/**
 * A file larger than this with no current copy here starts a partial working copy: no bytes
 * are fetched at the start, and those read or needed later come by ranges, a block at a
 * time. A write into a large database or disk image fetches what it reads, not the file.
 */
export const PARTIAL_COPY_ABOVE = 8 * 1024 * 1024

/** A partial copy fetches what a read needs in aligned blocks of this size (one range read each, at most what a server answers at once). */
const PARTIAL_BLOCK_BYTES = 1024 * 1024

/**
 * Copies up to this size are made synchronously when a working copy starts, and writes into
 * a local copy and reads of the ranges it changed (for a range store) are made synchronously
 * up to this size: the cache is never on the mount, and these only touch the kernel's page
 * cache (the ranges were written by this process a moment ago), where a trip through the
 * thread pool costs two thread switches per call. A database's commit makes a few such
 * calls per transaction, each on the program's path.
 */
const QUICK_IO_BYTES = 64 * 1024

/**
 * A copy started empty (open with O_TRUNC, `>` onto a file, cp over one) is held in memory
 * while it is at most this big, and goes to a local file once it grows past it: a small
 * overwrite then makes no file in the work folder, no fsync of it, no read of it to send it,
 * and no copy of it in the cache (the bytes are kept as a small file's are after a create).
 */
export const MEMORY_COPY_BYTES = 1024 * 1024

/** All copies held in memory together (by the room they take): past this, a growing one goes to a local file. */
export const MEMORY_COPIES_BYTES = 64 * 1024 * 1024

/** Room taken by the copies held in memory in this process now. */
let memoryCopiesHeld = 0

/** Work folders made already (by this process): a working copy's start makes its folder once. */
const madeWorkDirs = new Set<string>()

/**
 * What a working copy starts from: a copy in the local cache, a small file's bytes held in
 * memory, or (`partial`) the version of a large file with no copy here, confirmed current
 * under the lease, none of its bytes fetched yet.
 */
export type StartingPoint = CachedFile | { meta: FileMeta, data: Buffer } | { meta: FileMeta, partial: true }

/** What a working copy needs of the client core. */
export interface WorkingCopyBackend {
  /** The file's lock, held from the copy's start until its last user closes. */
  lock: (path: string) => Promise<HeldLock>
  /**
   * The current version under the lease, to start from: its bytes, when this client holds a
   * small file's in memory (one it has just made: sqlite's journal before its header is
   * rewritten), else a local copy fetched under the lease (the server then holds back
   * unlocked appends).
   */
  startingPoint: (path: string, opts: { lease: HeldLock, partialAbove?: number }) => Promise<StartingPoint>
  /** Bytes of `meta`'s version from `position` (at most a block), under the lease; ConflictError once the file is another version. */
  readRange: (path: string, meta: FileMeta, position: number, length: number, opts?: { lease?: HeldLock }) => Promise<Buffer>
  /** Metadata as the file server has it now. */
  statFresh: (path: string) => Promise<FileMeta>
  /**
   * Where a rename took a file no longer at `path` (DfsClient.followMove); the open-file
   * table moves the copy there first (OpenFileTable.renamedElsewhere, WorkingCopy.renamedTo).
   */
  followMove: (path: string) => Promise<string | undefined>
  /**
   * Replaces the file on its server with a local file (or bytes) made from `baseVersion`,
   * under the lease the copy holds, or under a new one if that was lost meanwhile (then
   * `held` is the new one); if the file moved past `baseVersion` while no lease was held, the
   * local file is kept beside it as a conflict copy instead, and `stored` is null.
   */
  storeWorkingCopy: (path: string, content: string | Buffer, lease: HeldLock, baseVersion: number | null) => Promise<{ stored: FileMeta | null, held: HeldLock }>
  /** Sends only changed ranges, as one version above `fromVersion`; null if the server could not take them so (store whole then). */
  storeRanges: (path: string, ranges: readonly ByteRange[], size: number, lease: HeldLock, fromVersion: number) => Promise<FileMeta | null>
  /** Makes a local file the cache's copy of a stored version (moving it there). */
  keepAsCached: (path: string, meta: FileMeta, localFile: string) => Promise<void>
  /** Keeps a stored version's bytes as this client's copy of it (as after a create). */
  keepBytes: (path: string, meta: FileMeta, data: Buffer) => void
}

/**
 * A private copy of a file being changed in place, stored on flush (store-on-close): only
 * the ranges written since the last store, as a range write, when they are a small part of
 * it (a database's fsync after changing a few pages), else whole.
 * The open-file table keeps one per path, shared by every handle that writes other than at
 * the end, as a local inode is: handles of one mount see each other's writes, and do not
 * wait for each other's lock. Other clients see the file as it was before or after a
 * store, never half written.
 */
export class WorkingCopy {
  /** Changed since it was last stored. */
  private dirty: boolean
  /** Writes and truncations so far: one that lands while the copy is being stored keeps it dirty. */
  private changes = 0
  /** What the server answered for the last store, if the copy has not changed since. */
  private stored: FileMeta | null = null
  /** What changed since the last store that reached the server. */
  private readonly dirtyRanges = new DirtyRanges()
  /** Handles writing through this copy. */
  users = 0
  /**
   * The lease was given back: recalled (another client asked for the key) while the copy
   * held nothing unstored. The next change takes it again, and starts from the version then
   * current if the file moved on meanwhile (rebase).
   */
  private yielded = false
  /** Recalled while the copy held unstored changes: the lease goes back once they are stored. */
  private recalled = false
  /** Writes and truncations begun and not done: the lease is not given back under them. */
  private changing = 0
  /** Taking the lease again, while under way (one at a time). */
  private retaking: Promise<void> | null = null
  /** Closed (its last user let go): never takes a lease again. */
  private closed = false

  /** The copy's local file and its descriptor; null while the copy is held in memory. */
  private local: { file: string, handle: fsp.FileHandle } | null
  /** The copy's bytes while it is held in memory (started empty, or from bytes this client held, at most MEMORY_COPY_BYTES): the first `size` of them; zeros past that. */
  private memory: Buffer | null
  /** The copy's move from memory to a local file, while under way: writes and truncations wait for it. */
  private spilling: Promise<void> | null = null
  /**
   * A partial copy (see PARTIAL_COPY_ABOVE): the bytes of its base version not here yet, and
   * where they come from (the file on its server at `base`, which moves with each store of
   * this copy: a range store changes only bytes that are here). Null for a whole copy.
   */
  private partial: { absent: AbsentRanges, base: FileMeta } | null = null

  /** The file's name; another client's rename moves it (renamedTo). */
  private currentPath: string

  private constructor (
    private readonly backend: WorkingCopyBackend,
    path: string,
    private readonly workDir: string,
    kept: { file: string, handle: fsp.FileHandle } | Buffer,
    private held: HeldLock,
    public size: number,
    dirty: boolean,
    /** The version this copy was made from (null: made empty, it replaces whatever is there). */
    private baseVersion: number | null
  ) {
    this.currentPath = path
    this.dirty = dirty
    this.local = Buffer.isBuffer(kept) ? null : kept
    this.memory = Buffer.isBuffer(kept) ? kept : null
    this.watchRecall()
  }

  /**
   * The lock, then the version current under the lock, copied into `workDir`; `empty` when
   * the old bytes are not needed (open with O_TRUNC, cp over a file).
   */
  static async start (backend: WorkingCopyBackend, filePath: string, workDir: string, empty: boolean): Promise<WorkingCopy> {
    const held = await backend.lock(filePath)
    if (empty) return new WorkingCopy(backend, filePath, workDir, Buffer.alloc(0), held, 0, true, null)
    let workingFile: string | null = null
    try {
      const start = await backend.startingPoint(filePath, { lease: held, partialAbove: PARTIAL_COPY_ABOVE })
      if ('partial' in start) {
        // A sparse local file of the version's size: its bytes come as they are read (fill).
        workingFile = await newWorkingFile(workDir)
        const handle = await fsp.open(workingFile, 'w+')
        await handle.truncate(start.meta.size)
        const copy = new WorkingCopy(backend, filePath, workDir, { file: workingFile, handle }, held, start.meta.size, false, start.meta.version)
        copy.partial = { absent: new AbsentRanges(start.meta.size), base: start.meta }
        return copy
      }
      // Bytes this client holds in memory (sqlite's journal, its header rewritten after the
      // fsync that made it), if there is room, stay there as the copy: no file made, written,
      // read back for the store and renamed into the cache, whose copy the journal's unlink
      // then removes again. The copy gets bytes of its own: the held ones are the version's.
      if ('data' in start && memoryMayHold(start.data.length, start.data.length, 0)) {
        const memory = Buffer.from(start.data)
        memoryCopiesHeld += memory.length
        return new WorkingCopy(backend, filePath, workDir, memory, held, start.meta.size, false, start.meta.version)
      }
      workingFile = await newWorkingFile(workDir)
      // A small copy on the event loop: a trip to the thread pool costs more than the copy.
      // The cache is never on the mount. Bytes held in memory go straight into the working
      // copy: a copy in the cache made of them first would be two more files made (copy and
      // record), replaced at this copy's close anyway (keepAsCached).
      if ('data' in start) fs.writeFileSync(workingFile, start.data)
      else if (start.meta.size <= QUICK_IO_BYTES) fs.copyFileSync(start.file, workingFile)
      else await fsp.copyFile(start.file, workingFile)
      const handle = await fsp.open(workingFile, 'r+')
      return new WorkingCopy(backend, filePath, workDir, { file: workingFile, handle }, held, start.meta.size, false, start.meta.version)
    } catch (err) {
      await held.release()
      if (workingFile) await removeLocalFile(workingFile)
      throw err
    }
  }

  async write (data: Buffer, position: number): Promise<void> {
    await this.underLease(async () => await this.writeLeased(data, position))
  }

  private async writeLeased (data: Buffer, position: number): Promise<void> {
    const end = position + data.length
    // Before the copy changes: a spill that fails leaves it as it was. Checked again after
    // each wait, right before the bytes change (another change may start a move meanwhile).
    while (this.mustWaitFor(end)) await this.spillOrWait()
    this.size = Math.max(this.size, end)
    this.changed()
    this.dirtyRanges.add(position, end)
    // Before the bytes land: a fill that answers meanwhile must not put the old ones over them.
    this.partial?.absent.arrived(position, end)
    if (this.memory !== null) {
      if (end > this.memory.length) this.grow(end)
      data.copy(this.memory, position)
      return
    }
    await writeAt(this.localCopy.handle, data, position)
  }

  async append (data: Buffer): Promise<void> {
    await this.write(data, this.size)
  }

  async truncate (size: number): Promise<void> {
    await this.underLease(async () => await this.truncateLeased(size))
  }

  private async truncateLeased (size: number): Promise<void> {
    while (this.mustWaitFor(size)) await this.spillOrWait()
    const before = this.size
    this.size = size
    this.changed()
    this.dirtyRanges.truncated(size)
    this.partial?.absent.truncated(size)
    if (this.memory !== null) {
      // What lies past the end is kept zeros (a later write past the end leaves a hole of zeros there, as in a file).
      if (size < before) this.memory.fill(0, size, Math.min(before, this.memory.length))
      else if (size > this.memory.length) this.grow(size)
      return
    }
    await this.localCopy.handle.truncate(size)
  }

  /** Reads from the copy as it is now, as a file's descriptor would. */
  async read (buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    // Absent bytes come from the base version under the lease: given back, the file may have moved on.
    if (this.yielded && this.partial !== null && this.partial.absent.within(position, position + length).length > 0) await this.retake()
    if (this.memory === null) {
      await this.fill(position, Math.min(this.size, position + length))
      return await this.localCopy.handle.read(buffer, offset, length, position)
    }
    const end = Math.min(this.size, position + length)
    return { bytesRead: position >= end ? 0 : this.memory.copy(buffer, offset, position, end) }
  }

  /** Whether the copy has changes its server does not have yet. */
  get holdsUnstoredChanges (): boolean {
    return this.dirty
  }

  /** Bytes the next store would send: the changed ranges where it sends only those, else the whole copy. */
  get unstoredBytes (): number {
    if (!this.dirty) return 0
    const changed = bytesOf(this.dirtyRanges.within(this.size))
    return this.rangesFrom(changed) !== null ? changed : this.size
  }

  /** The version a store of `changed` bytes sends them as ranges to, or null: it sends the whole copy. */
  private rangesFrom (changed: number): number | null {
    return changed <= MAX_RANGE_STORE_BYTES && changed <= this.size / 2 ? this.baseVersion : null
  }

  /** Stores the copy if it changed; changes made meanwhile keep it dirty for the next store. */
  async store (backend: WorkingCopyBackend): Promise<void> {
    if (!this.dirty) return
    const changes = this.changes
    const size = this.size
    const ranges = this.dirtyRanges.take(size)
    let stored: FileMeta | null = null
    try {
      const fromVersion = this.rangesFrom(bytesOf(ranges))
      if (fromVersion !== null) stored = await backend.storeRanges(this.path, await this.readRanges(ranges), size, this.held, fromVersion)
      if (stored === null) {
        await this.fill(0, size)
        if (this.local !== null) await this.local.handle.sync()
        const whole = await backend.storeWorkingCopy(this.path, this.local?.file ?? this.bytes(), this.held, this.baseVersion)
        this.held = whole.held
        stored = whole.stored
      }
    } catch (err) {
      this.dirtyRanges.give(ranges)
      throw err
    }
    // Later stores build on what this one made; a copy set aside as a conflict no longer
    // describes the file, so it is not made the cached copy at close.
    if (stored !== null) this.baseVersion = stored.version
    if (stored !== null && this.partial !== null) this.partial.base = stored
    if (this.changes === changes) {
      this.dirty = false
      this.stored = stored
    }
    // A lease the lock server cannot recall (not delegated: no channel when it was granted)
    // goes back after each store, or another client asking for the key waits until the close.
    if (!this.held.recallable()) this.recalled = true
    await this.yieldIfRecalled()
  }

  /** Whether the copy gave its lease back (it holds nothing unstored; the file may have moved on since). */
  get leaseGivenBack (): boolean {
    return this.yielded
  }

  /**
   * Another client renamed the file while this copy had given its lease back and held
   * nothing unstored (no rename can take the file while the copy holds the lease): the next
   * change takes the lease again under the new name, and checks the version there.
   */
  renamedTo (path: string): void {
    this.currentPath = path
  }

  get path (): string {
    return this.currentPath
  }

  /** The lease the copy holds on its file; undefined while given back (yielded). */
  get lease (): HeldLock | undefined {
    return this.yielded ? undefined : this.held
  }

  /**
   * A program on this mount was just granted an fcntl lock on the file (sqlite reads its
   * pages next): if the copy gave its lease back and the file moved on meanwhile (another
   * mount stored), the copy becomes the current version. It held nothing unstored. True
   * when it did.
   */
  async catchUp (): Promise<boolean> {
    if (!this.yielded) return false
    const now = await this.backend.statFresh(this.path)
    if (now.version === this.baseVersion) return false
    await this.retake()
    return true
  }

  /** Asks to be told when the lock server recalls the lease, to give it back as soon as the copy holds nothing unstored. */
  private watchRecall (): void {
    this.held.whenRecalled(() => {
      this.recalled = true
      void this.yieldIfRecalled()
    })
  }

  /** Gives the lease back if it was recalled and nothing here needs it (no unstored change, none under way). */
  private async yieldIfRecalled (): Promise<void> {
    if (!this.recalled || this.yielded || this.dirty || this.changing > 0 || this.retaking !== null) return
    this.recalled = false
    this.yielded = true
    await this.held.release()
  }

  /** Runs a change of the copy under its lease, taken again first if it was given back. */
  private async underLease (change: () => Promise<void>): Promise<void> {
    this.changing++
    try {
      while (this.yielded && !this.closed) await this.retake()
      await change()
    } finally {
      this.changing--
    }
  }

  /**
   * Takes the lease again after it was given back, and checks the version under it: a file
   * that moved on meanwhile (another client stored) makes the copy start over from the
   * version now current, as a new working copy would (it held nothing unstored).
   */
  private async retake (): Promise<void> {
    this.retaking ??= (async () => {
      if (this.closed) return
      const held = await this.backend.lock(this.path)
      try {
        const now = await this.backend.statFresh(this.path)
        if (now.version !== this.baseVersion) await this.rebase(held)
      } catch (err) {
        await held.release()
        if (!(err instanceof NotFoundError)) throw err
        // Renamed by another client after this copy gave the key up, with no word of it here
        // (the word moves the copy at once): the directory knows where the file went, and the
        // table moves the copy there, whose lease the next turn of underLease takes.
        const gone = this.path
        await this.backend.followMove(gone)
        if (this.path !== gone) return
        // Removed: what is written now has no file to go to, and the program hears so, as NFS answers ESTALE.
        throw new StaleHandleError(`${gone} was removed by another client while it was open here`, { path: gone })
      }
      // Closed meanwhile: nothing will use or give back this lease but here.
      if (this.closed) return await held.release()
      this.held = held
      this.yielded = false
      this.watchRecall()
    })().finally(() => { this.retaking = null })
    await this.retaking
  }

  /**
   * Makes the copy the file's version current under `held`, in its own local file (a copy
   * held in memory moves there first): the bytes a reader of the copy sees change in place,
   * as a local file's do when another process writes it.
   */
  private async rebase (held: HeldLock): Promise<void> {
    const start = await this.backend.startingPoint(this.path, { lease: held, partialAbove: PARTIAL_COPY_ABOVE })
    if (this.local === null) await this.spillOrWait()
    const { file, handle } = this.localCopy
    if ('partial' in start) {
      await handle.truncate(0)
      await handle.truncate(start.meta.size)
      this.partial = { absent: new AbsentRanges(start.meta.size), base: start.meta }
    } else {
      // copyFile writes into the same file (O_TRUNC): the descriptor held here sees the new bytes.
      if ('data' in start) await fsp.writeFile(file, start.data)
      else await fsp.copyFile(start.file, file)
      this.partial = null
    }
    this.size = start.meta.size
    this.baseVersion = start.meta.version
    this.stored = start.meta
  }

  /** Copies what the copy holds now to another local file. */
  async copyTo (target: string): Promise<void> {
    if (this.local === null) {
      await fsp.writeFile(target, this.bytes())
      return
    }
    await this.fill(0, this.size)
    await this.local.handle.sync()
    await fsp.copyFile(this.local.file, target)
  }

  /**
   * Gives the lock back; a copy that is exactly what was stored becomes the cached copy
   * (unless `keep` is false: the file is gone). The lock goes first: the copy is of a stored
   * version, which needs no lock to be cached, and the program's next step on the file (an
   * unlink of sqlite's journal right after its close) waits for the lock, not for the cache.
   */
  async close (backend: WorkingCopyBackend, opts: { keep?: boolean } = {}): Promise<void> {
    this.closed = true
    // A partial copy with bytes still absent is no copy of any version: not kept.
    const keep = opts.keep !== false && !this.dirty && this.partial?.absent.none !== false ? this.stored : null
    if (this.local === null) {
      await this.held.release()
      if (this.memory === null) return // closed already
      if (keep !== null) backend.keepBytes(this.path, keep, this.bytes())
      this.letGoOfMemory()
      return
    }
    const { file, handle } = this.local
    try {
      await handle.close()
      await this.held.release()
      if (keep !== null) await backend.keepAsCached(this.path, keep, file).catch(() => {})
    } finally {
      await this.held.release() // once only: a no-op if given back above
      await removeLocalFile(file)
    }
  }

  /** The bytes of the ranges as the copy holds them now (zeros where a truncation since cut them off: the next store sends that). */
  private async readRanges (ranges: ReadonlyArray<[number, number]>): Promise<ByteRange[]> {
    // Bytes this copy wrote itself are never absent from it (see fill).
    if (this.local !== null && bytesOf(ranges) <= QUICK_IO_BYTES) {
      const { fd } = this.local.handle
      return ranges.map(([start, end]) => {
        const data = Buffer.alloc(end - start)
        for (let done = 0; done < data.length;) {
          const got = fs.readSync(fd, data, done, data.length - done, start + done)
          if (got === 0) break
          done += got
        }
        return { offset: start, data }
      })
    }
    const read: ByteRange[] = []
    for (const [start, end] of ranges) {
      const data = Buffer.alloc(end - start)
      for (let done = 0; done < data.length;) {
        const { bytesRead } = await this.read(data, done, data.length - done, start + done)
        if (bytesRead === 0) break
        done += bytesRead
      }
      read.push({ offset: start, data })
    }
    return read
  }

  /**
   * Makes bytes [start, end) of a partial copy here: the blocks around them that are absent
   * are fetched and written into the local file, except where writes landed meanwhile.
   */
  private async fill (start: number, end: number): Promise<void> {
    const partial = this.partial
    // Bytes that are all here (written, or fetched before) need nothing, whatever their block lacks.
    if (partial === null || partial.absent.within(start, end).length === 0) return
    const from = Math.floor(start / PARTIAL_BLOCK_BYTES) * PARTIAL_BLOCK_BYTES
    const to = Math.ceil(end / PARTIAL_BLOCK_BYTES) * PARTIAL_BLOCK_BYTES
    for (const [absentFrom, absentTo] of partial.absent.within(from, to)) {
      for (let at = absentFrom; at < absentTo; at += PARTIAL_BLOCK_BYTES) {
        const length = Math.min(PARTIAL_BLOCK_BYTES, absentTo - at)
        const bytes = await this.fetchBase(partial, at, length)
        if (bytes.length < length) throw new ConflictError(`${this.path} is shorter on its server than the version this mount is writing in place`, { path: this.path })
        // Synchronously, after the fetch: what is still absent now takes the fetched bytes,
        // and a write that came meanwhile (absent no more) keeps its own.
        try {
          for (const [a, b] of partial.absent.within(at, at + length)) fs.writeSync(this.localCopy.handle.fd, bytes, a - at, b - a, a)
        } catch (err) {
          // The work folder's disk is full: the cache's failure, named, not the file's.
          throw localCacheFailure(err, this.workDir, this.path) ?? err
        }
        partial.absent.arrived(at, at + length)
      }
    }
  }

  /**
   * Bytes of the base version from the file's server, under the copy's lease. A file whose
   * version is the same but whose ETag moved (its mtime set meanwhile) is asked again by its
   * current description; a file at another version was changed under this copy: ConflictError.
   */
  private async fetchBase (partial: NonNullable<WorkingCopy['partial']>, position: number, length: number): Promise<Buffer> {
    try {
      return await this.backend.readRange(this.path, partial.base, position, length, { lease: this.held })
    } catch (err) {
      // A lease that ran out meanwhile (the mount was stopped): the version check alone says
      // whether these are still the bytes; the store that follows takes a new lease
      // (storeWorkingCopy), as it would for a whole copy.
      if (err instanceof LeaseError) return await this.backend.readRange(this.path, partial.base, position, length)
      if (!(err instanceof ConflictError)) throw err
      const now = await this.backend.statFresh(this.path)
      if (now.version !== partial.base.version) throw new ConflictError(`${this.path} changed on its server (version ${partial.base.version} to ${now.version}) while this mount wrote it in place`, { path: this.path })
      partial.base = now
      return await this.backend.readRange(this.path, now, position, length, { lease: this.held })
    }
  }

  private changed (): void {
    this.dirty = true
    this.changes++
  }

  /** The bytes of a copy held in memory, as the file has them now (a view, not a copy). */
  private bytes (): Buffer {
    return (this.memory as Buffer).subarray(0, this.size)
  }

  private get localCopy (): { file: string, handle: fsp.FileHandle } {
    return this.local as { file: string, handle: fsp.FileHandle }
  }

  /** Whether the copy, held in memory, may hold `size` bytes there (memoryMayHold). */
  private roomFor (size: number): boolean {
    const memory = this.memory as Buffer
    return size <= memory.length ? size <= MEMORY_COPY_BYTES : memoryMayHold(size, roomAfter(memory, size), memory.length)
  }

  /** Makes room in memory for at least `size` bytes (roomFor said there is). */
  private grow (size: number): void {
    const memory = this.memory as Buffer
    const bigger = Buffer.alloc(roomAfter(memory, size))
    memory.copy(bigger)
    memoryCopiesHeld += bigger.length - memory.length
    this.memory = bigger
  }

  private letGoOfMemory (): void {
    memoryCopiesHeld -= (this.memory as Buffer).length
    this.memory = null
  }

  /**
   * Whether a change that makes the copy `size` bytes long must wait before it touches the
   * bytes: a move to a local file is under way, or the copy, held in memory, may not grow to
   * `size` there. Mostly not, and then the change makes no turn of the event loop.
   */
  private mustWaitFor (size: number): boolean {
    return this.spilling !== null || (this.memory !== null && !this.roomFor(size))
  }

  /**
   * Waits for the move to a local file under way, or starts one. One at a time: a change
   * that landed while the bytes are written to the file would be lost.
   */
  private async spillOrWait (): Promise<void> {
    this.spilling ??= this.spill().finally(() => { this.spilling = null })
    await this.spilling
  }

  /** A copy held in memory is about to grow past what it may hold there (roomFor): from now on it is a local file. */
  private async spill (): Promise<void> {
    const file = await newWorkingFile(this.workDir)
    try {
      await fsp.writeFile(file, this.bytes())
      this.local = { file, handle: await fsp.open(file, 'r+') }
      this.letGoOfMemory()
    } catch (err) {
      await removeLocalFile(file)
      throw err
    }
  }
}

/** A new name in the work folder (made once per process). */
async function newWorkingFile (workDir: string): Promise<string> {
  if (!madeWorkDirs.has(workDir)) {
    await fsp.mkdir(workDir, { recursive: true })
    madeWorkDirs.add(workDir)
  }
  return path.join(workDir, uniqueSuffix())
}

/**
 * Whether a copy may hold `size` bytes in memory, taking `room` there in place of the
 * `taken` it takes now: at most MEMORY_COPY_BYTES, within MEMORY_COPIES_BYTES for all.
 */
function memoryMayHold (size: number, room: number, taken: number): boolean {
  return size <= MEMORY_COPY_BYTES && memoryCopiesHeld - taken + room <= MEMORY_COPIES_BYTES
}

/** The room a copy in memory takes to hold at least `size` bytes: doubling, so repeated small writes copy little. */
function roomAfter (memory: Buffer, size: number): number {
  return Math.max(size, Math.min(MEMORY_COPY_BYTES, memory.length * 2))
}

async function writeAt (handle: fsp.FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0
  if (data.length <= QUICK_IO_BYTES) {
    while (done < data.length) done += fs.writeSync(handle.fd, data, done, data.length - done, position + done)
    return
  }
  while (done < data.length) done += (await handle.write(data, done, data.length - done, position + done)).bytesWritten
}
