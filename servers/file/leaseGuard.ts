import type { Request } from 'express'
import { LeaseError, LockedError, NotFoundError } from '../../src/shared/errors'
import type { LockApi } from '../../src/shared/api'
import { Headers } from '../../src/shared/protocol'
import type { Caller } from '../common/auth'
import { parseLeaseCredential } from '../../src/shared/leaseCredential'
import type { LeaseCredential } from '../../src/shared/leaseCredential'

/** A lease this server has seen checked: no one else can hold the key before `until`. */
interface KnownLease {
  token: number
  until: number
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

  constructor (private readonly lock: LockApi, private readonly now: () => number = Date.now) {}

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
    let expiresInMs: number
    try {
      const answer = await this.lock.check(lockPath, credential)
      if (writer !== undefined && answer.holder !== undefined && answer.holder !== writer) {
        throw new LeaseError(`lease ${token} on ${lockPath} was not granted to ${writer}`, { path: lockPath, token })
      }
      expiresInMs = answer.expiresInMs
    } catch (err) {
      if (err instanceof NotFoundError) throw new LeaseError(`the lock server has no key for ${lockPath}`, { path: lockPath, token })
      throw err
    }
    this.known.set(lockPath, { token, until: this.now() + expiresInMs })
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
