import crypto from 'node:crypto'
import express from 'express'
import type { Express, Request } from 'express'
import { BadRequestError } from '../../src/shared/errors'
import { normalizePath } from '../../src/shared/paths'
import { DEFAULT_LEASE_MS } from '../../src/shared/defaults'
import { LockRoutes } from '../../src/shared/protocol'
import type { CheckAnswer, CreateKeysAnswer, ReleaseAnswer, RemoveKeysAnswer } from '../../src/shared/protocol'
import { finishApp, jsonBody, listen, pathParam, silentLogger } from '../common/http'
import type { Logger, RunningServer } from '../common/http'
import { LockTable } from './lockTable'
import { LockWaits } from './lockWaits'

/** Longest an acquire may wait on the server for a key (waitMs). */
const MAX_WAIT_MS = 30_000

export interface LockServerOptions {
  /** Lease length when the client names none (default 30 s). */
  leaseMs?: number
  /** Longest lease a client may ask for. */
  maxLeaseMs?: number
  log?: Logger
}

export function createLockServer (opts: LockServerOptions = {}): Express {
  const log = opts.log ?? silentLogger
  const defaultLeaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS
  const maxLeaseMs = opts.maxLeaseMs ?? 10 * 60_000
  const table = new LockTable()
  const waits = new LockWaits(table)

  const app = express()
  app.disable('x-powered-by')
  app.use(jsonBody)

  // Changes when this server restarts (with no keys): file servers then create theirs again.
  const bootId = crypto.randomUUID()

  app.get(LockRoutes.health, (_req, res) => {
    res.json({ service: 'lock', bootId, leaseMs: defaultLeaseMs })
  })

  app.post(LockRoutes.keys, (req, res) => {
    const paths = req.body?.paths
    if (!Array.isArray(paths)) throw new BadRequestError('paths must be a list')
    const answer: CreateKeysAnswer = { created: table.createKeys(paths.map(normalizePath)) }
    res.json(answer)
  })

  app.delete(LockRoutes.keys, (req, res) => {
    const path = pathParam(req)
    table.deleteKey(path)
    waits.wake(path)
    res.json({ path, deleted: true })
  })

  // Many at once, for a folder that moved: its files' keys go to their new paths.
  app.post(LockRoutes.removeKeys, (req, res) => {
    const paths = req.body?.paths
    if (!Array.isArray(paths)) throw new BadRequestError('paths must be a list')
    const removed = paths.map(normalizePath)
    const answer: RemoveKeysAnswer = { removed: table.deleteKeys(removed) }
    for (const path of removed) waits.wake(path)
    res.json(answer)
  })

  app.post(LockRoutes.acquire, async (req, res) => {
    const path = normalizePath(req.body?.path)
    const owner = req.body?.owner
    if (typeof owner !== 'string' || owner.length === 0 || owner.length > 256) throw new BadRequestError('owner must be a non-empty string')
    const ttlMs = req.body?.ttlMs === undefined ? defaultLeaseMs : Number(req.body.ttlMs)
    if (!Number.isInteger(ttlMs) || ttlMs <= 0 || ttlMs > maxLeaseMs) throw new BadRequestError(`ttlMs must be a whole number from 1 to ${maxLeaseMs}`)
    const waitMs = req.body?.waitMs === undefined ? 0 : Number(req.body.waitMs)
    if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > MAX_WAIT_MS) throw new BadRequestError(`waitMs must be a whole number from 0 to ${MAX_WAIT_MS}`)
    let gone = false
    res.on('close', () => { gone = !res.writableFinished })
    const lease = await waits.acquire(path, owner, ttlMs, waitMs, () => gone)
    if (gone) {
      // Granted to a caller that stopped waiting: nobody would ever release it.
      table.release(path, lease.token)
      waits.wake(path)
      return
    }
    res.json(lease)
  })

  app.post(LockRoutes.renew, (req, res) => {
    res.json(table.renew(normalizePath(req.body?.path), tokenOf(req.body?.token)))
  })

  app.post(LockRoutes.release, (req, res) => {
    const path = normalizePath(req.body?.path)
    table.release(path, tokenOf(req.body?.token))
    waits.wake(path)
    const answer: ReleaseAnswer = { path, released: true }
    res.json(answer)
  })

  app.get(LockRoutes.check, (req: Request, res) => {
    const path = pathParam(req)
    table.check(path, tokenOf(req.query.token))
    const answer: CheckAnswer = { path, valid: true }
    res.json(answer)
  })

  app.get(LockRoutes.status, (req, res) => {
    res.json(table.status(pathParam(req)))
  })

  finishApp(app, log)
  return app
}

export async function startLockServer (opts: LockServerOptions & { port: number, host?: string }): Promise<RunningServer> {
  return await listen(createLockServer(opts), opts.port, opts.host)
}

function tokenOf (value: unknown): number {
  const token = Number(value)
  if (value === undefined || value === '' || !Number.isSafeInteger(token)) throw new BadRequestError('token must be a whole number')
  return token
}
