import { Counter, Gauge } from 'prom-client'
import { metricsRegistry } from '../shared/metrics'

/*
 * The client's Prometheus metrics (a mount serves them with --metrics). No label carries a
 * path or a client id.
 */

const registers = [metricsRegistry]

const cacheLookups = new Counter({
  name: 'dfs_client_cache_lookups_total',
  help: 'Opens and reads of a file, by whether the local cache had it current (result hit) or it was fetched (result miss)',
  labelNames: ['result'] as const,
  registers
})

const cacheEvictions = new Counter({
  name: 'dfs_client_cache_evictions_total',
  help: 'Copies the local cache dropped to stay within its byte budget',
  registers
})

/** Sizes of the live caches of this process, read at scrape time. */
const caches = new Set<WeakRef<{ readonly bytes: number }>>()

new Gauge({
  name: 'dfs_client_cache_bytes',
  help: 'Bytes of file copies the local cache holds',
  registers,
  collect () {
    let total = 0
    for (const ref of caches) {
      const cache = ref.deref()
      if (cache === undefined) caches.delete(ref)
      else total += cache.bytes
    }
    this.set(total)
  }
})

/** A cache lookup answered from the local copy (hit) or by a download (miss). */
export function countCacheLookup (hit: boolean): void {
  cacheLookups.inc({ result: hit ? 'hit' : 'miss' })
}

export function countCacheEviction (): void {
  cacheEvictions.inc()
}

/** Counts the cache's bytes in dfs_client_cache_bytes while it lives. */
export function trackCacheBytes (cache: { readonly bytes: number }): void {
  caches.add(new WeakRef(cache))
}
