import type { AdvisoryHeldLock, AdvisoryLock } from '../shared/advisoryLockProtocol'
import { AdvisoryLockTable } from '../shared/advisoryTable'
import type { AdvisoryClaim } from '../shared/advisoryTable'
import { monotonicMs } from '../shared/clock'

/** The one session of a mount's own table: only this mount's owners are in it. */
const HERE = 'here'
/** A delegated path with no lock that nobody used for this long goes back to the lock server (see idle). */
const IDLE_MS = 5_000

/**
 * The advisory locks of one path while the lock server has delegated them to this mount:
 * the mount decides them with the server's own table logic (src/shared/advisoryTable.ts),
 * so a conflict between two of its programs is what the server would have found, and no
 * request is made. Only this mount's owners are in it: nobody else held or waited for a lock
 * on the path when it was delegated, and nobody else is granted one before it is handed back.
 */
export class DelegatedPath {
  private readonly table = new AdvisoryLockTable()
  private readonly waiters = new Set<() => void>()
  /** The hand-back under way, if any: operations on the path wait for it, then ask the server. */
  handingBack: Promise<void> | null = null
  /** A hand-back failed with no answer: it may have reached the server, so nothing more is decided here, only handed back again. */
  handedBackMaybe = false
  /** When a program last locked, unlocked or tested here (monotonic). */
  private usedAt = monotonicMs()

  constructor (readonly path: string, locks: AdvisoryLock[]) {
    this.table.touch(HERE, Infinity)
    this.table.replace(path, HERE, locks)
  }

  /** Grants the claim (null), or answers the lock of another owner of this mount in its way. */
  lock (claim: Omit<AdvisoryClaim, 'session'>): AdvisoryHeldLock | null {
    this.usedAt = monotonicMs()
    const full = { ...claim, session: HERE }
    const conflict = this.table.conflict(this.path, full)
    if (conflict !== null) return held(conflict)
    this.table.set(this.path, full)
    this.wake()
    return null
  }

  /** The lock of another owner of this mount that the claim conflicts with, or null (F_GETLK). */
  test (claim: Omit<AdvisoryClaim, 'session'>): AdvisoryHeldLock | null {
    this.usedAt = monotonicMs()
    const conflict = this.table.conflict(this.path, { ...claim, session: HERE })
    return conflict === null ? null : held(conflict)
  }

  /** Gives back an owner's lock (flock's conversion: the old lock goes before a wait). */
  unlock (owner: string, kind: AdvisoryClaim['kind']): void {
    this.usedAt = monotonicMs()
    this.table.set(this.path, { session: HERE, owner, kind, type: 'unlock', start: 0, end: Infinity })
    this.wake()
  }

  /** Whether the owner holds any lock here. */
  holds (owner: string, kind: AdvisoryClaim['kind']): boolean {
    return this.locks().some((l) => l.owner === owner && l.kind === kind)
  }

  /**
   * Whether nothing is held or awaited here and nobody used the path for a while: then it may
   * as well go back (the session need not be renewed for ever after one lock, nor the server
   * keep a delegation per file the mount ever locked).
   */
  idle (): boolean {
    return monotonicMs() - this.usedAt >= IDLE_MS && this.waiters.size === 0 && this.locks().length === 0
  }

  /** Every lock held here, as the hand-back sends them. */
  locks (): AdvisoryHeldLock[] {
    return this.table.sessionLocksOn(this.path, HERE).map(held)
  }

  /**
   * Resolves at the next change here (a lock given back, the path handed back) or when
   * `signal` fires: a waiting lock then looks again.
   */
  async changed (signal: AbortSignal): Promise<void> {
    if (signal.aborted) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.waiters.delete(done)
        signal.removeEventListener('abort', done)
        resolve()
      }
      this.waiters.add(done)
      signal.addEventListener('abort', done)
    })
  }

  /** Wakes every local wait (something changed, or the path is no longer this mount's to decide). */
  wake (): void {
    for (const done of [...this.waiters]) done()
  }
}

function held (lock: AdvisoryLock): AdvisoryHeldLock {
  return { owner: lock.owner, kind: lock.kind, type: lock.type, start: lock.start, length: lock.length }
}
