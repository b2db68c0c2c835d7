import crypto from 'node:crypto'
import type { Express } from 'express'
import { DEFAULT_LEASE_MS } from '../../src/shared/defaults'
import { LockRoutes } from '../../src/shared/protocol'
import type { CheckAnswer, CreateKeysAnswer, DeleteKeyAnswer, ReleaseAnswer, RemoveKeysAnswer } from '../../src/shared/protocol'
import { finishApp, healthAnswer, jsonBody, listen, newApp, silentLogger } from '../common/http'
import { bodyOf, queryOf } from '../common/input'
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

  const app = newApp()
  app.use(jsonBody)

  // Changes when this server restarts (with no keys): file servers then create theirs again.
  const bootId = crypto.randomUUID()

  app.get(LockRoutes.health, (_req, res) => {
    res.json(healthAnswer('lock', { bootId, leaseMs: defaultLeaseMs }))
  })

  app.post(LockRoutes.keys, (req, res) => {
    const answer: CreateKeysAnswer = { created: table.createKeys(bodyOf(req).paths('paths')) }
    res.json(answer)
  })

  app.delete(LockRoutes.keys, (req, res) => {
    const path = queryOf(req).path()
    table.deleteKey(path)
    waits.wake(path)
    const answer: DeleteKeyAnswer = { path, deleted: true }
    res.json(answer)
  })

  // Many at once, for a folder that moved: its files' keys go to their new paths.
  app.post(LockRoutes.removeKeys, (req, res) => {
    const removed = bodyOf(req).paths('paths')
    const answer: RemoveKeysAnswer = { removed: table.deleteKeys(removed) }
    for (const path of removed) waits.wake(path)
    res.json(answer)
  })

  app.post(LockRoutes.acquire, async (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const owner = body.string('owner', 256)
    const ttlMs = body.optionalInt('ttlMs', { min: 1, max: maxLeaseMs }) ?? defaultLeaseMs
    const waitMs = body.optionalInt('waitMs', { min: 0, max: MAX_WAIT_MS }) ?? 0
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
    const body = bodyOf(req)
    res.json(table.renew(body.path(), body.int('token')))
  })

  app.post(LockRoutes.release, (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    table.release(path, body.int('token'))
    waits.wake(path)
    const answer: ReleaseAnswer = { path, released: true }
    res.json(answer)
  })

  app.get(LockRoutes.check, (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const answer: CheckAnswer = { path, valid: true, expiresInMs: table.check(path, query.int('token')) }
    res.json(answer)
  })

  app.get(LockRoutes.status, (req, res) => {
    res.json(table.status(queryOf(req).path()))
  })

  finishApp(app, log)
  return app
}

export async function startLockServer (opts: LockServerOptions & { port: number, host?: string }): Promise<RunningServer> {
  return await listen(createLockServer(opts), opts.port, opts.host)
}
