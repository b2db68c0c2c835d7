import type { AdvisoryLockApi } from '../shared/api'
import type { AdvisoryKind, AdvisoryLock, AdvisoryLockRequest } from '../shared/advisoryLockProtocol'
import { DEFAULT_LEASE_MS } from '../shared/defaults'
import { InterruptedError, LockedError } from '../shared/errors'

/** Longest single wait on the lock server; a longer wait asks again. */
const LONG_POLL_MS = 5000

export interface AdvisoryLocksOptions {
  /** This mount's session id on the lock server: its locks live as long as it renews. */
  session: string
  /** The session's lease; undefined takes the lock server's. */
  leaseMs?: number
  log?: (line: string) => void
}

/** Bytes of a file: length 0 runs to its end. */
export interface ByteRange {
  start: number
  length: number
}

/** Whose lock: the kernel's lock owner on this mount, and which kind of lock. */
export interface LockOwner {
  owner: string
  kind: AdvisoryKind
}

const WHOLE_FILE: ByteRange = { start: 0, length: 0 }

/**
 * A mount's fcntl and flock locks, held on the lock server so that every mount sees them. The
 * mount is one session there, renewed at a third of its lease while it holds any lock: a
 * mount that dies loses its locks when the lease runs out, and unmounting gives them all
 * back at once. A wait is a series of long polls that a program's interrupt (flock -w,
 * Ctrl-C) breaks off; the server never grants a lock to a poll that was hung up.
 */
export class AdvisoryLocks {
  /** Per path, the owners (kind:owner) that may hold a lock there: a close of anyone else's costs no request. */
  private readonly holding = new Map<string, Set<string>>()
  private ttlMs: number
  private renewal: NodeJS.Timeout | null = null
  /** Fires at close: waits still under way end, rather than be granted to a mount that is gone. */
  private readonly closing = new AbortController()

  constructor (private readonly api: AdvisoryLockApi, private readonly opts: AdvisoryLocksOptions) {
    this.ttlMs = opts.leaseMs ?? DEFAULT_LEASE_MS
  }

  get session (): string {
    return this.opts.session
  }

  /**
   * Takes, changes or gives back a lock (type 'unlock'). Without `wait`, a conflicting lock
   * fails it at once with LockedError (EAGAIN); with it, it waits until granted or `signal`
   * fires (InterruptedError, EINTR).
   */
  async lock (path: string, who: LockOwner, type: AdvisoryLockRequest['type'], range: ByteRange, wait: boolean, signal?: AbortSignal): Promise<void> {
    const request: AdvisoryLockRequest = {
      path, session: this.opts.session, ttlMs: this.opts.leaseMs, owner: who.owner, kind: who.kind, type, start: range.start, length: range.length
    }
    if (!wait || type === 'unlock') {
      await this.send(request)
      return
    }
    const stop = signal === undefined ? this.closing.signal : AbortSignal.any([signal, this.closing.signal])
    const interrupted = (): boolean => stop.aborted
    for (;;) {
      try {
        if (!interrupted()) {
          await this.send({ ...request, waitMs: LONG_POLL_MS }, stop)
          return
        }
      } catch (err) {
        if (!(err instanceof LockedError) && !interrupted()) throw err
      }
      if (interrupted()) throw new InterruptedError(`the wait for a lock on ${path} was interrupted`, { path })
    }
  }

  /** The lock that keeps this one from being granted now, or null (fcntl F_GETLK). */
  async test (path: string, who: LockOwner, type: 'read' | 'write', range: ByteRange): Promise<AdvisoryLock | null> {
    const answer = await this.api.test({ path, session: this.opts.session, owner: who.owner, kind: who.kind, type, start: range.start, length: range.length })
    return answer.conflict
  }

  /** Gives back all the owner's locks on the path (a close, as POSIX and flock want); no request if it holds none. */
  async unlockAll (path: string, who: LockOwner): Promise<void> {
    if (this.holding.get(path)?.has(keyOf(who)) !== true) return
    await this.lock(path, who, 'unlock', WHOLE_FILE, false)
  }

  /** Gives back every lock of this mount at once, and stops renewing (unmount). */
  async close (): Promise<void> {
    this.closing.abort()
    this.stopRenewal()
    if (this.holding.size === 0) return
    this.holding.clear()
    await this.api.end(this.opts.session)
  }

  private async send (request: AdvisoryLockRequest, signal?: AbortSignal): Promise<void> {
    const answer = await this.api.lock(request, signal)
    this.ttlMs = answer.ttlMs
    const key = keyOf(request)
    const owners = this.holding.get(request.path) ?? new Set<string>()
    if (request.type !== 'unlock') owners.add(key)
    // A partial fcntl unlock may leave some of the owner's bytes locked: it stays listed.
    else if (request.kind === 'flock' || (request.start === 0 && request.length === 0)) owners.delete(key)
    if (owners.size > 0) this.holding.set(request.path, owners)
    else this.holding.delete(request.path)
    if (answer.held === 0) this.holding.clear()
    if (this.holding.size > 0) this.startRenewal()
    else this.stopRenewal()
  }

  private startRenewal (): void {
    if (this.renewal !== null || this.closing.signal.aborted) return
    this.renewal = setInterval(() => { void this.renew() }, Math.max(50, this.ttlMs / 3))
    this.renewal.unref()
  }

  private stopRenewal (): void {
    if (this.renewal !== null) clearInterval(this.renewal)
    this.renewal = null
  }

  private async renew (): Promise<void> {
    try {
      const answer = await this.api.renew({ session: this.opts.session, ttlMs: this.opts.leaseMs })
      if (answer.known && answer.held > 0) return
      if (!answer.known && this.holding.size > 0) {
        this.opts.log?.(`advisory locks of this mount are lost: the lock server no longer knows session ${this.opts.session} (its lease ran out, or the server restarted)`)
      }
      this.holding.clear()
      this.stopRenewal()
    } catch (err) {
      // An unreachable lock server may answer before the lease ends: keep renewing.
      this.opts.log?.(`renewing the advisory lock session failed: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
}

function keyOf (who: LockOwner): string {
  return `${who.kind}:${who.owner}`
}
