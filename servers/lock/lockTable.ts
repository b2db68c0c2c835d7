import { LeaseError, LockedError, NotFoundError } from '../../src/errors'
import type { LockLease, LockStatus } from '../../src/protocol'

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
  }

  deleteKeys (paths: string[]): number {
    let removed = 0
    for (const path of paths) if (this.keys.delete(path)) removed++
    return removed
  }

  acquire (path: string, owner: string, ttlMs: number): LockLease {
    const holder = this.liveHolder(path)
    if (holder) {
      throw new LockedError(`${path} is locked by ${holder.owner}, retry later`, {
        path, holder: holder.owner, retryAfterMs: Math.max(0, holder.expiresAt - this.now())
      })
    }
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
  check (path: string, token: number): void {
    this.holderWithToken(path, token)
  }

  status (path: string): LockStatus {
    const holder = this.liveHolder(path)
    if (!holder) return { path, held: false }
    return { path, held: true, owner: holder.owner, expiresInMs: holder.expiresAt - this.now() }
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
