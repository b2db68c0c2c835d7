/**
 * Requests parked on a key until it changes or a timer runs out: long polls answer in the
 * time it takes to give something back, not at their next poll. Whoever changes what a key
 * guards calls wake(key); each parked request then asks again for itself.
 */
export class Parking {
  private readonly parked = new Map<string, Set<() => void>>()

  /** The key changed hands or went away: every request parked on it asks again. */
  wake (key: string): void {
    const waiters = this.parked.get(key)
    if (!waiters) return
    this.parked.delete(key)
    for (const resume of waiters) resume()
  }

  /** How many requests are parked now. */
  get waiting (): number {
    let count = 0
    for (const waiters of this.parked.values()) count += waiters.size
    return count
  }

  /** Every parked request asks again (the server is closing). */
  wakeAll (): void {
    for (const key of [...this.parked.keys()]) this.wake(key)
  }

  /** Resolves at the next wake(key), or after ms. */
  async park (key: string, ms: number): Promise<void> {
    let waiters = this.parked.get(key)
    if (!waiters) this.parked.set(key, waiters = new Set())
    const set = waiters
    await new Promise<void>((resolve) => {
      const resume = (): void => {
        clearTimeout(timer)
        set.delete(resume)
        resolve()
      }
      const timer = setTimeout(resume, ms)
      set.add(resume)
    })
    if (set.size === 0 && this.parked.get(key) === set) this.parked.delete(key)
  }
}
