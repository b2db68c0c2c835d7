import { LeaseError, LockedError, NotFoundError } from '../../src/shared/errors'
import type { LockLease, LockStatus } from '../../src/shared/protocol'

/** A waiter polls at least this often (LockClient backs off to 250 ms, plus jitter). */
const WAITER_GONE_MS = 1000

interface Holder {
  owner: string
  token: number
  ttlMs: number
  expiresAt: number
}

/**
 * One key per file; at most one live holder per key. A lease that is not renewed in time
 * simply stops counting, so a holder that died frees its key without anyone cleaning up.
 */
export class LockTable {
  private readonly keys = new Map<string, Holder | null>()
  // Starts at the clock in microseconds so that tokens keep growing across a restart of the
  // lock server (file servers refuse any token below the highest one they have seen) unless
  // more than a thousand leases a millisecond were granted; still a safe integer until 2255.
  private lastToken = Date.now() * 1000
  /**
   * Per key, who was refused it, in order of first refusal, with when each last asked. A
   * freed key goes to the longest waiter: otherwise a writer that releases and at once
   * acquires again starves every other writer, who only polls now and then.
   */
  private readonly waiters = new Map<string, Map<string, number>>()

  constructor (private readonly now: () => number = Date.now) {}

  createKeys (paths: string[]): number {
    let created = 0
    for (const path of paths) {
      if (!this.keys.has(path)) {
        this.keys.set(path, null)
        created++
      }
    }
    return created
  }

  deleteKey (path: string): void {
    this.keys.delete(path)
    this.waiters.delete(path)
  }

  deleteKeys (paths: string[]): number {
    let removed = 0
    for (const path of paths) {
      this.waiters.delete(path)
      if (this.keys.delete(path)) removed++
    }
    return removed
  }

  acquire (path: string, owner: string, ttlMs: number): LockLease {
    const holder = this.liveHolder(path)
    const first = this.firstWaiter(path)
    if (holder || (first !== undefined && first !== owner)) {
      this.wait(path, owner)
      if (holder) {
        throw new LockedError(`${path} is locked by ${holder.owner}, retry later`, {
          path, holder: holder.owner, retryAfterMs: Math.max(0, holder.expiresAt - this.now())
        })
      }
      throw new LockedError(`${path} is promised to ${String(first)}, who asked first; retry later`, { path, holder: first, retryAfterMs: 0 })
    }
    this.waiters.get(path)?.delete(owner)
    const granted: Holder = { owner, token: ++this.lastToken, ttlMs, expiresAt: this.now() + ttlMs }
    this.keys.set(path, granted)
    return { path, ...granted }
  }

  renew (path: string, token: number): LockLease {
    const holder = this.holderWithToken(path, token)
    holder.expiresAt = this.now() + holder.ttlMs
    return { path, ...holder }
  }

  release (path: string, token: number): void {
    this.holderWithToken(path, token)
    this.keys.set(path, null)
  }

  /** Throws unless `token` is the live lease on `path`. */
  /** Whether `token` is the live lease on the path; how long it has left. */
  check (path: string, token: number): number {
    return this.holderWithToken(path, token).expiresAt - this.now()
  }

  status (path: string): LockStatus {
    const holder = this.liveHolder(path)
    if (!holder) return { path, held: false }
    return { path, held: true, owner: holder.owner, expiresInMs: holder.expiresAt - this.now() }
  }

  private wait (path: string, owner: string): void {
    let queue = this.waiters.get(path)
    if (!queue) this.waiters.set(path, queue = new Map())
    queue.set(owner, this.now()) // a Map keeps the order of first refusal when a time is updated
  }

  /** The longest waiter still asking; one silent for longer than a poll interval gave up. */
  private firstWaiter (path: string): string | undefined {
    const queue = this.waiters.get(path)
    if (!queue) return undefined
    for (const [owner, lastAsked] of queue) {
      if (this.now() - lastAsked <= WAITER_GONE_MS) return owner
      queue.delete(owner)
    }
    this.waiters.delete(path)
    return undefined
  }

  private liveHolder (path: string): Holder | null {
    if (!this.keys.has(path)) throw new NotFoundError(`no lock key for ${path}`, { path })
    const holder = this.keys.get(path) ?? null
    if (holder && holder.expiresAt <= this.now()) {
      this.keys.set(path, null)
      return null
    }
    return holder
  }

  private holderWithToken (path: string, token: number): Holder {
    const holder = this.liveHolder(path)
    if (!holder || holder.token !== token) {
      throw new LeaseError(`lease ${token} on ${path} is not held: it expired or was released`, { path, token })
    }
    return holder
  }
}
