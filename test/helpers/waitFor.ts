/**
 * Polls `check` until it returns something other than undefined/false, for at most
 * timeoutMs; the wait is on a real state change, never a fixed sleep.
 */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined | false>, timeoutMs = 5000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const result = await check()
    if (result !== undefined && result !== false) return result
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}
