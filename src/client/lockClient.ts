import crypto from 'node:crypto'
import os from 'node:os'
import { LockedError, LockTimeoutError, ServerUnavailableError } from '../shared/errors'
import type { LockApi } from '../shared/api'
import type { LockLease } from '../shared/protocol'
import { leaseCredentialOf } from '../shared/leaseCredential'
import type { DelegationChannel } from './delegationChannel'
import { KeptLeases } from './keptLeases'
import type { Keepable, UseEnd } from './keptLeases'

export interface LockClientOptions {
  /** Longest wait for a key that others hold. */
  lockTimeoutMs: number
  /** Lease asked for; undefined takes the lock server's default. */
  leaseMs?: number
  owner?: string
  /**
   * The client's channel to the lock server: with one, leases are asked for with their
   * delegation and kept after use until recalled (keptLeases.ts).
   */
  delegations?: DelegationChannel | null
}

/** A lease this client holds, renewed in the background until released. */
export interface HeldLock {
  lease: LockLease
  /** Handed over from the leases this client kept after an earlier use (no request): the path is in use here. */
  reused?: boolean
  /**
   * Ends this use of the lease. A delegated lease is kept for the next use (see KeptLeases)
   * unless `keep` is false (it is lost, or its file went away): then it is given back.
   * `keyGone`: the lock server removed the key with its file, and the lease with it: it
   * ends here with no request.
   */
  release: (opts?: { keep?: boolean } & UseEnd) => Promise<void>
  /**
   * Calls `handler` (once) if the lock server recalls the lease while this use goes on,
   * because another client asks for the key: a long use may then release early. Never
   * called for a lease nobody can recall (not delegated).
   */
  whenRecalled: (handler: () => void) => void
  /** Whether the lock server can recall the lease (it was delegated, and is kept here): if not, another client asking for the key just waits. */
  recallable: () => boolean
}

/** A lease as held: renewed until given back, and whether a renewal found it gone. */
interface Holding extends Keepable {
  lease: LockLease
}

export function defaultOwner (): string {
  return `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`
}

/** How long an acquire waits for this client's own use of a kept lease to end before it asks the lock server. */
const HANDOFF_WAIT_MS = 1_000

/**
 * A renewal asked for at once (the channel was lost: KeptLeases.lost) is tried again this
 * often, this many times, while the lock server does not answer: the loss that closed the
 * channel (a cut connection) often fails the first try on a pooled connection too, and the
 * lock server ends a delegated lease of a silent client after a few seconds.
 */
const RENEW_NOW_RETRY_MS = 300
const RENEW_NOW_RETRIES = 10

/**
 * A release the lock server did not answer is tried again in the background, first this
 * long after, then twice as long each time up to RELEASE_RETRY_MAX_MS, until the lease would
 * have ended anyway. A lock server that restarts keeps its leases (its journal): a lease this
 * client gave up on, unreleased, would hold the key against this client's own next acquire
 * until the lease's end (30 s by default), and that acquire gives up first (ENOLCK).
 */
const RELEASE_RETRY_FIRST_MS = 100
const RELEASE_RETRY_MAX_MS = 1_000

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
  /** Delegated leases kept after use (null without a channel to the lock server). */
  readonly kept: KeptLeases | null

  constructor (private readonly api: LockApi, private readonly opts: LockClientOptions) {
    this.owner = opts.owner ?? defaultOwner()
    const channel = opts.delegations ?? null
    this.kept = channel === null ? null : new KeptLeases(() => channel.ready())
    if (channel !== null && this.kept !== null) channel.handle('lease', this.kept)
  }

  /** A kept lease of this client on the path if there is one (no request), else a new one from the lock server. */
  async acquire (path: string): Promise<HeldLock> {
    if (this.kept === null) return await this.acquireNew(path)
    // The last use here may still be giving the lease back (a close's release runs after
    // the close returned): it is handed over here, not through the lock server.
    await this.kept.inUseEnded(path, HANDOFF_WAIT_MS)
    const kept = this.kept.take(path) as Holding | undefined
    if (kept !== undefined) return { ...this.use(path, kept), reused: true }
    return await this.kept.asked(path, async () => await this.acquireNew(path))
  }

  /** Gives back what is kept (the client closes); answers once the lock server has it. */
  async giveBackKept (): Promise<void> {
    await this.kept?.giveBackAll()
  }

  private async acquireNew (path: string): Promise<HeldLock> {
    const deadline = Date.now() + this.opts.lockTimeoutMs
    let delay = 5
    for (;;) {
      try {
        // The server holds the request until the key is ours or waitMs has passed.
        const waitMs = Math.max(0, Math.min(deadline - Date.now(), LONG_POLL_MS))
        // A delegation is asked for only while a recall can reach this client.
        const delegate = this.opts.delegations?.ready() === true ? true : undefined
        return this.hold(await this.api.acquire({ path, owner: this.owner, ttlMs: this.opts.leaseMs, waitMs, delegate }))
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

  async withLock<T> (path: string, task: (lease: LockLease) => Promise<T>, opts: { keep?: boolean } = {}): Promise<T> {
    const held = await this.acquire(path)
    try {
      return await task(held.lease)
    } finally {
      await held.release(opts)
    }
  }

  private hold (lease: LockLease): HeldLock {
    let lost = false
    /** `retriesLeft`: tries after this one, RENEW_NOW_RETRY_MS apart, while the lock server does not answer. */
    /** When the lease ends at the latest, as far as this client knows: its grant or last renewal, plus its time to live. */
    let endsAt = Date.now() + lease.ttlMs
    const renew = (retriesLeft = 0): void => {
      if (lost) return
      const sentAt = Date.now()
      this.api.renew(lease.path, leaseCredentialOf(lease)).then(() => {
        endsAt = Math.max(endsAt, sentAt + lease.ttlMs)
      }, (err: unknown) => {
        // A lock server that does not answer may come back before the lease ends: keep
        // trying. A lease it says is gone is lost for good (a store under it is refused, and
        // the client proxy takes a new one: DfsClient.storeWorkingCopy).
        if (!(err instanceof ServerUnavailableError)) {
          lost = true
          clearInterval(renewal)
        } else if (retriesLeft > 0) {
          setTimeout(() => renew(retriesLeft - 1), RENEW_NOW_RETRY_MS).unref()
        }
      })
    }
    const renewal = setInterval(() => renew(), Math.max(50, lease.ttlMs / 3))
    renewal.unref()
    const holding: Holding = {
      lease,
      valid: () => !lost,
      renewNow: () => renew(RENEW_NOW_RETRIES),
      drop: () => {
        lost = true
        clearInterval(renewal)
      },
      giveBack: async () => {
        lost = true
        clearInterval(renewal)
        await this.release(lease, () => endsAt)
      }
    }
    this.kept?.granted(lease.path, holding, lease.delegated === true)
    return this.use(lease.path, holding)
  }

  /**
   * Gives a lease back to the lock server; never throws. When the lock server does not
   * answer, the caller goes on at once and the release is tried again in the background
   * until it lands or the lease has ended (see RELEASE_RETRY_FIRST_MS). A lease that is gone
   * already (expired, or its key removed) needs no release.
   */
  private async release (lease: LockLease, endsAt: () => number): Promise<void> {
    const attempt = async (): Promise<boolean> => {
      try {
        await this.api.release(lease.path, leaseCredentialOf(lease))
        return true
      } catch (err) {
        return !(err instanceof ServerUnavailableError)
      }
    }
    if (await attempt()) return
    const retry = (delay: number): void => {
      if (Date.now() + delay >= endsAt()) return
      setTimeout(() => {
        void attempt().then((done) => { if (!done) retry(Math.min(delay * 2, RELEASE_RETRY_MAX_MS)) })
      }, delay).unref()
    }
    retry(RELEASE_RETRY_FIRST_MS)
  }

  /** One use of a lease: its release ends that use (once), which keeps or gives back the lease. */
  private use (path: string, holding: Holding): HeldLock {
    let released = false
    return {
      lease: holding.lease,
      whenRecalled: (handler) => { if (!released) this.kept?.whenRecalled(path, holding, handler) },
      recallable: () => !released && this.kept !== null && this.kept.holds(path, holding),
      release: async (opts = {}) => {
        if (released) return
        released = true
        const end: UseEnd = { keyGone: opts.keyGone }
        if (this.kept === null) {
          if (end.keyGone === true) holding.drop()
          else await holding.giveBack()
          return
        }
        if (opts.keep === false || end.keyGone === true) await this.kept.giveBack(path, end)
        await this.kept.returned(path, holding, end)
      }
    }
  }
}
