import { LRUCache } from 'lru-cache'
import { normalizePath, parentOf } from '../shared/paths'
import type { FileMeta } from '../shared/protocol'
import { CLOCK_READ_EACH_CHECK, upToEntries } from './lruOptions'

/** A stat that misses within this time of listing its folder lists the folder again. */
const LISTING_REUSE_MS = 30_000
const REMEMBERED_PATHS = 100_000

/**
 * What this client remembers of files' metadata, briefly: the answers of stat and of folder
 * listings, so an `ls -l` walk costs one listing and a getattr storm no requests. A change
 * made through this client forgets what it touched; others' changes show after the TTL.
 */
export class MetadataMemo {
  private readonly metas = new LRUCache<string, FileMeta>({ ...upToEntries(REMEMBERED_PATHS), ...CLOCK_READ_EACH_CHECK })
  /** Folders listed recently, so a stat of an entry is answered from the listing. */
  private readonly listedAt = new LRUCache<string, number>({ ...upToEntries(10_000), ttl: LISTING_REUSE_MS, ...CLOCK_READ_EACH_CHECK })

  constructor (readonly ttlMs: number) {}

  get (path: string): FileMeta | undefined {
    return this.metas.get(path)
  }

  /** Remembers a meta for ttlMs (the memo's own by default). */
  remember (meta: FileMeta, ttlMs = this.ttlMs): FileMeta {
    if (this.ttlMs > 0) this.metas.set(meta.path, meta, { ttl: ttlMs })
    return meta
  }

  wasListed (folder: string): boolean {
    return this.listedAt.has(folder)
  }

  listed (folder: string): void {
    this.listedAt.set(folder, Date.now())
  }

  /** Forget a path and its folder's listing, so the next call asks the servers. */
  forget (path: string): void {
    const canonical = normalizePath(path)
    this.metas.delete(canonical)
    this.metas.delete(parentOf(canonical))
    this.listedAt.delete(parentOf(canonical))
  }

  forgetTree (folder: string): void {
    this.forget(folder)
    const prefix = folder === '/' ? '/' : folder + '/'
    for (const path of [...this.metas.keys()]) if (path.startsWith(prefix)) this.metas.delete(path)
  }
}
