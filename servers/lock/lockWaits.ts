import { DfsError, LockedError } from '../../src/shared/errors'
import type { LockLease } from '../../src/shared/protocol'
import type { LockTable } from './lockTable'

/** An acquire whose caller hung up before it was granted: there is nobody left to answer. */
export class CallerGoneError extends DfsError {}

/** A parked waiter asks again at least this often, which keeps its place among the waiters. */
const REASK_MS = 400

/**
 * Acquires that wait on the server (long polling) instead of being told "locked" at once:
 * a released key reaches the next waiter in the time of one answer, not of its next poll.
 * Waiters are woken when a key is released or removed, and ask again at the holder's
 * expiry and every REASK_MS; the lock table still decides who gets the key.
 */
export class LockWaits {
  private readonly parked = new Map<string, Set<() => void>>()
  /** Shutting down: nobody waits any more, every waiter is told "locked" now. */
  private stopped = false

  constructor (private readonly table: LockTable) {}

  /**
   * Acquires, waiting up to waitMs for the key; then the table's LockedError. Asks `gone`
   * before every try and gives up with CallerGoneError when the caller hung up: a key granted
   * to nobody would stay taken for a whole lease.
   */
  async acquire (path: string, owner: string, ttlMs: number, waitMs: number, gone: () => Promise<boolean>): Promise<LockLease> {
    const deadline = Date.now() + waitMs
    for (;;) {
      if (await gone()) throw new CallerGoneError(`the caller asking for ${path} hung up`, { path, owner })
      try {
        return await this.table.acquire(path, owner, ttlMs)
      } catch (err) {
        const left = deadline - Date.now()
        if (!(err instanceof LockedError) || left <= 0 || this.stopped) throw err
        const untilExpiry = Number(err.details.retryAfterMs)
        await this.park(path, Math.min(left, REASK_MS, untilExpiry > 0 ? untilExpiry + 1 : REASK_MS))
      }
    }
  }

  /** Acquires parked now, waiting for a key (for operators). */
  get waiting (): number {
    let count = 0
    for (const waiters of this.parked.values()) count += waiters.size
    return count
  }

  /** The server is closing: waiters get their answer ("locked") at once, so it can finish. */
  stop (): void {
    this.stopped = true
    for (const path of [...this.parked.keys()]) this.wake(path)
  }

  /** The key changed hands or went away: every waiter on it asks again. */
  wake (path: string): void {
    const waiters = this.parked.get(path)
    if (!waiters) return
    this.parked.delete(path)
    for (const resume of waiters) resume()
  }

  private async park (path: string, ms: number): Promise<void> {
    let waiters = this.parked.get(path)
    if (!waiters) this.parked.set(path, waiters = new Set())
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
    if (set.size === 0 && this.parked.get(path) === set) this.parked.delete(path)
  }
}
