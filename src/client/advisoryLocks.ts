import type { AdvisoryLockApi } from '../shared/api'
import type { AdvisoryKind, AdvisoryLock, AdvisoryLockAnswer, AdvisoryLockRequest, AdvisorySessionAnswer } from '../shared/advisoryLockProtocol'
import { AdvisoryLockTable } from '../shared/advisoryTable'
import type { AdvisoryClaim } from '../shared/advisoryTable'
import { monotonicMs } from '../shared/clock'
import { DEFAULT_LEASE_MS } from '../shared/defaults'
import { InterruptedError, LockedError } from '../shared/errors'
import { DelegatedPath } from './delegatedLocks'
import { retryWhileUnavailable } from './retry'
import type { RetryPolicy } from './retry'
import type { DelegationChannel } from './delegationChannel'

/** Longest single wait on the lock server; a longer wait asks again. */
const LONG_POLL_MS = 5000
/** The session's lease as an answer states it is trusted this much less: the request took time to get there. */
const LEASE_MARGIN_MS = 100

export interface AdvisoryLocksOptions {
  /** This mount's session id on the lock server: its locks live as long as it renews. */
  session: string
  /** The session's lease; undefined takes the lock server's. */
  leaseMs?: number
  log?: (line: string) => void
  /**
   * The lock server's event channel, over which it recalls a delegation: one is asked for
   * and used only while the channel is ready. Without it, every lock is asked of the server.
   */
  channel?: DelegationChannel | null
  /**
   * How long a request waits for a lock server that does not answer (a hard mount: for as
   * long as it takes, as NFS's locks do); without it, it fails at once. A lock or unlock is
   * the same when sent twice, so a try whose answer was lost is safe to send again.
   */
  retry?: RetryPolicy
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
 *
 * Delegation: while no other mount uses a path's locks, the server may hand them to this
 * mount (asked for with a lock request that has no other request on the path beside it), and
 * the mount then answers lock, unlock and test there from its own table with no request,
 * until the server recalls the path (recalled(), from the callback channel, or a renewal's
 * answer) and the mount hands its locks back. A mount whose channel is gone hands every
 * path back; one whose session may have run out (no answer renewed it in time) hands a path
 * back before it answers anything more there; an idle path goes back by itself.
 */
export class AdvisoryLocks {
  /**
   * This mount's locks as the server holds them (not those of delegated paths, which the
   * DelegatedPath holds), under the one session MINE: a close of an owner with none there
   * costs no request, and a restarted lock server gets them back (reclaim).
   */
  private held = new AdvisoryLockTable()
  /** The reclaim under way (see reclaim()): requests to the server wait for it. */
  private reclaiming: Promise<void> | null = null
  /** The check of the session after the channel was lost (see channelLost()), once at a time. */
  private checkingSession: Promise<void> | null = null
  /** The lock server's run as its first answer, then its renewals, said it: a new one is a restart (see renewed()). */
  private serverBoot: string | undefined
  /** Paths whose locks this mount decides itself. */
  private readonly delegated = new Map<string, DelegatedPath>()
  /** Per path, requests to the server under way. */
  private readonly inFlight = new Map<string, number>()
  /** Per path, the request under way that asked for a delegation: others on the path wait for its answer. */
  private readonly asking = new Map<string, Promise<unknown>>()
  private ttlMs: number
  /** Until when (monotonic) the lock server keeps this session alive, as far as its last answer says. */
  private sessionUntil = 0
  private renewal: NodeJS.Timeout | null = null
  /** Fires at close: waits still under way end, rather than be granted to a mount that is gone. */
  private readonly closing = new AbortController()

  constructor (private readonly api: AdvisoryLockApi, private readonly opts: AdvisoryLocksOptions) {
    this.ttlMs = opts.leaseMs ?? DEFAULT_LEASE_MS
    opts.channel?.handle('advisory', {
      recall: async (path) => await this.recalled(path),
      // No recall can reach this mount now: whatever it decides itself goes back.
      lost: () => {
        this.checkingSession ??= this.channelLost().finally(() => { this.checkingSession = null })
      }
    })
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
    // A lock that does not wait is never interrupted: no combined signal for it (one per
    // lock request was a visible share of a sqlite transaction's CPU).
    const stop = signal === undefined || !wait ? this.closing.signal : AbortSignal.any([signal, this.closing.signal])
    const interrupted = (): boolean => stop.aborted
    const claim = claimOf(who, type, range)
    let first = true
    for (;;) {
      const here = await this.decideHere(path, (local) => {
        const conflict = local.lock(claim)
        if (conflict === null || !wait) return { conflict, changed: null }
        // flock(2) on Linux: converting a lock that has to wait gives up the old one first.
        if (first && claim.kind === 'flock') local.unlock(claim.owner, claim.kind)
        // Listening from now: a change before the wait begins is not missed.
        return { conflict, changed: local.changed(stop) }
      })
      if (here === undefined) break
      const { conflict, changed } = here.answer
      if (conflict === null) return
      if (changed === null) throw new LockedError(`${path} has a conflicting ${conflict.kind} ${conflict.type} lock of this mount`, { path })
      first = false
      await changed
      if (interrupted()) throw new InterruptedError(`the wait for a lock on ${path} was interrupted`, { path })
    }
    // A wait asks for a delegation in a try that does not wait: the long polls after it would
    // hold up every other request of this mount on the path.
    if (!wait || type === 'unlock' || this.mayAskDelegation(path)) {
      try {
        await this.send(request)
        return
      } catch (err) {
        if (!wait || type === 'unlock' || !(err instanceof LockedError)) throw err
      }
    }
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
    const here = await this.decideHere(path, (local) => local.test(claimOf(who, type, range)))
    if (here !== undefined) return here.answer === null ? null : { ...here.answer, session: this.opts.session }
    const answer = await this.onServer(path, async () => await this.api.test({
      path, session: this.opts.session, owner: who.owner, kind: who.kind, type, start: range.start, length: range.length
    }))
    return answer.conflict
  }

  /** Gives back all the owner's locks on the path (a close, as POSIX and flock want); no request if it holds none. */
  async unlockAll (path: string, who: LockOwner): Promise<void> {
    const here = await this.decideHere(path, (local) => { if (local.holds(who.owner, who.kind)) local.unlock(who.owner, who.kind) })
    if (here !== undefined) return
    if (!this.held.sessionLocksOn(path, MINE).some((lock) => lock.owner === who.owner && lock.kind === who.kind)) return
    await this.lock(path, who, 'unlock', WHOLE_FILE, false)
  }

  /**
   * The lock server recalls a path (the channel's break, awaited before it is acknowledged):
   * its locks go back to the server, after the answer to a request that asked for the
   * delegation, if one is under way.
   */
  async recalled (path: string): Promise<void> {
    await this.asking.get(path)?.catch(() => {})
    await this.handBack(path)
  }

  /** Paths whose locks this mount decides itself now (for tests and logs). */
  get delegatedPaths (): string[] {
    return [...this.delegated.keys()]
  }

  /** Gives back every lock of this mount at once, and stops renewing (unmount). */
  async close (): Promise<void> {
    this.closing.abort()
    this.stopRenewal()
    for (const local of this.delegated.values()) local.wake()
    if (this.held.paths().length === 0 && this.delegated.size === 0) return
    this.held = new AdvisoryLockTable()
    this.delegated.clear()
    await this.api.end(this.opts.session)
  }

  /**
   * Runs `decide` on the path's delegation if this mount decides its locks now, in the same
   * turn as the check (a hand-back takes its copy of the locks at once: nothing may change
   * them after); undefined: ask the server. Waits for a request that asked for the
   * delegation, and for a hand-back, to finish.
   *
   * A delegation is used only while the session's lease runs as the lock server last stated
   * it: past that, the server may have ended the session and let another mount in, so the
   * path is handed back first (which fails, as any request would, if the server cannot be
   * reached). A channel that is late with a renewal is no reason to stop: the server decides
   * nothing on the path without the hand-back, and recalls through the renewals too; a
   * channel that is gone hands everything back (the channel's `lost`).
   */
  private async decideHere<T> (path: string, decide: (local: DelegatedPath) => T): Promise<{ answer: T } | undefined> {
    for (;;) {
      const asked = this.asking.get(path)
      if (asked !== undefined) {
        await asked.catch(() => {})
        continue
      }
      const local = this.delegated.get(path)
      if (local === undefined) return undefined
      if (local.handingBack === null && !local.handedBackMaybe && monotonicMs() < this.sessionUntil - LEASE_MARGIN_MS) return { answer: decide(local) }
      await this.handBack(path)
    }
  }

  /** Whether a request on the path may ask for its delegation: the channel is up and nothing else of this mount is under way there. */
  private mayAskDelegation (path: string): boolean {
    return this.opts.channel?.ready() === true && (this.inFlight.get(path) ?? 0) === 0 && !this.delegated.has(path)
  }

  /** Hands a delegated path's locks back to the server; the path's operations then ask it again. */
  private async handBack (path: string): Promise<void> {
    const local = this.delegated.get(path)
    if (local === undefined) return
    if (local.handingBack !== null) {
      await local.handingBack
      return
    }
    local.handingBack = (async () => {
      try {
        const locks = local.locks()
        const sentAt = monotonicMs()
        const answer = await this.untilAnswered(path, async () => await this.api.giveBack({ path, session: this.opts.session, ttlMs: this.opts.leaseMs, locks }).catch((err: unknown) => {
          // The server may have taken the locks and ended the delegation all the same.
          local.handedBackMaybe = true
          throw err
        }))
        if (answer.returned) this.sessionUntil = Math.max(this.sessionUntil, sentAt + this.ttlMs)
        if (!answer.returned && locks.length > 0 && !local.handedBackMaybe) {
          this.opts.log?.(`advisory locks of this mount on ${path} are lost: the lock server no longer held its delegation (the session ${this.opts.session} ran out)`)
        }
        this.delegated.delete(path)
        // Also when not returned after a hand-back without an answer: that one may have put them on the server, and an unlock of nothing is harmless.
        if (locks.length > 0) this.held.replace(path, MINE, locks)
        this.keepRenewing()
      } finally {
        local.handingBack = null
        local.wake()
      }
    })()
    await local.handingBack
  }

  /** A call tried again while the lock server does not answer, as opts.retry says; not once the caller hung up (`signal`), or the mount is going away (its locks go with it). */
  private async untilAnswered<T> (path: string, call: () => Promise<T>, signal?: AbortSignal, longestDelayMs?: number): Promise<T> {
    const retry = this.opts.retry
    if (retry === undefined) return await call()
    const what = path === '' ? 'advisory lock session' : `lock request on ${path}`
    return await retryWhileUnavailable(what, retry, call, { retryable: () => signal?.aborted !== true && !this.closing.signal.aborted, longestDelayMs })
  }

  /**
   * A request to the server about the path, counted so that no delegation is asked for beside
   * it; `signal` is the caller's hang-up (an interrupted wait), not a server that is down.
   */
  private async onServer<T> (path: string, call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // After the server restarted, this mount's locks are back on it before anything else is asked.
    if (this.reclaiming !== null) await this.reclaiming
    this.inFlight.set(path, (this.inFlight.get(path) ?? 0) + 1)
    try {
      return await this.untilAnswered(path, call, signal)
    } finally {
      const left = (this.inFlight.get(path) ?? 1) - 1
      if (left > 0) this.inFlight.set(path, left)
      else this.inFlight.delete(path)
    }
  }

  private async send (request: AdvisoryLockRequest, signal?: AbortSignal): Promise<void> {
    const path = request.path
    const sentAt = monotonicMs()
    // An unlock counts here from when it is sent (it is sent until answered): a reclaim after
    // a restart of the server, meanwhile, must not give the lock back to it.
    if (request.type === 'unlock') this.applyHeld(request)
    if (request.waitMs !== undefined || !this.mayAskDelegation(path)) {
      this.record(request, await this.onServer(path, async () => await this.api.lock(request, signal), signal), sentAt)
      return
    }
    // Recorded before `asking` settles: a recall waits for this and then finds the delegation.
    const asked = this.onServer(path, async () => await this.api.lock({ ...request, delegate: true }, signal), signal).then((answer) => this.record(request, answer, sentAt))
    this.asking.set(path, asked)
    try {
      await asked
    } finally {
      if (this.asking.get(path) === asked) this.asking.delete(path)
    }
  }

  /** What the server's answer to a lock request means for this mount's bookkeeping. */
  private record (request: AdvisoryLockRequest, answer: AdvisoryLockAnswer, sentAt: number): void {
    const path = request.path
    this.ttlMs = answer.ttlMs
    // An answer of a restarted server (an unlock sent while it was down) says nothing of what
    // this mount held before: the reclaim that renewed() starts on seeing the new run does.
    const sameRun = this.serverBoot === undefined || answer.boot === this.serverBoot
    this.serverBoot ??= answer.boot
    // The server touched the session at some time after sentAt: it runs out at sentAt + ttlMs at the earliest.
    this.sessionUntil = Math.max(this.sessionUntil, sentAt + answer.ttlMs)
    if (answer.delegated !== undefined) {
      this.held.replace(path, MINE, [])
      const local = new DelegatedPath(path, answer.delegated)
      this.delegated.set(path, local)
      // Granted just as the channel went: the server could not recall it, so it goes back now.
      if (this.opts.channel?.ready() !== true) void this.handBack(path).catch(() => {})
      this.keepRenewing()
      return
    }
    this.applyHeld(request)
    if (answer.held === 0 && sameRun) this.held = new AdvisoryLockTable()
    this.keepRenewing()
  }

  /** A lock request as this mount's table of its locks takes it: the owner's bytes set to its type (unlock: to none). */
  private applyHeld (request: AdvisoryLockRequest): void {
    this.held.set(request.path, { session: MINE, ...claimOf(request, request.type, { start: request.start ?? 0, length: request.length ?? 0 }) })
  }

  /** The session is renewed while it holds locks on the server or decides some path itself: a delegation lives as long as the session. */
  private keepRenewing (): void {
    if (this.held.paths().length > 0 || this.delegated.size > 0) this.startRenewal()
    else this.stopRenewal()
  }

  private logHandBack (path: string, err: unknown): void {
    this.opts.log?.(`handing back the advisory locks on ${path} failed (the lock server recalls them again, or they go with the session): ${err instanceof Error ? err.message : String(err)}`)
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
      const sentAt = monotonicMs()
      await this.renewed(await this.api.renew({ session: this.opts.session, ttlMs: this.opts.leaseMs }), sentAt)
    } catch (err) {
      // An unreachable lock server may answer before the lease ends: keep renewing.
      this.opts.log?.(`renewing the advisory lock session failed: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  /** What a renewal's answer means: recalls it carries, idle delegations to hand back, or a session the server forgot (reclaim). */
  private async renewed (answer: AdvisorySessionAnswer, sentAt: number): Promise<void> {
    // A server that restarted may know the session all the same: an unlock of this mount's,
    // sent while it was down, made it anew. Its run tells.
    const restarted = this.serverBoot !== undefined && answer.boot !== this.serverBoot
    this.serverBoot = answer.boot
    if (!answer.known || restarted) {
      await this.reclaim()
      return
    }
    this.sessionUntil = Math.max(this.sessionUntil, sentAt + answer.ttlMs)
    // The channel may have missed a recall (it was cut off, or this mount was too slow for the callback lease).
    for (const path of answer.recalled ?? []) this.handBack(path).catch((err: unknown) => this.logHandBack(path, err))
    // A path nobody has locked for a whole renewal period goes back: the session need not be
    // renewed for ever, nor the server keep a delegation per file this mount ever locked.
    for (const [path, local] of this.delegated) if (local.idle()) this.handBack(path).catch((err: unknown) => this.logHandBack(path, err))
    if (answer.held > 0 || this.delegated.size > 0) return
    this.held = new AdvisoryLockTable()
    this.keepRenewing()
  }

  /**
   * The channel to the lock server was lost, so no recall can reach this mount: every
   * delegated path goes back. First, as soon as the server answers, this mount asks whether
   * it still knows its session: if not, the server restarted, and everything this mount
   * holds is reclaimed in its grace. Only a mount that holds something, or whose session the
   * server may still keep (it is then on the server's record of holders, and a restarted
   * server's grace waits until this mount says it is done), asks.
   */
  private async channelLost (): Promise<void> {
    if (this.held.paths().length === 0 && this.delegated.size === 0 && monotonicMs() >= this.sessionUntil) return
    let answer: AdvisorySessionAnswer
    const sentAt = monotonicMs()
    try {
      answer = await this.untilAnswered('', async () => await this.api.renew({ session: this.opts.session, ttlMs: this.opts.leaseMs }), undefined, SESSION_CHECK_RETRY_MS)
    } catch (err) {
      this.opts.log?.(`asking the lock server about the advisory lock session failed: ${err instanceof Error ? err.message : String(err)}`)
      return
    }
    if (answer.known) for (const path of this.delegated.keys()) this.handBack(path).catch((err: unknown) => this.logHandBack(path, err))
    await this.renewed(answer, sentAt)
  }

  /**
   * The lock server no longer knows this session: it restarted (or the session ran out).
   * Every lock this mount holds goes back to it, a delegated path's by its hand-back and the
   * others the same way (POST /advisory/return): a restarted server takes them in its grace
   * (ADVISORY_GRACE_MS), before it grants anyone else a lock. What it does not take is lost,
   * and logged. The mount's requests to the server wait until this is done.
   */
  private async reclaim (): Promise<void> {
    if (this.reclaiming !== null) {
      await this.reclaiming
      return
    }
    this.reclaiming = (async () => {
      await Promise.all([...this.delegated.keys()].map(async (path) => await this.handBack(path).catch((err: unknown) => this.logHandBack(path, err))))
      const lost: string[] = []
      for (const path of this.held.paths()) {
        const locks = this.held.sessionLocksOn(path, MINE).map((lock) => ({ owner: lock.owner, kind: lock.kind, type: lock.type, start: lock.start, length: lock.length }))
        const answer = await this.untilAnswered(path, async () => await this.api.giveBack({ path, session: this.opts.session, ttlMs: this.opts.leaseMs, locks })).catch(() => null)
        if (answer?.returned === true) continue
        lost.push(path)
        this.held.replace(path, MINE, [])
      }
      if (lost.length > 0) {
        this.opts.log?.(`advisory locks of this mount on ${lost.join(', ')} are lost: the lock server no longer knew session ${this.opts.session} (its lease ran out, or the server restarted and its grace was over)`)
      }
      // Done: the server's grace need not wait for this mount any longer (nor, once all are done, at all).
      const boot = this.serverBoot
      if (boot !== undefined) {
        await this.untilAnswered('', async () => await this.api.reclaimed({ session: this.opts.session, boot })).catch((err: unknown) => {
          this.opts.log?.(`telling the lock server this mount's locks are back failed (its grace runs its full time): ${err instanceof Error ? err.message : String(err)}`)
        })
      }
      this.keepRenewing()
    })().finally(() => { this.reclaiming = null })
    await this.reclaiming
  }
}

/** The one session of the mount's own table of its locks (AdvisoryLocks.held). */
const MINE = 'this-mount'

/** After the channel was lost, the lock server is asked about the session at least this often until it answers: its grace after a restart is short. */
const SESSION_CHECK_RETRY_MS = 300

/** The bytes a lock covers as the table keeps them (flock: the whole file). */
function claimOf (who: LockOwner, type: AdvisoryClaim['type'], range: ByteRange): Omit<AdvisoryClaim, 'session'> {
  if (who.kind === 'flock') return { owner: who.owner, kind: who.kind, type, start: 0, end: Infinity }
  return { owner: who.owner, kind: who.kind, type, start: range.start, end: range.length === 0 ? Infinity : range.start + range.length - 1 }
}
