import crypto from 'node:crypto'
import type { Express, Request, Response } from 'express'
import { AdvisoryRoutes, MAX_ADVISORY_WAIT_MS } from '../../src/shared/advisoryLockProtocol'
import type {
  AdvisoryEndAnswer, AdvisoryHeldLock, AdvisoryKind, AdvisoryLockAnswer, AdvisoryLockedDetails, AdvisoryReclaimedAnswer, AdvisoryReturnAnswer,
  AdvisorySessionAnswer, AdvisoryStatus, AdvisoryTestAnswer, AdvisoryType
} from '../../src/shared/advisoryLockProtocol'
import { monotonicMs } from '../../src/shared/clock'
import { BadRequestError, LockedError, ServerUnavailableError } from '../../src/shared/errors'
import { Headers } from '../../src/shared/protocol'
import { callerOf } from '../common/auth'
import type { RouteRole } from '../common/auth'
import { bodyOf, Fields, queryOf } from '../common/input'
import { AdvisoryLockTable } from '../../src/shared/advisoryTable'
import type { AdvisoryClaim } from '../../src/shared/advisoryTable'
import { AdvisoryDelegations } from './advisoryDelegations'
import type { Delegations } from './delegations'
import type { LockStore } from './lockStore'
import { watchCaller } from './callerGone'
import { Parking } from './parking'

/** A parked request asks again at least this often (a holder's lease may have run out). */
const REASK_MS = 400
/**
 * How long any request waits for a delegation's holder to hand the path back, even one that
 * may not wait (waitMs 0): a holder that answers does so in a round trip. Past it, a lock is
 * refused (423, `delegated`) and a test or a status answers what it can; under the transport's
 * timeout, so the caller hears that rather than nothing.
 */
const RECALL_WAIT_MS = 2_000

/** Taking, renewing and ending locks needs a write credential (a reader must not block writers); looking, a read one. */
export const ADVISORY_ROUTE_ROLES: RouteRole[] = [
  ['post', AdvisoryRoutes.lock, 'write'],
  ['post', AdvisoryRoutes.test, 'read'],
  ['post', AdvisoryRoutes.renew, 'write'],
  ['post', AdvisoryRoutes.end, 'write'],
  ['post', AdvisoryRoutes.return, 'write'],
  ['post', AdvisoryRoutes.reclaimed, 'write'],
  ['get', AdvisoryRoutes.status, 'read']
]

/**
 * The session as the table knows it: a mount names its session, and the credential's subject
 * scopes it, so one client cannot renew, end or take over another subject's session by
 * sending its id. An --insecure server takes the id as sent.
 */
function scoped (res: Response, session: string): string {
  const caller = callerOf(res)
  return caller.open ? session : `${caller.subject}/${session}`
}

export interface AdvisoryRouteOptions {
  defaultLeaseMs: number
  maxLeaseMs: number
  /** The lock server's delegations (its event channels): without them, no path is ever delegated. */
  channel?: Pick<Delegations, 'grant' | 'recall'>
  /**
   * A restarted server's grace (ms from now): until it ends, locks held before the restart
   * are reclaimed (a hand-back is taken whether or not a delegation is known), and no lock is
   * granted nor tested, so nobody walks into what a program still believes it holds. It ends
   * sooner once every session on record as a holder has said it is done (POST
   * /advisory/reclaimed), and there is none when none is on record. 0: none.
   */
  graceMs?: number
  /** The record of sessions that may hold locks, kept over restarts (the lock store): whose reclaims a grace waits for. */
  holders?: Pick<LockStore, 'advisoryHolders' | 'addAdvisoryHolder' | 'dropAdvisoryHolders'>
}

/**
 * The advisory lock routes (docs/protocol.md, "Advisory locks"): fcntl and flock locks that
 * mounts hold for their programs. A request that conflicts may wait on the server (long
 * poll) and is answered as soon as the conflicting lock is given back or its session runs
 * out; one whose caller hung up (a program interrupted while it waited) is never granted.
 */
export function addAdvisoryRoutes (app: Express, opts: AdvisoryRouteOptions): { stop: () => void } {
  const table = new AdvisoryLockTable()
  const parking = new Parking()
  const delegations = new AdvisoryDelegations(opts.channel)
  /** Per path, how many requests of each session wait there: a path others wait on is not delegated. */
  const waiting = new Map<string, Map<string, number>>()
  /** Closing: waiters are answered "locked" at once, so the server can finish. */
  let stopped = false
  const graceEnds = monotonicMs() + (opts.graceMs ?? 0)
  const holders = opts.holders
  /** The holders of the last run that have not said they are done reclaiming: the grace waits for these only. */
  const awaited = new Set(opts.graceMs !== undefined && opts.graceMs > 0 ? holders?.advisoryHolders() ?? [] : [])
  const graceLeftMs = (): number => {
    if (awaited.size === 0) return 0
    const left = graceEnds - monotonicMs()
    if (left > 0) return left
    // Over: those that did not come back are gone (or forgot), and their record goes (see expire()).
    awaited.clear()
    return 0
  }
  /** This run of the server, in the answers: a mount that sees it change reclaims its locks, even if a request of its own made its session anew meanwhile. */
  const boot = crypto.randomBytes(6).toString('base64url')
  /** During the grace, a request that could grant or tell of a lock is refused with 503: the mount asks again (a hard mount waits). */
  const refuseInGrace = (path: string): void => {
    const left = graceLeftMs()
    if (left <= 0) return
    throw new ServerUnavailableError(`the lock server restarted: the mounts are reclaiming their locks for ${Math.ceil(left)} ms more; ask again then`, { path, retryAfterMs: Math.ceil(left) })
  }

  /** Drops the sessions that ran out, and wakes whoever waited on their locks or their delegations. */
  const expire = (): void => {
    for (const path of table.expire()) parking.wake(path)
    for (const path of delegations.dropUnless((session) => table.alive(session))) parking.wake(path)
    if (holders !== undefined) {
      graceLeftMs()
      const gone = [...holders.advisoryHolders()].filter((session) => !table.alive(session) && !awaited.has(session))
      if (gone.length > 0) holders.dropAdvisoryHolders(gone)
    }
  }
  const parkOn = async (path: string, session: string, ms: number): Promise<void> => {
    const counts = waiting.get(path) ?? new Map<string, number>()
    waiting.set(path, counts)
    counts.set(session, (counts.get(session) ?? 0) + 1)
    try {
      await parking.park(path, ms)
    } finally {
      const left = (counts.get(session) ?? 1) - 1
      if (left > 0) counts.set(session, left)
      else counts.delete(session)
      if (counts.size === 0 && waiting.get(path) === counts) waiting.delete(path)
    }
  }
  const othersWait = (path: string, session: string): boolean => [...(waiting.get(path)?.keys() ?? [])].some((s) => s !== session)
  /**
   * Recalls the path's delegation and waits (parked) for the hand-back, until `deadline`:
   * whether the path is free of delegations now. Call expire() first.
   */
  const undelegated = async (path: string, session: string, deadline: number): Promise<boolean> => {
    for (;;) {
      const holder = delegations.holderOf(path)
      if (holder === undefined) return true
      const left = deadline - Date.now()
      if (left <= 0 || stopped) return false
      delegations.recall(path)
      await parkOn(path, session, Math.min(left, REASK_MS, table.expiresInMs(holder) + 1))
      expire()
    }
  }
  /** Whether the caller may be delegated the path: it asked, names its own client id, and nobody else holds or waits. */
  const delegable = (req: Request, fields: Fields, path: string, session: string): boolean => {
    if (!fields.flag('delegate')) return false
    const clientId = req.get(Headers.clientId)
    if (clientId === undefined || clientId !== fields.identifier('session')) return false
    if (table.othersHold(path, session) || othersWait(path, session)) return false
    return delegations.grant(req, path, session)
  }
  const sessionOf = (fields: Fields, res: Response): { session: string, ttlMs: number } => ({
    session: scoped(res, fields.identifier('session')),
    ttlMs: fields.optionalInt('ttlMs', { min: 1, max: opts.maxLeaseMs }) ?? opts.defaultLeaseMs
  })

  app.post(AdvisoryRoutes.lock, async (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const { session, ttlMs } = sessionOf(body, res)
    const claim = claimOf(body, session)
    const waitMs = body.optionalInt('waitMs', { min: 0, max: MAX_ADVISORY_WAIT_MS }) ?? 0
    if (claim.type !== 'unlock') refuseInGrace(path)
    const { gone } = watchCaller(req, res)
    const deadline = Date.now() + waitMs
    const recallDeadline = Date.now() + Math.max(waitMs, RECALL_WAIT_MS)
    let first = true
    for (;;) {
      // Nothing is granted to a caller that gave up: it would hold a lock it never learns of.
      if (await gone()) {
        res.destroy()
        return
      }
      expire()
      const holder = delegations.holderOf(path)
      if (holder !== undefined) {
        // The holder's locks are not in the table yet: nothing can be decided before it hands them back.
        if (await undelegated(path, session, recallDeadline)) continue
        const details: AdvisoryLockedDetails = { path, holder, delegated: true, retryAfterMs: table.expiresInMs(holder) }
        throw new LockedError(`${path}'s locks are delegated to mount ${holder}, which has not handed them back`, { ...details })
      }
      // From here to the grant nothing awaits: no other request runs in between.
      table.touch(session, ttlMs)
      const conflict = table.conflict(path, claim)
      if (conflict === null) {
        // On record before it holds anything (a lock, or a delegation that lets it take locks
        // itself): a restart of this server then waits for its reclaim.
        if (claim.type !== 'unlock' || body.flag('delegate')) holders?.addAdvisoryHolder(session)
        table.set(path, claim)
        // A lock given back, or one made shared, may let waiters in.
        parking.wake(path)
        const answer: AdvisoryLockAnswer = { path, granted: true, held: table.held(session), ttlMs, boot }
        if (delegable(req, body, path, session)) answer.delegated = table.sessionLocksOn(path, session)
        res.json(answer)
        return
      }
      if (first && claim.kind === 'flock') {
        // flock(2) on Linux: converting a lock that has to wait (or fails) gives up the old one first.
        table.set(path, { ...claim, type: 'unlock' })
        parking.wake(path)
      }
      first = false
      const retryAfterMs = table.expiresInMs(conflict.session)
      const left = deadline - Date.now()
      if (left <= 0 || stopped) {
        const details: AdvisoryLockedDetails = { path, holder: conflict.session, conflict, retryAfterMs }
        throw new LockedError(`${path} has a conflicting ${conflict.kind} ${conflict.type} lock of mount ${conflict.session}`, { ...details })
      }
      await parkOn(path, session, Math.min(left, REASK_MS, retryAfterMs + 1))
    }
  })

  app.post(AdvisoryRoutes.test, async (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const session = scoped(res, body.identifier('session'))
    const claim = claimOf(body, session)
    refuseInGrace(path)
    expire()
    if (!await undelegated(path, session, Date.now() + RECALL_WAIT_MS)) {
      // Whether the holder's locks conflict is not known: saying "none" could let a program in.
      const holder = delegations.holderOf(path) ?? ''
      const details: AdvisoryLockedDetails = { path, holder, delegated: true, retryAfterMs: table.expiresInMs(holder) }
      throw new LockedError(`${path}'s locks are delegated to mount ${holder}, which has not handed them back`, { ...details })
    }
    const answer: AdvisoryTestAnswer = { path, conflict: table.conflict(path, claim) }
    res.json(answer)
  })

  app.post(AdvisoryRoutes.return, (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const { session, ttlMs } = sessionOf(body, res)
    const locks = heldLocksOf(body)
    expire()
    // In the grace, a mount reclaims what it held before the restart, delegated or not: its
    // locks were consistent with everyone else's then, and nothing was granted since. One
    // that conflicts all the same (a session that ran out meanwhile) is refused.
    const reclaimed = graceLeftMs() > 0 && !locks.some((lock) => table.conflict(path, { ...lock, session, end: endOf(lock) }) !== null)
    const returned = delegations.end(path, session) || reclaimed
    if (returned) {
      if (locks.length > 0) holders?.addAdvisoryHolder(session)
      table.touch(session, ttlMs)
      table.replace(path, session, locks)
      parking.wake(path)
    }
    const answer: AdvisoryReturnAnswer = { path, returned, held: table.held(session) }
    res.json(answer)
  })

  app.post(AdvisoryRoutes.renew, (req, res) => {
    const body = bodyOf(req)
    const { session, ttlMs } = sessionOf(body, res)
    expire()
    const known = table.renew(session, ttlMs)
    const answer: AdvisorySessionAnswer = { session: body.identifier('session'), known, held: known ? table.held(session) : 0, ttlMs, boot }
    const recalled = delegations.recalledFrom(session)
    if (recalled.length > 0) answer.recalled = recalled
    res.json(answer)
  })

  // A mount has handed back all it held before this run: the grace need not wait for it.
  app.post(AdvisoryRoutes.reclaimed, (req, res) => {
    const body = bodyOf(req)
    const sent = body.identifier('session')
    const session = scoped(res, sent)
    const counted = body.string('boot') === boot
    if (counted) awaited.delete(session)
    const answer: AdvisoryReclaimedAnswer = { session: sent, counted, graceLeftMs: Math.ceil(graceLeftMs()) }
    res.json(answer)
  })

  app.post(AdvisoryRoutes.end, (req, res) => {
    const sent = bodyOf(req).identifier('session')
    const session = scoped(res, sent)
    awaited.delete(session)
    const released = table.held(session)
    for (const path of table.end(session)) parking.wake(path)
    expire()
    const answer: AdvisoryEndAnswer = { session: sent, released }
    res.json(answer)
  })

  app.get(AdvisoryRoutes.status, async (req, res) => {
    const path = queryOf(req).path()
    expire()
    await undelegated(path, '', Date.now() + RECALL_WAIT_MS)
    const answer: AdvisoryStatus = { path, locks: table.locksOn(path) }
    const holder = delegations.holderOf(path)
    if (holder !== undefined) answer.delegatedTo = holder
    res.json(answer)
  })

  return {
    stop: () => {
      stopped = true
      parking.wakeAll()
    }
  }
}

const KINDS: readonly AdvisoryKind[] = ['posix', 'flock']
const TYPES: readonly AdvisoryType[] = ['read', 'write', 'unlock']

/** The owner, kind, type and bytes a request names; flock locks always cover the whole file. */
function claimOf (body: Fields, session: string): AdvisoryClaim {
  const owner = body.string('owner', 64)
  const kind = oneOf(body, 'kind', KINDS)
  const type = oneOf(body, 'type', TYPES)
  if (kind === 'flock') return { session, owner, kind, type, start: 0, end: Infinity }
  const start = body.optionalInt('start', { min: 0 }) ?? 0
  const length = body.optionalInt('length', { min: 0 }) ?? 0
  return { session, owner, kind, type, start, end: length === 0 ? Infinity : start + length - 1 }
}

/** Most locks a hand-back may carry (one mount's locks on one file). */
const MAX_RETURNED_LOCKS = 10_000

/** The locks of a hand-back (POST /advisory/return), each checked as a lock request's fields are. */
function heldLocksOf (body: Fields): AdvisoryHeldLock[] {
  const raw = body.raw('locks')
  if (!Array.isArray(raw) || raw.length > MAX_RETURNED_LOCKS) throw new BadRequestError(`locks must be a list of at most ${MAX_RETURNED_LOCKS} locks`)
  return raw.map((item: unknown) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new BadRequestError('each of locks must be an object')
    const fields = new Fields(item as Record<string, unknown>, 'body')
    const type = oneOf(fields, 'type', TYPES)
    if (type === 'unlock') throw new BadRequestError('a returned lock is read or write', { type })
    const claim = claimOf(fields, '')
    return { owner: claim.owner, kind: claim.kind, type, start: claim.start, length: claim.end === Infinity ? 0 : claim.end - claim.start + 1 }
  })
}

/** The last byte a lock covers, as the table keeps it (length 0: to the end of the file, however far). */
function endOf (lock: AdvisoryHeldLock): number {
  return lock.length === 0 ? Infinity : lock.start + lock.length - 1
}

function oneOf<T extends string> (body: Fields, name: string, allowed: readonly T[]): T {
  const value = body.raw(name)
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new BadRequestError(`${name} must be one of ${allowed.join(', ')}`, { [name]: String(value).slice(0, 16) })
  }
  return value as T
}
