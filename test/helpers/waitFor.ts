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

/** Whether `event` happens within ms; the timer is cleared so it cannot hold the test process open. */
export async function within (event: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms) })
  try {
    return await Promise.race([event.then(() => true), timeout])
  } finally {
    clearTimeout(timer)
  }
}
