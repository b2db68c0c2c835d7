/**
 * For lru-cache caches whose entries have a ttl: read the clock at each check instead of
 * caching it for a millisecond. lru-cache's default (ttlResolution 1) sets a timer each time
 * it caches the clock, and a mount checking ttls on every operation then keeps a timer turn
 * going each millisecond (measured: about 4 % of the mount's JavaScript time in creates);
 * performance.now() costs less than that timer.
 */
export const CLOCK_READ_EACH_CHECK = { ttlResolution: 0 } as const

/**
 * A bound on a cache's entries that allocates nothing up front: lru-cache preallocates its
 * tables for `max` entries (measured: about 15 ms for 100,000, paid at the start of a mount
 * and of every `dfs` command, a sixth of the CLI's start), while `maxSize` at one per entry
 * grows them as entries come. Each step costs about a tenth of a microsecond more.
 */
export function upToEntries (count: number): { maxSize: number, sizeCalculation: () => number } {
  return { maxSize: count, sizeCalculation: oneEach }
}

function oneEach (): number {
  return 1
}
