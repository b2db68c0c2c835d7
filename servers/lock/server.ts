import crypto from 'node:crypto'
import type { Express } from 'express'
import { DEFAULT_LEASE_MS } from '../../src/shared/defaults'
import { LockRoutes } from '../../src/shared/protocol'
import type { CheckAnswer, CreateKeysAnswer, DeleteKeyAnswer, HeldUnderAnswer, ReleaseAnswer, RemoveKeysAnswer } from '../../src/shared/protocol'
import { finishApp, healthAnswer, jsonBody, listen, newApp, silentLogger } from '../common/http'
import { bodyOf, queryOf } from '../common/input'
import type { Logger, RunningServer } from '../common/http'
import { JournalLockStore } from './journalStore'
import { MemoryLockStore } from './lockStore'
import type { LockStore } from './lockStore'
import { LockTable } from './lockTable'
import { CallerGoneError, LockWaits } from './lockWaits'

/** Longest an acquire may wait on the server for a key (waitMs). */
const MAX_WAIT_MS = 30_000

export interface LockServerOptions {
  /** Lease length when the client names none (default 30 s). */
  leaseMs?: number
  /** Longest lease a client may ask for. */
  maxLeaseMs?: number
  log?: Logger
  /**
   * Folder of the journal that keeps keys, leases and the fencing counter over restarts
   * (journalStore.ts). Without one, all of it is in memory and lost on a restart.
   */
  stateDir?: string
}

/** Lets the event loop run once through its I/O, twice to be sure it polled after now. */
async function afterPendingIo (): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/** `store` must be loaded already (startLockServer does that). */
export function createLockServer (opts: LockServerOptions & { store?: LockStore } = {}): Express {
  const log = opts.log ?? silentLogger
  const defaultLeaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS
  const maxLeaseMs = opts.maxLeaseMs ?? 10 * 60_000
  const table = new LockTable(opts.store ?? new MemoryLockStore())
  const waits = new LockWaits(table)

  const app = newApp()
  app.use(jsonBody)

  // Changes when this server restarts: file servers then create their keys again, which
  // the keys kept in the state folder make harmless (a key that exists is left alone).
  const bootId = crypto.randomUUID()

  app.get(LockRoutes.health, (_req, res) => {
    res.json(healthAnswer('lock', { bootId, leaseMs: defaultLeaseMs }))
  })

  app.post(LockRoutes.keys, async (req, res) => {
    const answer: CreateKeysAnswer = { created: await table.createKeys(bodyOf(req).paths('paths')) }
    res.json(answer)
  })

  app.delete(LockRoutes.keys, async (req, res) => {
    const path = queryOf(req).path()
    await table.deleteKey(path)
    waits.wake(path)
    const answer: DeleteKeyAnswer = { path, deleted: true }
    res.json(answer)
  })

  // Many at once, for a folder that moved: its files' keys go to their new paths.
  app.post(LockRoutes.removeKeys, async (req, res) => {
    const removed = bodyOf(req).paths('paths')
    const answer: RemoveKeysAnswer = { removed: await table.deleteKeys(removed) }
    for (const path of removed) waits.wake(path)
    res.json(answer)
  })

  app.post(LockRoutes.acquire, async (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const owner = body.string('owner', 256)
    const ttlMs = body.optionalInt('ttlMs', { min: 1, max: maxLeaseMs }) ?? defaultLeaseMs
    const waitMs = body.optionalInt('waitMs', { min: 0, max: MAX_WAIT_MS }) ?? 0
    let closed = false
    res.on('close', () => { closed = !res.writableFinished })
    const hungUp = (): boolean => closed || req.socket.destroyed || req.socket.readableEnded
    // A request can reach us together with its caller's hang-up: a caller that timed out
    // while this server was stopped (SIGSTOP, a long pause) closed its connection, and the
    // request and the close wait in the socket, in that order. The request is read first;
    // the close only on a later turn of the event loop. So before each grant, let the loop
    // read what the socket holds, then look.
    const gone = async (): Promise<boolean> => {
      await afterPendingIo()
      return hungUp()
    }
    let lease
    try {
      lease = await waits.acquire(path, owner, ttlMs, waitMs, gone)
    } catch (err) {
      if (err instanceof CallerGoneError) {
        res.destroy()
        return
      }
      throw err
    }
    if (hungUp()) {
      // It hung up while the grant was being stored: nobody would ever release it.
      await table.release(path, lease.token)
      waits.wake(path)
      return
    }
    res.json(lease)
  })

  app.post(LockRoutes.renew, async (req, res) => {
    const body = bodyOf(req)
    res.json(await table.renew(body.path(), body.int('token')))
  })

  app.post(LockRoutes.release, async (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    await table.release(path, body.int('token'))
    waits.wake(path)
    const answer: ReleaseAnswer = { path, released: true }
    res.json(answer)
  })

  app.get(LockRoutes.check, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const answer: CheckAnswer = { path, valid: true, expiresInMs: await table.check(path, query.int('token')) }
    res.json(answer)
  })

  app.get(LockRoutes.status, async (req, res) => {
    res.json(await table.status(queryOf(req).path()))
  })

  app.get(LockRoutes.heldUnder, async (req, res) => {
    const path = queryOf(req).path()
    const answer: HeldUnderAnswer = { path, held: await table.heldUnder(path) }
    res.json(answer)
  })

  finishApp(app, log)
  return app
}

/** Opens the state (replaying and compacting its journal), then listens; close() closes both. */
export async function startLockServer (opts: LockServerOptions & { port: number, host?: string }): Promise<RunningServer> {
  const store: LockStore = opts.stateDir === undefined ? new MemoryLockStore() : new JournalLockStore(opts.stateDir)
  await store.load()
  try {
    const running = await listen(createLockServer({ ...opts, store }), opts.port, opts.host)
    return {
      ...running,
      close: async () => {
        await running.close()
        await store.close()
      }
    }
  } catch (err) {
    await store.close()
    throw err
  }
}
