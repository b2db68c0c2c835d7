import crypto from 'node:crypto'
import type { Request } from 'express'
import { LeaseError, LockedError, NotFoundError } from '../../src/shared/errors'
import type { LockApi } from '../../src/shared/api'
import { Headers } from '../../src/shared/protocol'
import { monotonicMs } from '../../src/shared/clock'
import type { Caller } from '../common/auth'
import { parseLeaseCredential } from '../../src/shared/leaseCredential'
import type { LeaseCredential } from '../../src/shared/leaseCredential'

/** A lease this server has seen checked: no one else can hold the key before `until`. */
interface KnownLease {
  token: number
  until: number
  /** The credential the lock server last vouched for, whom it was granted to, and until when that answer is trusted. */
  checked?: { credential: string, holder: string | undefined, trustedUntil: number }
}

/**
 * The file server's side of fencing: a write must carry the live lease on its path. The
 * highest token seen per path is kept, so a writer whose lease was superseded is refused
 * even if its request arrives after the newer writer's.
 *
 * Appends may also come without a lease (one request instead of acquire, append, release):
 * they are admitted unless a writer holds the path's key, whose store of a whole working
 * copy would otherwise drop them. The leases this server has seen checked tell it when to
 * ask; a path nobody locked lately costs no request to the lock server.
 */
export class LeaseGuard {
  private readonly known = new Map<string, KnownLease>()

  /** `now`: a clock that never jumps, so a trusted answer is never stretched by a change of the wall clock. */
  constructor (private readonly lock: LockApi, private readonly now: () => number = monotonicMs) {}

  /**
   * The request's X-Dfs-Lock-Token must be the live lease on `lockPath`, and a client's
   * own: a lease granted to another credential's subject is refused, so a fencing number
   * seen or guessed is worth nothing to anyone else. (A server forwarding a client's
   * lease, PUT /incoming, is a cluster member and is not asked.)
   */
  async require (req: Request, lockPath: string): Promise<number> {
    const caller = req.res?.locals.caller as Caller | undefined
    const writer = caller === undefined || caller.open || caller.role === 'server' ? undefined : caller.subject
    return await this.check(req.get(Headers.lockToken), lockPath, writer)
  }

  /** `credential`: TOKEN.SECRET (leaseCredential.ts); the lock server knows the secret, this server only asks. */
  async check (credential: LeaseCredential | undefined, lockPath: string, writer?: string): Promise<number> {
    const parsed = parseLeaseCredential(credential)
    if (credential === undefined || parsed === null) {
      throw new LeaseError(`writing ${lockPath} needs its lock: no ${Headers.lockToken} (TOKEN.SECRET) given`, { path: lockPath })
    }
    const { token } = parsed
    const known = this.known.get(lockPath)
    if (token < (known?.token ?? 0)) {
      throw new LeaseError(`lease ${token} on ${lockPath} was superseded by a newer writer`, { path: lockPath, token })
    }
    const checked = known?.token === token ? known.checked : undefined
    if (checked !== undefined && this.now() < checked.trustedUntil && sameCredential(checked.credential, credential)) {
      refuseOthers(checked.holder, writer, lockPath, token)
      return token
    }
    let expiresInMs: number
    let holder: string | undefined
    let trustForMs: number | undefined
    // Taken before the question: the lease ran at least until sentAt + expiresInMs.
    const sentAt = this.now()
    try {
      const answer = await this.lock.check(lockPath, credential)
      holder = answer.holder
      refuseOthers(holder, writer, lockPath, token)
      expiresInMs = answer.expiresInMs
      if (answer.delegated === true) trustForMs = Math.min(expiresInMs, answer.trustForMs ?? expiresInMs)
    } catch (err) {
      if (err instanceof NotFoundError) throw new LeaseError(`the lock server has no key for ${lockPath}`, { path: lockPath, token })
      throw err
    }
    /*
     * The answer about a delegated lease (one its client keeps after use: servers/lock/
     * delegations.ts) is trusted, for this exact credential (TOKEN.SECRET), until sentAt +
     * trustForMs: never later than the lease's real end, as the lock server counted it when
     * it answered after sentAt, nor than the lock server may end it early because its client
     * is gone (servers/lock/delegatedLeases.ts: it waits for every trust it gave to run out).
     * So the next writes under a kept lease cost no question to the lock server. Other
     * leases are asked about at every write, as before. This is safe:
     * - a lease that ran out (the holder died, or its renewals stopped) or was ended is asked
     *   about again, and refused; the holder's renewals move the lock server's end, not this
     *   one, so a long-kept lease is asked about once per trustForMs;
     * - a lease given back early and the key granted again gives the new holder a higher
     *   token (tokens only grow), which raises this path's floor at its first write here:
     *   from then on the former holder is refused without a question, as today. A delegated
     *   lease's client gives it back only once its writes under it were answered, so what
     *   could still come under the old credential in between is only a write its client
     *   gave up on (timed out) before it released;
     * - a renewal never changes the token, and another secret is never trusted (compared in
     *   constant time, as the lock server does).
     */
    const until = this.now() + expiresInMs
    this.known.set(lockPath, { token, until, checked: trustForMs === undefined ? undefined : { credential, holder, trustedUntil: sentAt + trustForMs } })
    return token
  }

  /**
   * Admits a write that carries no lease (an append), or refuses it with LOCKED while
   * someone holds the key. Only a path whose lease this server saw and that may still run
   * costs a question to the lock server.
   */
  async admitUnlocked (lockPath: string): Promise<void> {
    const known = this.known.get(lockPath)
    if (known === undefined || known.until <= this.now()) return
    const status = await this.lock.status(lockPath)
    if (!status.held) {
      // Released early: nothing to wait for. The token stays the floor for late writers.
      known.until = 0
      return
    }
    known.until = this.now() + (status.expiresInMs ?? 0)
    throw new LockedError(`${lockPath} is locked by ${status.owner ?? 'another writer'}: append under its lock`, {
      path: lockPath, holder: status.owner, retryAfterMs: 0
    })
  }

  /** The path is gone from this server; tokens only grow, so nothing is lost by forgetting. */
  forget (path: string): void {
    this.known.delete(path)
  }
}

/** A lease granted to another credential's subject is refused to this writer. */
function refuseOthers (holder: string | undefined, writer: string | undefined, lockPath: string, token: number): void {
  if (writer !== undefined && holder !== undefined && holder !== writer) {
    throw new LeaseError(`lease ${token} on ${lockPath} was not granted to ${writer}`, { path: lockPath, token })
  }
}

/** Compared in constant time: a guessed secret learns nothing from how long a refusal took. */
function sameCredential (known: string, given: string): boolean {
  const a = Buffer.from(known)
  const b = Buffer.from(given)
  return a.length === b.length && crypto.timingSafeEqual(a, b)
}
