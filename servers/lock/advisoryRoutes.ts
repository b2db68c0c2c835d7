import type { Express, Response } from 'express'
import { AdvisoryRoutes, MAX_ADVISORY_WAIT_MS } from '../../src/shared/advisoryLockProtocol'
import type {
  AdvisoryEndAnswer, AdvisoryKind, AdvisoryLockAnswer, AdvisoryLockedDetails, AdvisorySessionAnswer, AdvisoryStatus,
  AdvisoryTestAnswer, AdvisoryType
} from '../../src/shared/advisoryLockProtocol'
import { BadRequestError, LockedError } from '../../src/shared/errors'
import { callerOf } from '../common/auth'
import type { RouteRole } from '../common/auth'
import type { Fields } from '../common/input'
import { bodyOf, queryOf } from '../common/input'
import { AdvisoryLockTable } from './advisoryTable'
import type { AdvisoryClaim } from './advisoryTable'
import { watchCaller } from './callerGone'
import { Parking } from './parking'

/** A parked request asks again at least this often (a holder's lease may have run out). */
const REASK_MS = 400

/** Taking, renewing and ending locks needs a write credential (a reader must not block writers); looking, a read one. */
export const ADVISORY_ROUTE_ROLES: RouteRole[] = [
  ['post', AdvisoryRoutes.lock, 'write'],
  ['post', AdvisoryRoutes.test, 'read'],
  ['post', AdvisoryRoutes.renew, 'write'],
  ['post', AdvisoryRoutes.end, 'write'],
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
  /** Closing: waiters are answered "locked" at once, so the server can finish. */
  let stopped = false

  /** Drops the sessions that ran out, and wakes whoever waited on their locks. */
  const expire = (): void => {
    for (const path of table.expire()) parking.wake(path)
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
    const { gone } = watchCaller(req, res)
    const deadline = Date.now() + waitMs
    let first = true
    for (;;) {
      // Nothing is granted to a caller that gave up: it would hold a lock it never learns of.
      if (await gone()) {
        res.destroy()
        return
      }
      // From here to the grant nothing awaits: no other request runs in between.
      expire()
      table.touch(session, ttlMs)
      const conflict = table.conflict(path, claim)
      if (conflict === null) {
        table.set(path, claim)
        // A lock given back, or one made shared, may let waiters in.
        parking.wake(path)
        const answer: AdvisoryLockAnswer = { path, granted: true, held: table.held(session), ttlMs }
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
      await parking.park(path, Math.min(left, REASK_MS, retryAfterMs + 1))
    }
  })

  app.post(AdvisoryRoutes.test, (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const session = scoped(res, body.identifier('session'))
    expire()
    const answer: AdvisoryTestAnswer = { path, conflict: table.conflict(path, claimOf(body, session)) }
    res.json(answer)
  })

  app.post(AdvisoryRoutes.renew, (req, res) => {
    const body = bodyOf(req)
    const { session, ttlMs } = sessionOf(body, res)
    expire()
    const known = table.renew(session, ttlMs)
    const answer: AdvisorySessionAnswer = { session: body.identifier('session'), known, held: known ? table.held(session) : 0, ttlMs }
    res.json(answer)
  })

  app.post(AdvisoryRoutes.end, (req, res) => {
    const sent = bodyOf(req).identifier('session')
    const session = scoped(res, sent)
    const released = table.held(session)
    for (const path of table.end(session)) parking.wake(path)
    const answer: AdvisoryEndAnswer = { session: sent, released }
    res.json(answer)
  })

  app.get(AdvisoryRoutes.status, (req, res) => {
    const path = queryOf(req).path()
    expire()
    const answer: AdvisoryStatus = { path, locks: table.locksOn(path) }
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

function oneOf<T extends string> (body: Fields, name: string, allowed: readonly T[]): T {
  const value = body.raw(name)
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new BadRequestError(`${name} must be one of ${allowed.join(', ')}`, { [name]: String(value).slice(0, 16) })
  }
  return value as T
}
