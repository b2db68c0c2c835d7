import { LRUCache } from 'lru-cache'
import type { FileMeta } from '../shared/protocol'
import { etagOf } from '../shared/protocol'

/** Bytes held at most, over all files (each at most a stat's inline size, INLINE_STAT_BYTES). */
const RECENT_BYTES_HELD = 16 * 1024 * 1024
/** Files held at most: each entry also costs its attributes and the LRU's own bookkeeping. */
const RECENT_FILES_HELD = 8192

interface Held {
  meta: FileMeta
  data: Buffer
}

/**
 * The bytes of small files that came with a stat (GET /stat?inline=) or that this client
 * created, by path, each with the attributes of the version they are. An open of a file
 * that a callback vouches for at that same version reads them from here, with no copy
 * written to the cache's folder (two files made there, a few hundred microseconds each on
 * the event loop on a disk whose journal other fsyncs keep busy) nor opened and read through
 * libuv's thread pool. A version's bytes never change, so an entry serves only the version
 * it holds (the ETag's version, size and mtime, as the cache's copies are matched). Lost at
 * a restart, which costs one request per file, as a copy on disk would once its callback
 * had lapsed.
 */
export class RecentBytes {
  private readonly held = new LRUCache<string, Held>({ max: RECENT_FILES_HELD, maxSize: RECENT_BYTES_HELD, sizeCalculation: (entry) => Math.max(1, entry.data.length) })

  remember (path: string, meta: FileMeta, data: Buffer): void {
    // A copy of its own: `data` may be a view of a larger buffer (a write slab, a response),
    // which holding it would keep whole.
    this.held.set(path, { meta, data: Buffer.from(data) })
  }

  /**
   * This client appended `data` and the file is now `meta`: bytes held of the version just
   * before (one version below, `data` short of `meta`'s size: no other change between) move
   * on with it while they stay at most `maxBytes`; any others are dropped. So a shell's `>`
   * onto a new file (a create, then an append) leaves the file's bytes here, as a `cp` does.
   */
  appended (path: string, data: Buffer, meta: FileMeta, maxBytes: number): void {
    const entry = this.held.get(path)
    if (entry === undefined) return
    const follows = entry.meta.version + 1 === meta.version && entry.data.length + data.length === meta.size
    if (follows && meta.size <= maxBytes) this.held.set(path, { meta, data: Buffer.concat([entry.data, data]) })
    else this.held.delete(path)
  }

  /**
   * The bytes held of `path`, at whatever version: to offer that version when revalidating
   * with no callback (a 304 proves them current, as it proves a copy on disk).
   */
  any (path: string): Held | undefined {
    return this.held.get(path)
  }

  /** The bytes of `path` at `current` (what a callback vouches for now), if held. */
  of (path: string, current: FileMeta | undefined): Held | undefined {
    if (current === undefined) return undefined
    const entry = this.held.get(path)
    return entry !== undefined && etagOf(entry.meta) === etagOf(current) ? entry : undefined
  }
}
