/**
 * Milliseconds on a clock that never jumps: leases (callbacks, on both sides) are measured on
 * it, so setting the wall clock neither stretches nor shrinks them.
 */
export function monotonicMs (): number {
  return Number(process.hrtime.bigint() / 1_000_000n)
}
