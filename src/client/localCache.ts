import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import nodePath from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { LRUCache } from 'lru-cache'
import { upToEntries } from './lruOptions'
import { DEFAULT_CACHE_BYTES } from '../shared/defaults'
import { KeyedMutex } from '../shared/keyedMutex'
import { monotonicMs } from '../shared/clock'
import type { FileMeta } from '../shared/protocol'
import { etagOf } from '../shared/protocol'
import { countCacheEviction, trackCacheBytes } from './metrics'
import { CopyAppends } from './copyAppends'
import { DescriptorReader } from './copyReader'
import { removeLocalFile, uniqueSuffix } from './localFiles'

/**
 * A copy brought forward by this client's own appends has its record file rewritten this
 * long after the last of them, not after each: until then the index in memory vouches for
 * it, and the record on disk, whose size no longer matches the copy, vouches for nothing
 * (readRecord refuses it), so a crash in between costs a refetch, never wrong bytes.
 */
const RECORD_AFTER_APPENDS_MS = 1_000

/** Copies up to this size that the client holds in memory are written synchronously (see storeBehind). */
const SMALL_COPY_BYTES = 64 * 1024

export interface CachedFile {
  /** The local copy: read it, never write it (it is replaced whole on the next fetch). */
  file: string
  meta: FileMeta
}

interface CacheRecord {
  path: string
  meta: FileMeta
}

// Defined in defaults.ts with every other default; re-exported for code that imports it from here.
export { DEFAULT_CACHE_BYTES }

/**
 * Whole-file copies of remote files on local disk, each with the version, size and mtime
 * it was fetched at. Copies and their records are replaced by rename, so a reader with the
 * old copy open keeps reading a consistent old version, and a crash never leaves a record
 * that vouches for the wrong bytes. The least recently used copies go when the cache
 * outgrows its byte budget. Several processes may share one cache folder.
 *
 * A copy's files are removed behind (the index forgets it at once): on some disks an unlink
 * is a slow step (ext4 with online discard: about half a millisecond here), and nothing
 * waits for it but the next copy of the same path and a read of its record from disk.
 * Records are read and written synchronously, and so are small copies the client holds in
 * memory (an open's revalidation waits for them, and each is a few microseconds in the
 * kernel's caches, where a trip through libuv's thread pool costs thread switches the open
 * waits for); large copies stream through the thread pool. The cache folder is never on the
 * mount itself (dfs-mount refuses one there), so no such step can wait on this process's
 * own file system.
 */
export class LocalCache {
  private readonly objects: string
  private readonly tmp: string
  private readonly index: LRUCache<string, CacheRecord>
  private ready: Promise<void> | null = null
  /** Per path: a copy's replacement, removal and in-place append, one at a time (see applyAppendNow). */
  private readonly changing = new KeyedMutex()
  /** Descriptors of copies this client appends to (see applyAppend). */
  private readonly appends = new CopyAppends()
  /** Per path, the record file's rewrite after appends (RECORD_AFTER_APPENDS_MS). */
  private readonly recordTimers = new Map<string, NodeJS.Timeout>()
  /** Per path, the removal of its copy's files under way (removeBehind): not to be read back from disk, nor to take a newer copy with it. */
  private readonly removing = new Map<string, Promise<void>>()
  /** Per path, steps on its copy that run after their caller was answered (runBehind): every other use of the copy waits for them. */
  private readonly behind = new Map<string, Promise<void>>()
  /** Per path, the copy arriving now (storeArriving) and the version it is: a second open reads it too (joinArrival). */
  private readonly arrivals = new Map<string, { meta: FileMeta, partial: string, download: Download }>()

  constructor (readonly dir: string, maxBytes = DEFAULT_CACHE_BYTES, private readonly log?: (line: string) => void) {
    this.objects = nodePath.join(dir, 'objects')
    this.tmp = nodePath.join(dir, 'tmp')
    this.index = new LRUCache<string, CacheRecord>({
      maxSize: maxBytes,
      sizeCalculation: (record) => Math.max(1, record.meta.size),
      dispose: (_record, path, reason) => {
        if (reason !== 'evict') return
        countCacheEviction()
        this.removeBehind(path)
      }
    })
    trackCacheBytes(this)
  }

  /** Bytes of the copies this cache holds (as its index counts them). */
  get bytes (): number {
    return this.index.calculatedSize
  }

  /** The record of a cached copy, from memory or from the record file another process left. */
  async get (path: string): Promise<CachedFile | null> {
    await this.behind.get(path)
    return await this.getNow(path)
  }

  private async getNow (path: string): Promise<CachedFile | null> {
    await this.init()
    let record = this.index.get(path)
    // A copy whose file went (its folder was cleared under the running mount) is no copy:
    // found, it would make the open fail with ENOENT, as if the file itself were gone. One
    // stat, beside the FUSE round trip of the open that asks.
    if (record !== undefined && !fs.existsSync(this.objectFile(path))) {
      this.copyGone(path)
      return null
    }
    if (!record) {
      await this.removing.get(path)
      record = this.readRecord(path) ?? undefined
      if (!record || !this.indexed(path, record)) return null
    }
    return { file: this.objectFile(path), meta: record.meta }
  }

  /** Stores a fetched body as the copy of `path` at `meta`; a body that comes short is refused. */
  async store (path: string, meta: FileMeta, body: Readable): Promise<CachedFile> {
    await this.behind.get(path)
    return await this.storeNow(path, meta, body)
  }

  private async storeNow (path: string, meta: FileMeta, body: Readable): Promise<CachedFile> {
    const arriving = await this.storeArrivingNow(path, meta, body)
    await arriving.reader.close()
    await arriving.download.waitFor(Infinity)
    return { file: this.objectFile(path), meta }
  }

  /**
   * Starts storing a fetched body and answers at once with a handle that reads the copy as
   * it arrives: a reader waits (download.waitFor) only for the bytes it needs, so the first
   * bytes of a large file are there long before the last. The copy becomes the cached one
   * when complete; one that fails or comes short is dropped, with `failed` telling why.
   */
  async storeArriving (path: string, meta: FileMeta, body: Readable, failed: (err: unknown) => Error = asError): Promise<{ reader: DescriptorReader, download: Download }> {
    await this.behind.get(path)
    return await this.storeArrivingNow(path, meta, body, failed)
  }

  /**
   * The version of the path whose copy is arriving now (storeArriving), if one is: an open
   * that starts meanwhile offers it to the server, and on a 304 reads that copy too
   * (joinArrival) instead of fetching the file a second time.
   */
  arrivingVersion (path: string): FileMeta | undefined {
    return this.arrivals.get(path)?.meta
  }

  /** A reader of the copy of `meta`'s version still arriving, with its download; null if there is none any more (finished or failed: ask again). */
  joinArrival (path: string, meta: FileMeta): { reader: DescriptorReader, download: Download } | null {
    const arrival = this.arrivals.get(path)
    if (arrival === undefined || arrival.meta.version !== meta.version) return null
    let reader: DescriptorReader
    try {
      reader = DescriptorReader.open(arrival.partial)
    } catch {
      return null
    }
    arrival.download.join()
    return { reader, download: arrival.download }
  }

  private async storeArrivingNow (path: string, meta: FileMeta, body: Readable, failed: (err: unknown) => Error = asError): Promise<{ reader: DescriptorReader, download: Download }> {
    await this.foldersToWrite()
    const partial = this.partialFile(path)
    const writer = await fsp.open(partial, 'w')
    let reader: DescriptorReader
    try {
      reader = DescriptorReader.open(partial)
    } catch (err) {
      await writer.close()
      await removeLocalFile(partial)
      body.destroy()
      throw err
    }
    const download = new Download(() => body.destroy(new Error(`the download of ${path} was called off`)))
    const arrival = { meta, partial, download }
    this.arrivals.set(path, arrival)
    const leave = (): void => { if (this.arrivals.get(path) === arrival) this.arrivals.delete(path) }
    void (async () => {
      try {
        try {
          await pipeline(body, progressSink(writer, download))
        } finally {
          await writer.close()
        }
        if (download.received !== meta.size) throw new Error(`fetched ${download.received} bytes of ${path}, expected ${meta.size}`)
        // Before the partial copy moves: an open from now on finds the copy in place, or asks again.
        leave()
        await this.changing.run(path, async () => await this.placeCopy(path, partial, meta))
        download.finish()
      } catch (err) {
        leave()
        await removeLocalFile(partial)
        download.fail(failed(err))
      }
    })()
    return { reader, download }
  }

  /**
   * Brings a copy forward by the bytes this client itself appended, if the copy is exactly
   * the version the append was made on; otherwise drops it so the next read fetches. Done
   * behind: the caller (a close waiting for its append) does not wait for these disk
   * steps, and every other use of the path's copy here waits for them, in order. A step
   * that fails drops the copy.
   */
  applyAppend (path: string, appended: Buffer, after: FileMeta): void {
    this.runBehind(path, async () => await this.applyAppendNow(path, appended, after))
  }

  /**
   * Bytes this client already holds in memory, at `meta` (a file it has just created): the
   * copy is made behind, as applyAppend's steps are, so the caller does not wait for the
   * disk; every other use of the copy waits for it.
   */
  storeBehind (path: string, meta: FileMeta, data: Buffer): void {
    this.runBehind(path, async () => { await this.storeBytesNow(path, meta, data) })
  }

  /**
   * Bytes this client holds in memory, at `meta`, as the copy now (a reader that needs a
   * copy on disk of a small file it read with a stat or made itself: sqlite's journal).
   */
  async storeBytes (path: string, meta: FileMeta, data: Buffer): Promise<CachedFile> {
    await this.behind.get(path)
    return await this.storeBytesNow(path, meta, data)
  }

  /**
   * Large bytes stream through the thread pool; a small copy is written synchronously, into
   * the page cache, where the open or working copy that follows at once would otherwise wait
   * for about eight trips through the thread pool.
   */
  private async storeBytesNow (path: string, meta: FileMeta, data: Buffer): Promise<CachedFile> {
    if (data.length > SMALL_COPY_BYTES) return await this.storeNow(path, meta, Readable.from([data]))
    await this.foldersToWrite()
    const partial = this.partialFile(path)
    await this.changing.run(path, async () => {
      try {
        fs.writeFileSync(partial, data)
        await this.placeCopy(path, partial, meta)
      } catch (err) {
        fs.rmSync(partial, { force: true })
        throw err
      }
    })
    return { file: this.objectFile(path), meta }
  }

  /** Runs a step on `path`'s copy after the ones before it; a step that fails drops the copy. */
  private runBehind (path: string, step: () => Promise<void>): void {
    const before = this.behind.get(path)
    const running = (async () => {
      await before
      try {
        await step()
      } catch {
        await this.changing.run(path, async () => await this.invalidateNow(path)).catch(() => {})
      }
    })()
    this.behind.set(path, running)
    void running.then(() => {
      if (this.behind.get(path) === running) this.behind.delete(path)
    })
  }

  private async applyAppendNow (path: string, appended: Buffer, after: FileMeta): Promise<void> {
    // One at a time with the copy's replacement and removal: a download of the version this
    // append made, renamed in between the check and the write, would get the bytes twice,
    // and a copy removed in between would come back holding only them.
    await this.changing.run(path, async () => {
      const cached = await this.getNow(path)
      if (!cached) return
      if (cached.meta.version !== after.version - 1 || cached.meta.size + appended.length !== after.size) {
        await this.invalidateNow(path)
        return
      }
      try {
        await this.appends.appendTo(path, cached.file, appended)
      } catch {
        await this.invalidateNow(path) // evicted meanwhile
        return
      }
      this.recordLater(path, after)
    })
  }

  /** The index vouches for the copy at `meta` now; its record file follows a little later (RECORD_AFTER_APPENDS_MS). */
  private recordLater (path: string, meta: FileMeta): void {
    if (!this.indexed(path, { path, meta })) return
    if (this.recordTimers.has(path)) return
    const timer = setTimeout(() => {
      this.recordTimers.delete(path)
      // Under the copy's lock, so it never lands between a replacement's rename and its record.
      void this.changing.run(path, async () => {
        const record = this.index.peek(path)
        if (record !== undefined) this.writeRecord(path, record.meta)
      }).catch(() => {}) // the copy went meanwhile; its next store writes a record of its own
    }, RECORD_AFTER_APPENDS_MS)
    timer.unref()
    this.recordTimers.set(path, timer)
  }

  /**
   * Takes a local file as the copy of `path` at `meta` by renaming it in: the caller gives
   * the file up. A file of another size than meta says is refused; one on another disk is
   * copied instead (and left where it was).
   */
  async adopt (path: string, meta: FileMeta, file: string): Promise<CachedFile> {
    await this.foldersToWrite()
    const { size } = await fsp.stat(file)
    if (size !== meta.size) throw new Error(`${file} has ${size} bytes, ${path} at version ${meta.version} has ${meta.size}`)
    await this.invalidate(path)
    await this.removing.get(path)
    this.appends.drop(path)
    try {
      await fsp.rename(file, this.objectFile(path))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
      return await this.store(path, meta, fs.createReadStream(file))
    }
    this.writeRecord(path, meta)
    return { file: this.objectFile(path), meta }
  }

  /**
   * Cuts a copy to the size this client itself truncated the file to, if the copy is exactly
   * the version the truncation was made on; otherwise drops it. The cut copy is a new file,
   * so a reader of the old one keeps its bytes.
   */
  async applyTruncate (path: string, after: FileMeta): Promise<void> {
    const cached = await this.get(path)
    if (!cached) return
    if (cached.meta.version !== after.version - 1 || after.size > cached.meta.size) {
      await this.invalidate(path)
      return
    }
    const body = after.size === 0 ? Readable.from([]) : fs.createReadStream(cached.file, { start: 0, end: after.size - 1 })
    await this.store(path, after, body)
  }

  /**
   * Moves a copy to the path a rename gave its file, if it holds the bytes that moved (the
   * version `movedVersion` of `from`); otherwise drops both paths' copies.
   */
  async move (from: string, to: string, movedVersion: number, after: FileMeta): Promise<void> {
    const cached = await this.get(from)
    await this.invalidate(to)
    if (!cached || cached.meta.version !== movedVersion || cached.meta.size !== after.size) {
      await this.invalidate(from)
      return
    }
    this.index.delete(from)
    this.appends.drop(from)
    this.appends.drop(to)
    await this.removing.get(to)
    await removeLocalFile(this.recordFile(from))
    try {
      await fsp.rename(this.objectFile(from), this.objectFile(to))
    } catch {
      this.removeBehind(from)
      return
    }
    this.writeRecord(to, after)
  }

  /** After a change of metadata only (mtime, mode): same version and size keep the copy under the new meta. */
  async restamp (path: string, after: FileMeta): Promise<void> {
    const cached = await this.get(path)
    if (!cached) return
    if (cached.meta.version !== after.version || cached.meta.size !== after.size) {
      await this.invalidate(path)
      return
    }
    this.writeRecord(path, after)
  }

  /** Drops the copies this process knows of below a folder (a folder renamed or removed). */
  async invalidateTree (folder: string): Promise<void> {
    const prefix = folder === '/' ? '/' : folder + '/'
    for (const path of [...this.index.keys()]) {
      if (path.startsWith(prefix)) await this.invalidate(path)
    }
  }

  async invalidate (path: string): Promise<void> {
    await this.behind.get(path)
    await this.changing.run(path, async () => await this.invalidateNow(path))
  }

  private async invalidateNow (path: string): Promise<void> {
    this.index.delete(path)
    this.removeBehind(path)
  }

  etagOf (cached: CachedFile | null): string | undefined {
    return cached ? etagOf(cached.meta) : undefined
  }

  private async init (): Promise<void> {
    this.ready ??= (async () => {
      await fsp.mkdir(this.objects, { recursive: true })
      await fsp.mkdir(this.tmp, { recursive: true })
    })()
    await this.ready
  }

  /**
   * The cache's folders, before a copy is written into them: made again if they went while
   * the mount ran (a user who clears ~/.cache). Otherwise every copy from then on failed, and
   * each file was read by ranges until the mount restarted. Two stats: nothing beside the
   * fetch or store it comes with.
   */
  private async foldersToWrite (): Promise<void> {
    await this.init()
    if (fs.existsSync(this.tmp) && fs.existsSync(this.objects)) return
    this.foldersGone()
    await this.init()
  }

  /** The copy of `path` is not on disk: forgotten, with all the others if their folder went too. */
  private copyGone (path: string): void {
    if (!fs.existsSync(this.objects)) this.foldersGone()
    else this.index.delete(path)
  }

  /** The cache's folders went: every copy is forgotten, and the folders are made at the next write. */
  private foldersGone (): void {
    this.index.clear()
    this.ready = null
    this.log?.(`the cache folder ${this.dir} was removed while mounted: it is made again, and the copies it held are fetched again`)
  }

  private objectFile (path: string): string {
    return nodePath.join(this.objects, hashOf(path))
  }

  private recordFile (path: string): string {
    return this.objectFile(path) + '.json'
  }

  /**
   * Counts the copies earlier runs left against the byte budget, least recently written
   * first, so that a long-lived client (a mount) evicts them too; without this the cache
   * only knows, and so only trims, what this process touched.
   */
  async loadIndex (): Promise<number> {
    await this.init()
    const records = (await fsp.readdir(this.objects)).filter((name) => name.endsWith('.json'))
    const found: Array<{ record: CacheRecord, mtimeMs: number }> = []
    for (let i = 0; i < records.length; i += 32) {
      await Promise.all(records.slice(i, i + 32).map(async (name) => {
        try {
          const file = nodePath.join(this.objects, name)
          const record = JSON.parse(await fsp.readFile(file, 'utf8')) as CacheRecord
          if (this.index.has(record.path) || this.recordFile(record.path) !== file) return
          const { size, mtimeMs } = await fsp.stat(this.objectFile(record.path))
          if (size === record.meta.size) found.push({ record, mtimeMs })
        } catch {
          // Half-written or removed meanwhile: not worth counting.
        }
      }))
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs)
    for (const { record } of found) if (!this.index.has(record.path)) this.indexed(record.path, record)
    return found.length
  }

  private readRecord (path: string): CacheRecord | null {
    const file = this.recordFile(path)
    // Most paths asked about have no copy (an append's target, say, at every append):
    // existsSync tells so with no exception, where readFileSync's ENOENT comes with a stack.
    if (!fs.existsSync(file)) return null
    try {
      const record = JSON.parse(fs.readFileSync(file, 'utf8')) as CacheRecord
      if (record.path !== path) return null
      const { size } = fs.statSync(this.objectFile(path))
      return size === record.meta.size ? record : null
    } catch {
      return null
    }
  }

  /**
   * The record that vouches for a copy: written beside it and renamed over the old one, so a
   * crash never leaves half a record. Synchronously: a few microseconds into the page cache.
   */
  private writeRecord (path: string, meta: FileMeta): void {
    const record: CacheRecord = { path, meta }
    const partial = `${this.recordFile(path)}.${uniqueSuffix()}`
    fs.writeFileSync(partial, JSON.stringify(record))
    fs.renameSync(partial, this.recordFile(path))
    this.indexed(path, record)
  }

  /**
   * Puts a copy in the index, and says whether it stays: one larger than the whole budget
   * (--cache-max-size) does not, and nothing would ever evict it, so its files go a moment
   * later (OVERSIZE_COPY_MS: a caller may still open it by name, as a working copy's start
   * does; readers keep their descriptors), unless a copy kept there since holds the name.
   */
  private indexed (path: string, record: CacheRecord): boolean {
    this.index.set(path, record)
    if (this.index.has(path)) return true
    setTimeout(() => {
      if (!this.index.has(path) && !this.arrivals.has(path)) this.removeBehind(path)
    }, OVERSIZE_COPY_MS).unref()
    return false
  }

  /** A fresh name in the cache's tmp folder for a copy of `path` being written. */
  private partialFile (path: string): string {
    return nodePath.join(this.tmp, `${hashOf(path)}.${uniqueSuffix()}`)
  }

  /**
   * Makes a finished file in the tmp folder the copy of `path` at `meta`, under the path's
   * `changing` lock: after any removal of an older copy (which must not take this one with
   * it), with the append descriptor of the old copy dropped, renamed into place, its record
   * written.
   */
  private async placeCopy (path: string, partial: string, meta: FileMeta): Promise<void> {
    await this.removing.get(path)
    this.appends.drop(path)
    fs.renameSync(partial, this.objectFile(path))
    this.writeRecord(path, meta)
  }

  /** Removes the path's record, then its copy, after any removal of them under way; nothing waits for it but the path's next copy. */
  private removeBehind (path: string): void {
    this.appends.drop(path)
    const before = this.removing.get(path)
    const removal = (async () => {
      await before
      await removeLocalFile(this.recordFile(path))
      await removeLocalFile(this.objectFile(path))
    })().catch(() => {}) // a file another process removed meanwhile: gone either way
    this.removing.set(path, removal)
    void removal.then(() => {
      if (this.removing.get(path) === removal) this.removing.delete(path)
    })
  }
}

/** How long a copy larger than the whole cache stays on disk after it was placed (LocalCache.indexed). */
const OVERSIZE_COPY_MS = 2000

/** Bytes of a download kept in memory after they are on disk (see Download.copyRecent). */
const RECENT_BYTES = 8 * 1024 * 1024

/** How long after a download its copy's bytes count as still in the page cache (Download.justWritten). */
const JUST_WRITTEN_MS = 10_000

/** The progress of a copy being stored: how many bytes are on disk, and whether it ended well. */
export class Download {
  received = 0
  /**
   * The last bytes that arrived (at most RECENT_BYTES), as written: a reader that follows the
   * download, as a sequential read of a large file does, copies them from here instead of
   * reading them back from the copy (one trip through the thread pool per read saved).
   */
  private recent: Array<{ at: number, data: Buffer }> = []
  private recentBytes = 0
  private outcome: { error: Error | null } | null = null
  /** When it finished (monotonic), or null while under way. */
  private finishedAt: number | null = null
  private readonly waiting = new Set<{ until: number, resolve: () => void, reject: (err: Error) => void }>()

  /** Handles reading the copy as it arrives: the open that started it, and those that joined it (LocalCache.joinArrival). */
  private readers = 1

  /** `stop`: ends the body's stream (cancel). */
  constructor (private readonly stop: () => void = () => {}) {}

  /** One more handle reads the copy as it arrives. */
  join (): void {
    this.readers++
  }

  /**
   * A reader needs the download no more (it reads by ranges instead). Once none does, the
   * download is called off: the body's stream ends, the partial copy goes, and nothing
   * becomes the cached copy.
   */
  cancel (): void {
    if (--this.readers > 0) return
    if (this.outcome === null) this.stop()
  }

  /** Whether no reader waits for bytes to arrive. */
  get unwaited (): boolean {
    return this.waiting.size === 0
  }

  /** Resolves once `until` bytes are on disk or the whole body is; rejects if it failed. */
  async waitFor (until: number): Promise<void> {
    if (this.outcome?.error) throw this.outcome.error
    if (this.outcome || this.received >= until) return
    await new Promise<void>((resolve, reject) => this.waiting.add({ until, resolve, reject }))
  }

  get finished (): boolean {
    return this.outcome !== null && this.outcome.error === null
  }

  /**
   * Whether the copy's bytes were written moments ago (under way, or finished in the last
   * JUST_WRITTEN_MS): then they are in the page cache, and a read of them takes a few
   * microseconds on the event loop, where the thread pool costs two thread switches.
   */
  get justWritten (): boolean {
    return this.finishedAt === null || monotonicMs() - this.finishedAt < JUST_WRITTEN_MS
  }

  /**
   * Copies [position, position + length) into `target` if it is all among the recent bytes;
   * answers the bytes copied (0 when not: the caller reads the copy).
   */
  copyRecent (target: Buffer, length: number, position: number): number {
    const first = this.recent[0]
    if (first === undefined || position < first.at || position + length > this.received) return 0
    let copied = 0
    for (const { at, data } of this.recent) {
      const end = at + data.length
      if (end <= position + copied) continue
      copied += data.copy(target, copied, position + copied - at, Math.min(data.length, position + length - at))
      if (copied === length) break
    }
    return copied
  }

  /** `chunks` are on disk now, right after what was before. */
  advance (bytes: number, chunks: Buffer[] = []): void {
    let at = this.received
    for (const data of chunks) {
      this.recent.push({ at, data })
      this.recentBytes += data.length
      at += data.length
    }
    while (this.recentBytes > RECENT_BYTES && this.recent.length > 1) this.recentBytes -= (this.recent.shift() as { data: Buffer }).data.length
    this.received += bytes
    for (const waiter of this.waiting) {
      if (this.received >= waiter.until) {
        this.waiting.delete(waiter)
        waiter.resolve()
      }
    }
  }

  finish (): void {
    // Complete: readers read the copy from now on, and the memory goes.
    this.finishedAt = monotonicMs()
    this.recent = []
    this.recentBytes = 0
    this.outcome = { error: null }
    for (const waiter of this.waiting) waiter.resolve()
    this.waiting.clear()
  }

  fail (error: Error): void {
    this.finishedAt = monotonicMs()
    this.recent = []
    this.recentBytes = 0
    this.outcome = { error }
    for (const waiter of this.waiting) waiter.reject(error)
    this.waiting.clear()
  }
}

/**
 * Writes a body to a handle, counting each write on disk into the download. Chunks that
 * come while a write is under way go down together in the next one: fewer, larger writes.
 */
function progressSink (writer: fsp.FileHandle, download: Download): Writable {
  // Chunks that came together go down in one writev: no copy into one buffer first.
  const put = (data: Buffer[], done: (err?: Error | null) => void): void => {
    const at = download.received
    const length = data.reduce((sum, chunk) => sum + chunk.length, 0)
    const loop = async (): Promise<void> => {
      let written = (await writer.writev(data, at)).bytesWritten
      // A short writev (rare on a local disk): the rest as one buffer.
      if (written < length) {
        const rest = Buffer.concat(data).subarray(written)
        for (let done = 0; done < rest.length;) done += (await writer.write(rest, done, rest.length - done, at + written + done)).bytesWritten
        written = length
      }
    }
    loop().then(() => {
      download.advance(length, data)
      done()
    }, done)
  }
  return new Writable({
    highWaterMark: 4 * 1024 * 1024,
    write: (chunk: Buffer, _encoding, done) => put([chunk], done),
    writev: (chunks, done) => put(chunks.map((c) => c.chunk as Buffer), done)
  })
}

function asError (err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

/** Makes a temporary name unique among this cache's users: the process, and random bits. */

/** Names of copies lately used: every step on a copy names its files, and a sha256 each time is not free. */
const hashes = new LRUCache<string, string>(upToEntries(10_000))

function hashOf (path: string): string {
  let hash = hashes.get(path)
  if (hash === undefined) {
    hash = crypto.createHash('sha256').update(path).digest('hex')
    hashes.set(path, hash)
  }
  return hash
}
