import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import type { Test } from 'tap'
import { LockApi } from '../src/shared/api'
import { BusyError, LeaseError, LockedError } from '../src/shared/errors'
import { leaseCredentialOf } from '../src/shared/leaseCredential'
import type { LockLease } from '../src/shared/protocol'
import { Transport } from '../src/shared/transport'
import { DelegationChannel } from '../src/client/delegationChannel'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { ServerRequests } from './helpers/serverRequests'
import { fileApiOf } from './helpers/wire'
import { waitFor } from './helpers/waitFor'

/*
 * A delegated write lease follows its client's channel to the lock server (issue #9): once
 * the client is gone (its channel closed and its callback lease not renewed) and the lease
 * was not renewed since, the lock server ends it when someone else asks for the key, within
 * a few seconds rather than at the lease's end. Fencing stays exact: the next holder's token
 * is higher, and the gone holder's late write is refused even by a file server that trusted
 * its lease a moment before. A client whose channel went but who still renews the lease, or
 * whose channel is cut while it uses the lease, keeps it.
 *
 * Leases here last 120 s and callback leases 3 s (the default): a key freed within the
 * 30 s the tests wait was freed by its holder's silence, never by its lease's end.
 */

const LEASE_MS = 120_000
/** How long a test waits for a gone client's key: far under LEASE_MS, far over two callback leases. */
const FREED_WITHIN_MS = 30_000
/** How long the tests show a live holder keeps its key: over two callback leases and a file server's trust (6 s each). */
const KEPT_FOR_MS = 10_000
const execFileAsync = promisify(execFile)

/** A client with a channel to the lock server, as a mount has: its leases come with their delegation. */
async function delegatingClient (t: Test, cluster: TestCluster, clientId: string): Promise<{ lock: LockApi, channel: DelegationChannel }> {
  const lock = new LockApi(new Transport('lock server', cluster.lock.url, 2000, { ...cluster.credentials.caller, clientId }))
  const channel = new DelegationChannel(lock, clientId)
  t.teardown(() => channel.close())
  channel.handle('lease', { recall: async () => {}, lost: () => {} })
  await waitFor('the channel to the lock server', async () => channel.ready())
  return { lock, channel }
}

/** A plain client of the lock server (no channel). */
function plainClient (cluster: TestCluster, clientId: string): LockApi {
  return new LockApi(new Transport('lock server', cluster.lock.url, 2000, { ...cluster.credentials.caller, clientId }))
}

/** Asks for the key, each ask waiting on the server up to 5 s, until granted or `withinMs` has passed (then null). */
async function acquireWithin (lock: LockApi, file: string, owner: string, withinMs: number): Promise<LockLease | null> {
  const deadline = Date.now() + withinMs
  for (;;) {
    try {
      return await lock.acquire({ path: file, owner, waitMs: Math.max(0, Math.min(5_000, deadline - Date.now())) })
    } catch (err) {
      if (!(err instanceof LockedError)) throw err
      if (Date.now() >= deadline) return null
    }
  }
}

t.test('a delegated lease whose client is gone is ended for the next asker; the next token is higher and the gone holder\'s late write is refused', async (t) => {
  const cluster = await startTestCluster(t, [{ 'f.txt': 'old\n' }], { leaseMs: LEASE_MS })
  const file = fileApiOf(cluster.fileServers[0])
  const gone = await delegatingClient(t, cluster, 'gone-holder')
  const held = await gone.lock.acquire({ path: '/f.txt', owner: 'gone', delegate: true })
  t.equal(held.delegated, true, 'the lease came with its delegation')
  t.equal(held.ttlMs, LEASE_MS)
  // The file server checks the lease once and trusts it for a while: the write after is not asked about.
  await file.store('/f.txt', Buffer.from('gone-1\n'), leaseCredentialOf(held))

  // The holder goes away as a killed one does: its channel closes, nothing is renewed.
  gone.channel.close()
  const taker = plainClient(cluster, 'taker')
  const next = await acquireWithin(taker, '/f.txt', 'taker', FREED_WITHIN_MS)
  if (next === null) throw new Error(`the key was not freed within ${FREED_WITHIN_MS} ms (its lease lasts ${LEASE_MS} ms)`)
  t.ok(next.token > held.token, `the next holder's token is higher (${next.token} > ${held.token})`)

  await t.rejects(file.store('/f.txt', Buffer.from('late\n'), leaseCredentialOf(held)), LeaseError,
    'the gone holder\'s late write is refused, before the next holder has written anything')
  await t.rejects(gone.lock.renew('/f.txt', leaseCredentialOf(held)), LeaseError, 'and its lease cannot be renewed')
  await file.store('/f.txt', Buffer.from('taker\n'), leaseCredentialOf(next))
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'f.txt'), 'utf8'), 'taker\n', 'the next holder\'s write is on disk')
})

t.test('a client whose channel went but who renews its delegated lease over HTTP keeps it', async (t) => {
  const cluster = await startTestCluster(t, [{ 'f.txt': 'old\n' }], { leaseMs: LEASE_MS })
  const file = fileApiOf(cluster.fileServers[0])
  const holder = await delegatingClient(t, cluster, 'renewing-holder')
  const held = await holder.lock.acquire({ path: '/f.txt', owner: 'holder', delegate: true })
  t.equal(held.delegated, true)
  await file.store('/f.txt', Buffer.from('holder-1\n'), leaseCredentialOf(held))

  holder.channel.close()
  const renewal = setInterval(() => { holder.lock.renew('/f.txt', leaseCredentialOf(held)).catch(() => {}) }, 500)
  t.teardown(() => clearInterval(renewal))
  const taker = plainClient(cluster, 'taker')
  t.equal(await acquireWithin(taker, '/f.txt', 'taker', KEPT_FOR_MS), null, `another client is refused the key for ${KEPT_FOR_MS} ms`)
  await file.store('/f.txt', Buffer.from('holder-2\n'), leaseCredentialOf(held))
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'f.txt'), 'utf8'), 'holder-2\n', 'the holder\'s write under its lease is taken')
  clearInterval(renewal)
  await holder.lock.release('/f.txt', leaseCredentialOf(held))
  t.ok(await acquireWithin(taker, '/f.txt', 'taker', FREED_WITHIN_MS), 'released, the key goes to the other client')
})

/** The local ports of this process's TCP connections to `port` on loopback. */
async function ownConnectionsTo (port: number): Promise<number[]> {
  const { stdout } = await execFileAsync('ss', ['-tnpH', 'state', 'established', 'dst', `127.0.0.1:${port}`])
  return stdout.split('\n')
    .filter((line) => line.includes(`pid=${process.pid},`))
    .map((line) => Number(/127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:\d+/.exec(line)?.[1]))
    .filter((local) => Number.isInteger(local))
}

t.test('a client whose connections to the lock server are cut while it uses a delegated lease keeps it, and opens its channel again', async (t) => {
  const cluster = await startTestCluster(t, [{ 'f.txt': 'old\n' }], { leaseMs: LEASE_MS })
  const client = cluster.client({ callbacks: true })
  t.teardown(() => client.close())
  const delegations = client.delegations
  if (delegations === null) throw new Error('the client has no channel to the lock server')
  await waitFor('the client\'s channel to the lock server', async () => delegations.ready())
  const held = await client.locks.acquire('/f.txt')
  t.equal(held.lease.delegated, true, 'the lease came with its delegation, and is in use')
  const lockPort = Number(new URL(cluster.lock.url).port)
  const requests = new ServerRequests(cluster.lock.url)
  t.teardown(() => requests.stop())
  const from = requests.mark()

  // A network fault: both ends see a reset, the channel with them.
  const cut = await ownConnectionsTo(lockPort)
  for (const local of cut) await execFileAsync('ss', ['-K', 'src', `127.0.0.1:${local}`, 'dst', `127.0.0.1:${lockPort}`])
  t.ok(cut.length > 0, `connections to the lock server were cut: ${cut.length}`)
  // Renewals are due every 40 s: one now is the client showing the lease is still in use.
  await waitFor('the lease in use renewed at once', async () => (requests.since(from)['POST /locks/renew'] ?? 0) > 0, 10_000)
  await waitFor('the channel opened again with nothing asking for it', async () => (requests.since(from)['GET /events'] ?? 0) > 0, 10_000)

  const taker = plainClient(cluster, 'taker')
  t.equal(await acquireWithin(taker, '/f.txt', 'taker', KEPT_FOR_MS), null, `another client is refused the key for ${KEPT_FOR_MS} ms`)
  const file = fileApiOf(cluster.fileServers[0])
  await file.store('/f.txt', Buffer.from('holder\n'), leaseCredentialOf(held.lease))
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'f.txt'), 'utf8'), 'holder\n', 'a store under the lease is taken')
  await held.release()
  t.ok(await acquireWithin(taker, '/f.txt', 'taker', FREED_WITHIN_MS), 'once its use ended, the key goes to the other client (the channel is gone: not kept)')
})

t.test('a folder whose file\'s delegated lease belongs to a gone client can be renamed once the lease is ended', async (t) => {
  const cluster = await startTestCluster(t, [{ 'dir/f.txt': 'old\n' }], { leaseMs: LEASE_MS })
  const gone = await delegatingClient(t, cluster, 'gone-holder')
  const held = await gone.lock.acquire({ path: '/dir/f.txt', owner: 'gone', delegate: true })
  t.equal(held.delegated, true)
  const client = cluster.client()
  t.teardown(() => client.close())
  await t.rejects(client.rename('/dir', '/moved'), BusyError, 'busy while the holder\'s client is live')

  gone.channel.close()
  let busy = 0
  await waitFor('the rename to go through', async () => {
    try {
      await client.rename('/dir', '/moved')
      return true
    } catch (err) {
      if (!(err instanceof BusyError)) throw err
      busy++
      return false
    }
  }, FREED_WITHIN_MS, 200)
  t.pass(`renamed (busy ${busy} times first), though the lease had ${LEASE_MS} ms to run`)
  t.equal((await client.readFile('/moved/f.txt')).toString(), 'old\n')
})
