import { DfsError, LockedError } from '../../src/shared/errors'
import type { LockLease } from '../../src/shared/protocol'
import type { LockTable } from './lockTable'
import { Parking } from './parking'

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
  private readonly parking = new Parking()
  /** Shutting down: nobody waits any more, every waiter is told "locked" now. */
  private stopped = false

  constructor (private readonly table: LockTable) {}

  /**
   * Acquires, waiting up to waitMs for the key; then the table's LockedError. Asks `gone`
   * before every try and gives up with CallerGoneError when the caller hung up: a key granted
   * to nobody would stay taken for a whole lease.
   */
  async acquire (path: string, owner: string, ttlMs: number, waitMs: number, gone: () => Promise<boolean>, holder?: string,
    recall: () => Promise<void> = async () => {}): Promise<LockLease> {
    const deadline = Date.now() + waitMs
    // A refusal first recalls the key's delegation, if a holder keeps it (see Delegations),
    // and asks again at once: the holder released before it acknowledged.
    let recalled = false
    for (;;) {
      if (await gone()) throw new CallerGoneError(`the caller asking for ${path} hung up`, { path, owner })
      try {
        return await this.table.acquire(path, owner, ttlMs, holder)
      } catch (err) {
        if (!(err instanceof LockedError) || this.stopped) throw err
        if (!recalled) {
          recalled = true
          await recall()
          continue
        }
        const left = deadline - Date.now()
        if (left <= 0) throw err
        const untilExpiry = Number(err.details.retryAfterMs)
        await this.parking.park(path, Math.min(left, REASK_MS, untilExpiry > 0 ? untilExpiry + 1 : REASK_MS))
        recalled = false
      }
    }
  }

  /** Acquires parked now, waiting for a key (for operators). */
  get waiting (): number {
    return this.parking.waiting
  }

  /** The server is closing: waiters get their answer ("locked") at once, so it can finish. */
  stop (): void {
    this.stopped = true
    this.parking.wakeAll()
  }

  /** The key changed hands or went away: every waiter on it asks again. */
  wake (path: string): void {
    this.parking.wake(path)
  }
}
