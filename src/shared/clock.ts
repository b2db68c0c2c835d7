import { performance } from 'node:perf_hooks'

/**
 * Milliseconds on a clock that never jumps: leases (callbacks, on both sides) are measured on
 * it, so setting the wall clock neither stretches nor shrinks them. With their fraction (a
 * microsecond's resolution): a change and the next request sent in the same millisecond keep
 * their order, where whole milliseconds made them look simultaneous, and a callback that held
 * was dropped as if a change might have come after the request left.
 */
export function monotonicMs (): number {
  return performance.now()
}

/** Waits for `promise` to settle, but at most `ms`; never throws (what it settles with is not wanted). */
export async function waitAtMost (promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([promise.then(() => {}, () => {}), new Promise<void>((resolve) => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
}
