/**
 * For lru-cache caches whose entries have a ttl: read the clock at each check instead of
 * caching it for a millisecond. lru-cache's default (ttlResolution 1) sets a timer each time
 * it caches the clock, and a mount checking ttls on every operation then keeps a timer turn
 * going each millisecond (measured: about 4 % of the mount's JavaScript time in creates);
 * performance.now() costs less than that timer.
 */
export const CLOCK_READ_EACH_CHECK = { ttlResolution: 0 } as const
