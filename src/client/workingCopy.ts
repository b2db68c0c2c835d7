import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import type { FileMeta } from '../shared/protocol'
import type { CachedFile } from './localCache'
import type { HeldLock } from './lockClient'
import type { ByteRange } from '../shared/rangeFrames'
import { bytesOf, DirtyRanges } from './dirtyRanges'
import { removeLocalFile, uniqueSuffix } from './localFiles'

/**
 * Above this, a store sends the copy whole: the range write is held in memory on both ends,
 * and a copy changed over half its size costs less replaced than patched (a range write puts
 * its bytes on the server's disk twice: intent, then file).
 */
const MAX_RANGE_STORE_BYTES = 64 * 1024 * 1024

/** Copies up to this size are made synchronously when a working copy starts. */
const QUICK_COPY_BYTES = 64 * 1024

/** Work folders made already (by this process): a working copy's start makes its folder once. */
const madeWorkDirs = new Set<string>()

/** What a working copy starts from: a copy in the local cache, or a small file's bytes held in memory. */
export type StartingPoint = CachedFile | { meta: FileMeta, data: Buffer }

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
  startingPoint: (path: string, opts: { lease: HeldLock }) => Promise<StartingPoint>
  /**
   * Replaces the file on its server with a local file made from `baseVersion`, under the
   * lease the copy holds, or under a new one if that was lost meanwhile (then `held` is the
   * new one); if the file moved past `baseVersion` while no lease was held, the local file
   * is kept beside it as a conflict copy instead, and `stored` is null.
   */
  storeWorkingCopy: (path: string, localFile: string, lease: HeldLock, baseVersion: number | null) => Promise<{ stored: FileMeta | null, held: HeldLock }>
  /** Sends only changed ranges, as one version above `fromVersion`; null if the server could not take them so (store whole then). */
  storeRanges: (path: string, ranges: readonly ByteRange[], size: number, lease: HeldLock, fromVersion: number) => Promise<FileMeta | null>
  /** Makes a local file the cache's copy of a stored version (moving it there). */
  keepAsCached: (path: string, meta: FileMeta, localFile: string) => Promise<void>
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

  private constructor (
    readonly path: string,
    private readonly file: string,
    readonly handle: fsp.FileHandle,
    private held: HeldLock,
    public size: number,
    dirty: boolean,
    /** The version this copy was made from (null: made empty, it replaces whatever is there). */
    private baseVersion: number | null
  ) {
    this.dirty = dirty
  }

  /**
   * The lock, then the version current under the lock, copied into `workDir`; `empty` when
   * the old bytes are not needed (open with O_TRUNC, cp over a file).
   */
  static async start (backend: WorkingCopyBackend, filePath: string, workDir: string, empty: boolean): Promise<WorkingCopy> {
    const held = await backend.lock(filePath)
    let workingFile: string | null = null
    try {
      if (!madeWorkDirs.has(workDir)) {
        await fsp.mkdir(workDir, { recursive: true })
        madeWorkDirs.add(workDir)
      }
      workingFile = path.join(workDir, uniqueSuffix())
      let size = 0
      let baseVersion: number | null = null
      if (empty) {
        await fsp.writeFile(workingFile, '')
      } else {
        const start = await backend.startingPoint(filePath, { lease: held })
        // A small copy (sqlite's journal, rewritten after its fsync) on the event loop: a trip
        // to the thread pool costs more than the copy. The cache is never on the mount.
        // Bytes held in memory go straight into the working copy: a copy in the cache made of
        // them first would be two more files made (copy and record), replaced at this copy's
        // close anyway (keepAsCached).
        if ('data' in start) fs.writeFileSync(workingFile, start.data)
        else if (start.meta.size <= QUICK_COPY_BYTES) fs.copyFileSync(start.file, workingFile)
        else await fsp.copyFile(start.file, workingFile)
        size = start.meta.size
        baseVersion = start.meta.version
      }
      const handle = await fsp.open(workingFile, 'r+')
      return new WorkingCopy(filePath, workingFile, handle, held, size, empty, baseVersion)
    } catch (err) {
      await held.release()
      if (workingFile) await removeLocalFile(workingFile)
      throw err
    }
  }

  async write (data: Buffer, position: number): Promise<void> {
    this.size = Math.max(this.size, position + data.length)
    this.changed()
    this.dirtyRanges.add(position, position + data.length)
    await writeAt(this.handle, data, position)
  }

  async append (data: Buffer): Promise<void> {
    await this.write(data, this.size)
  }

  async truncate (size: number): Promise<void> {
    this.size = size
    this.changed()
    this.dirtyRanges.truncated(size)
    await this.handle.truncate(size)
  }

  /** Stores the copy if it changed; changes made meanwhile keep it dirty for the next store. */
  async store (backend: WorkingCopyBackend): Promise<void> {
    if (!this.dirty) return
    const changes = this.changes
    const size = this.size
    const ranges = this.dirtyRanges.take(size)
    let stored: FileMeta | null = null
    try {
      const changed = bytesOf(ranges)
      if (this.baseVersion !== null && changed <= MAX_RANGE_STORE_BYTES && changed <= size / 2) {
        stored = await backend.storeRanges(this.path, await this.read(ranges), size, this.held, this.baseVersion)
      }
      if (stored === null) {
        await this.handle.sync()
        const whole = await backend.storeWorkingCopy(this.path, this.file, this.held, this.baseVersion)
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
    if (this.changes === changes) {
      this.dirty = false
      this.stored = stored
    }
  }

  /** The lease the copy holds on its file. */
  get lease (): HeldLock {
    return this.held
  }

  /** Copies what the copy holds now to another local file. */
  async copyTo (target: string): Promise<void> {
    await this.handle.sync()
    await fsp.copyFile(this.file, target)
  }

  /**
   * Gives the lock back; a copy that is exactly what was stored becomes the cached copy
   * (unless `keep` is false: the file is gone). The lock goes first: the copy is of a stored
   * version, which needs no lock to be cached, and the program's next step on the file (an
   * unlink of sqlite's journal right after its close) waits for the lock, not for the cache.
   */
  async close (backend: WorkingCopyBackend, opts: { keep?: boolean } = {}): Promise<void> {
    try {
      await this.handle.close()
      await this.held.release()
      if (opts.keep !== false && !this.dirty && this.stored) await backend.keepAsCached(this.path, this.stored, this.file).catch(() => {})
    } finally {
      await this.held.release() // once only: a no-op if given back above
      await removeLocalFile(this.file)
    }
  }

  /** The bytes of the ranges as the copy holds them now (zeros where a truncation since cut them off: the next store sends that). */
  private async read (ranges: ReadonlyArray<[number, number]>): Promise<ByteRange[]> {
    const read: ByteRange[] = []
    for (const [start, end] of ranges) {
      const data = Buffer.alloc(end - start)
      for (let done = 0; done < data.length;) {
        const { bytesRead } = await this.handle.read(data, done, data.length - done, start + done)
        if (bytesRead === 0) break
        done += bytesRead
      }
      read.push({ offset: start, data })
    }
    return read
  }

  private changed (): void {
    this.dirty = true
    this.changes++
  }
}

async function writeAt (handle: fsp.FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0
  while (done < data.length) done += (await handle.write(data, done, data.length - done, position + done)).bytesWritten
}
