import crypto from 'node:crypto'
import os from 'node:os'
import { LockedError, LockTimeoutError, ServerUnavailableError } from '../shared/errors'
import type { LockApi } from '../shared/api'
import type { LockLease } from '../shared/protocol'
import { leaseCredentialOf } from '../shared/leaseCredential'

export interface LockClientOptions {
  /** Longest wait for a key that others hold. */
  lockTimeoutMs: number
  /** Lease asked for; undefined takes the lock server's default. */
  leaseMs?: number
  owner?: string
}

/** A lease this client holds, renewed in the background until released. */
export interface HeldLock {
  lease: LockLease
  release: () => Promise<void>
}

export function defaultOwner (): string {
  return `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`
}

/** Longest single wait on the lock server; a longer lock timeout asks again. */
const LONG_POLL_MS = 5000

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Takes and gives back file keys. A key held by someone else is polled with capped
 * exponential backoff and jitter until lockTimeoutMs; a held key is renewed at a third of
 * its lease so that a slow but live writer keeps it while a dead one loses it.
 */
export class LockClient {
  readonly owner: string

  constructor (private readonly api: LockApi, private readonly opts: LockClientOptions) {
    this.owner = opts.owner ?? defaultOwner()
  }

  async acquire (path: string): Promise<HeldLock> {
    const deadline = Date.now() + this.opts.lockTimeoutMs
    let delay = 5
    for (;;) {
      try {
        // The server holds the request until the key is ours or waitMs has passed.
        const waitMs = Math.max(0, Math.min(deadline - Date.now(), LONG_POLL_MS))
        return this.hold(await this.api.acquire({ path, owner: this.owner, ttlMs: this.opts.leaseMs, waitMs }))
      } catch (err) {
        if (!(err instanceof LockedError)) throw err
        const remaining = deadline - Date.now()
        if (remaining <= 0) {
          throw new LockTimeoutError(`${path} is locked by ${String(err.details.holder)}; gave up after ${this.opts.lockTimeoutMs} ms`, { ...err.details })
        }
        await sleep(Math.min(remaining, delay * (0.5 + Math.random())))
        delay = Math.min(delay * 2, 250)
      }
    }
  }

  async withLock<T> (path: string, task: (lease: LockLease) => Promise<T>): Promise<T> {
    const held = await this.acquire(path)
    try {
      return await task(held.lease)
    } finally {
      await held.release()
    }
  }

  private hold (lease: LockLease): HeldLock {
    const renewal = setInterval(() => {
      this.api.renew(lease.path, leaseCredentialOf(lease)).catch((err: unknown) => {
        // A lock server that does not answer may come back before the lease ends: keep
        // trying. A lease it says is gone is lost for good (a store under it is refused, and
        // the client proxy takes a new one: DfsClient.storeWorkingCopy).
        if (!(err instanceof ServerUnavailableError)) clearInterval(renewal)
      })
    }, Math.max(50, lease.ttlMs / 3))
    renewal.unref()
    return {
      lease,
      release: async () => {
        clearInterval(renewal)
        try {
          await this.api.release(lease.path, leaseCredentialOf(lease))
        } catch {
          // An expired lease or an unreachable lock server: the key frees itself at the lease's end.
        }
      }
    }
  }
}
