import crypto from 'node:crypto'
import type { Express } from 'express'
import { ADVISORY_GRACE_MS, DEFAULT_CALLBACK_LEASE_MS, DEFAULT_LEASE_MS } from '../../src/shared/defaults'
import { delegationKey, Headers, LockRoutes, MAX_CALLBACK_LEASE_MS } from '../../src/shared/protocol'
import { BadRequestError, LeaseError } from '../../src/shared/errors'
import { parseLeaseCredential } from '../../src/shared/leaseCredential'
import type { CheckAnswer, LockLease, RenewAnswer, CreateKeysAnswer, DeleteKeyAnswer, HeldUnderAnswer, ReleaseAnswer, RemoveKeysAnswer } from '../../src/shared/protocol'
import { Authenticator, callerOf, requireCredentials } from '../common/auth'
import type { Caller, RouteRole, ServerAuth } from '../common/auth'
import { finishApp, healthAnswer, jsonBody, listen, newApp, silentLogger } from '../common/http'
import { bodyOf, queryOf } from '../common/input'
import { addAdvisoryRoutes, ADVISORY_ROUTE_ROLES } from './advisoryRoutes'
import { watchCaller } from './callerGone'
import { Delegations } from './delegations'
import type { Logger, RunningServer, ServerTls } from '../common/http'
import { JournalLockStore } from './journalStore'
import { MemoryLockStore } from './lockStore'
import type { LockStore } from './lockStore'
import { LockTable } from './lockTable'
import type { LeaseProof } from './lockTable'
import { CallerGoneError, LockWaits } from './lockWaits'
import { StatusRoutes } from '../../src/shared/clusterStatus'
import type { HeldLocksAnswer } from '../../src/shared/clusterStatus'
import { lockWaitersGauge, lockWaitSeconds } from '../common/metrics'
import { LeaseClock } from './leaseClock'

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
  /** The cluster key and deny list; absent, the server is open to anyone (--insecure). */
  auth?: ServerAuth
  /** How long a client's delegations count without a renewal (and the longest a recall waits for a silent holder). */
  callbackLeaseMs?: number
  /** After a restart, how long new fcntl and flock locks wait for mounts to reclaim theirs (default ADVISORY_GRACE_MS). */
  advisoryGraceMs?: number
}

/**
 * Who may call which route: keys and lease checks are the file servers' business; clients
 * with a write credential take, renew and release leases; a read-only one may only look
 * (it must not block writers).
 */
const ROUTE_ROLES: RouteRole[] = [
  ['post', LockRoutes.keys, 'server'],
  ['delete', LockRoutes.keys, 'server'],
  ['post', LockRoutes.removeKeys, 'server'],
  ['post', LockRoutes.acquire, 'write'],
  ['post', LockRoutes.renew, 'write'],
  ['post', LockRoutes.release, 'write'],
  ['get', LockRoutes.check, 'server'],
  ['get', LockRoutes.heldUnder, 'server'],
  ['get', LockRoutes.status, 'read'],
  ...ADVISORY_ROUTE_ROLES
]

/** The subject a lease is bound to: the credential's, or none on an open server. */
function holderOf (caller: Caller): string | undefined {
  return caller.open ? undefined : caller.subject
}

/**
 * The lease credential (TOKEN.SECRET) a renewal or release names. Missing, a bare token or
 * not one at all: LEASE_INVALID, as a wrong token is, so a guess learns nothing.
 */
function credentialIn (body: ReturnType<typeof bodyOf>, path: string, doing: string): LeaseProof {
  const credential = parseLeaseCredential(body.has('credential') ? body.string('credential', 128) : undefined)
  if (credential === null) throw new LeaseError(`${doing} a lease on ${path} needs its credential (TOKEN.SECRET)`, { path })
  return credential
}

/** The lock server's app; `stop` ends its waits and its metrics (the server's close calls it). */
export interface LockServerApp {
  app: Express
  stop: () => void
  /** What this server has delegated to clients, and their event channels. */
  delegations: Delegations
}

/** `store` must be loaded already (startLockServer does that). */
export function createLockServer (opts: LockServerOptions & { store?: LockStore } = {}): Express {
  return createLockServerApp(opts).app
}

export function createLockServerApp (opts: LockServerOptions & { store?: LockStore } = {}): LockServerApp {
  const log = opts.log ?? silentLogger
  const defaultLeaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS
  const maxLeaseMs = opts.maxLeaseMs ?? 10 * 60_000
  const store = opts.store ?? new MemoryLockStore()
  const table = new LockTable(store)
  const waits = new LockWaits(table)
  const clock = new LeaseClock(table)
  const removeWaitersGauge = lockWaitersGauge.add(() => [{ labels: {}, value: waits.waiting }])
  // Clients allow MAX_CALLBACK_LEASE_MS on top of a request's deadline for a recall's wait.
  const delegations = new Delegations(Math.min(opts.callbackLeaseMs ?? DEFAULT_CALLBACK_LEASE_MS, MAX_CALLBACK_LEASE_MS))

  const app = newApp('lock')
  requireCredentials(app, opts.auth === undefined ? null : new Authenticator(opts.auth), ROUTE_ROLES)
  app.use(jsonBody)

  /**
   * Ends the path's delegated lease when its client is gone (delegatedLeases.ts says when that
   * is safe), and wakes the key's waiters; whether it did. Asked whenever someone is refused
   * the key, so a dead holder's file is free within seconds, not at its lease's end.
   */
  const endAbandoned = async (path: string): Promise<boolean> => {
    const abandoned = delegations.abandonedLease(path)
    if (abandoned === undefined || !(await table.endUnrenewed(path, abandoned.token, abandoned.silentSince))) return false
    delegations.leaseEnded(path)
    clock.released(abandoned.token, 'abandoned')
    waits.wake(path)
    log(`ended lease ${abandoned.token} on ${path}: the client it was delegated to is gone`)
    return true
  }

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
    const query = queryOf(req)
    const path = query.path()
    // whenFree: the file went, and the lease it went under stays with its holder for now.
    // ifFree: the file is going with no lease, which only a key nobody holds allows.
    const whenFree = query.flag('whenFree')
    const ifFree = query.flag('ifFree')
    if (whenFree && ifFree) throw new BadRequestError('whenFree and ifFree exclude each other')
    let deleted = true
    if (whenFree) deleted = await table.deleteKeyWhenFree(path)
    else if (ifFree) deleted = await table.deleteKeyIfFree(path)
    else await table.deleteKey(path)
    if (deleted) {
      delegations.leaseEnded(path)
      waits.wake(path)
    }
    const answer: DeleteKeyAnswer = { path, deleted }
    res.json(answer)
  })

  // Many at once, for a folder that moved: its files' keys go to their new paths.
  app.post(LockRoutes.removeKeys, async (req, res) => {
    const removed = bodyOf(req).paths('paths')
    const answer: RemoveKeysAnswer = { removed: await table.deleteKeys(removed) }
    for (const path of removed) delegations.leaseEnded(path)
    for (const path of removed) waits.wake(path)
    res.json(answer)
  })

  app.post(LockRoutes.acquire, async (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const owner = body.string('owner', 256)
    const ttlMs = body.optionalInt('ttlMs', { min: 1, max: maxLeaseMs }) ?? defaultLeaseMs
    const waitMs = body.optionalInt('waitMs', { min: 0, max: MAX_WAIT_MS }) ?? 0
    const delegate = body.flag('delegate')
    const { gone, hungUp } = watchCaller(req, res)
    const key = delegationKey('lease', path)
    const requester = delegations.requester(req)
    let lease: LockLease
    const waited = lockWaitSeconds.startTimer()
    try {
      lease = await waits.acquire(path, owner, ttlMs, waitMs, gone, holderOf(callerOf(res)), async () => {
        await delegations.recall(key, requester)
        await endAbandoned(path)
      })
      waited({ outcome: 'granted' })
    } catch (err) {
      waited({ outcome: 'refused' })
      if (err instanceof CallerGoneError) {
        res.destroy()
        return
      }
      throw err
    }
    if (hungUp()) {
      // It hung up while the grant was being stored: nobody would ever release it.
      await table.release(path, lease)
      waits.wake(path)
      return
    }
    clock.grantedNow(lease.token, lease.expiresAt)
    // Granted after the lease: a recall from here on reaches the new holder. The grant of an
    // earlier lease of this client on the key (given back since) is the same callback.
    if (delegate && delegations.grant(req, key)) {
      lease.delegated = true
      delegations.leaseDelegated(req, path, lease.token)
    }
    res.json(lease)
  })

  app.post(LockRoutes.renew, async (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const { secret: _secret, ...lease } = await table.renew(path, credentialIn(body, path, 'renewing'), holderOf(callerOf(res)))
    clock.renewed(lease.token, lease.expiresAt)
    // The holder has the secret already: an answer need not carry it about again.
    const answer: RenewAnswer = lease
    res.json(answer)
  })

  app.post(LockRoutes.release, async (req, res) => {
    const body = bodyOf(req)
    const path = body.path()
    const credential = credentialIn(body, path, 'releasing')
    await table.release(path, credential, holderOf(callerOf(res)))
    delegations.leaseEnded(path)
    clock.released(credential.token)
    waits.wake(path)
    const answer: ReleaseAnswer = { path, released: true }
    res.json(answer)
  })

  // The credential comes in a header, as to a file server: a query string ends up in logs.
  app.get(LockRoutes.check, async (req, res) => {
    const path = queryOf(req).path()
    const credential = parseLeaseCredential(req.get(Headers.lockToken))
    if (credential === null) throw new LeaseError(`checking a lease on ${path} needs its credential (${Headers.lockToken}: TOKEN.SECRET)`, { path })
    const { expiresInMs, holder } = await table.checkLease(path, credential.token, credential.secret)
    const answer: CheckAnswer = { path, valid: true, expiresInMs }
    if (holder !== undefined) answer.holder = holder
    if (delegations.isLeaseDelegated(path, credential.token)) {
      answer.delegated = true
      answer.trustForMs = delegations.vouchFor(path, credential.token, expiresInMs)
    }
    res.json(answer)
  })

  app.get(LockRoutes.status, async (req, res) => {
    res.json(await table.status(queryOf(req).path()))
  })

  // For operators (dfs status, the status page): every live lease, who holds it, for how long.
  app.get(StatusRoutes.heldLocks, async (_req, res) => {
    const answer: HeldLocksAnswer = { locks: await clock.held() }
    res.json(answer)
  })

  // Only a restart has locks to reclaim: a store with no earlier state starts with none.
  const graceMs = store.resumed ? opts.advisoryGraceMs ?? ADVISORY_GRACE_MS : 0
  const advisory = addAdvisoryRoutes(app, { defaultLeaseMs, maxLeaseMs, channel: delegations, graceMs, holders: store })
  delegations.mount(app)

  app.get(LockRoutes.heldUnder, async (req, res) => {
    const path = queryOf(req).path()
    // A file server asks before it moves a folder: leases kept idle below it are given back first.
    await delegations.recallUnder('lease', path)
    let held = await table.heldUnder(path)
    // A lease below it delegated to a client that is gone would make the move wait for its end.
    const ended = await Promise.all(held.map(async (lease) => await endAbandoned(lease.path)))
    if (ended.includes(true)) held = await table.heldUnder(path)
    const answer: HeldUnderAnswer = { path, held }
    res.json(answer)
  })

  finishApp(app, log)
  return {
    app,
    delegations,
    stop: () => {
      delegations.closeAll()
      waits.stop()
      advisory.stop()
      clock.close()
      removeWaitersGauge()
    }
  }
}

/** Opens the state (replaying and compacting its journal), then listens; close() closes both. */
export async function startLockServer (opts: LockServerOptions & { port: number, host?: string, tls?: ServerTls }): Promise<RunningServer> {
  const store: LockStore = opts.stateDir === undefined ? new MemoryLockStore() : new JournalLockStore(opts.stateDir)
  await store.load()
  try {
    const { app, stop } = createLockServerApp({ ...opts, store })
    const running = await listen(app, opts.port, opts.host, opts.tls)
    return {
      ...running,
      close: async (graceMs?: number) => {
        stop()
        await running.close(graceMs)
        await store.close()
      }
    }
  } catch (err) {
    await store.close()
    throw err
  }
}
