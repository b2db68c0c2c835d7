import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { LockApi } from '../src/shared/api'
import { LeaseError } from '../src/shared/errors'
import { leaseCredentialOf } from '../src/shared/leaseCredential'
import { LockRoutes } from '../src/shared/protocol'
import { Transport } from '../src/shared/transport'
import { DelegationChannel } from '../src/client/delegationChannel'
import { startTestCluster } from './helpers/cluster'
import { ServerRequests } from './helpers/serverRequests'
import { fileApiOf } from './helpers/wire'
import { waitFor } from './helpers/waitFor'

/*
 * A file server trusts a delegated lease (one its client keeps after use) it has checked
 * with the lock server until the lease's end as the lock server told it
 * (servers/file/leaseGuard.ts): the next writes under the same credential cost no
 * question. Other leases are asked about at every write, as before. Fencing stays: a
 * superseded lease, a wrong secret and a lapsed one are refused.
 */

t.test('writes under a checked delegated lease ask the lock server once; a superseded one, a wrong secret and a lapsed one are refused', async (t) => {
  const cluster = await startTestCluster(t, [{ 'f.txt': 'old\n' }])
  const file = fileApiOf(cluster.fileServers[0])
  // A client with an event channel to the lock server, as a mount has: its leases may be delegated.
  const lock = new LockApi(new Transport('lock server', cluster.lock.url, 2000, { ...cluster.credentials.caller, clientId: 'lease-cache-test' }))
  const channel = new DelegationChannel(lock, 'lease-cache-test')
  t.teardown(() => channel.close())
  channel.handle('lease', { recall: async () => {}, lost: () => {} })
  await waitFor('the channel to the lock server', async () => channel.ready())
  const checks = new ServerRequests(cluster.lock.url)
  t.teardown(() => checks.stop())
  const checksSince = (from: number): number => checks.since(from)[`GET ${LockRoutes.check}`] ?? 0

  const plain = await lock.acquire({ path: '/f.txt', owner: 'plain' })
  t.notOk(plain.delegated, 'a lease asked for without its delegation')
  let from = checks.mark()
  for (let i = 1; i <= 2; i++) await file.store('/f.txt', Buffer.from(`plain-${i}\n`), leaseCredentialOf(plain))
  t.ok(checksSince(from) >= 2, `is checked at every store: ${checksSince(from)} checks for 2`)
  await lock.release('/f.txt', leaseCredentialOf(plain))

  const first = await lock.acquire({ path: '/f.txt', owner: 'first', delegate: true })
  t.equal(first.delegated, true, 'a lease asked for with its delegation gets it')
  from = checks.mark()
  for (let i = 1; i <= 5; i++) await file.store('/f.txt', Buffer.from(`first-${i}\n`), leaseCredentialOf(first))
  t.equal(checksSince(from), 1, 'five stores under one delegated lease: one check with the lock server')

  const [token, secret] = leaseCredentialOf(first).split('.')
  const guessed = `${token}.${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`
  await t.rejects(file.store('/f.txt', Buffer.from('guess\n'), guessed), LeaseError, 'the right token with another secret is refused')

  // Given back and granted again: the new holder's token is higher, and its first write raises the floor.
  await lock.release('/f.txt', leaseCredentialOf(first))
  const second = await lock.acquire({ path: '/f.txt', owner: 'second', delegate: true })
  await file.store('/f.txt', Buffer.from('second\n'), leaseCredentialOf(second))
  from = checks.mark()
  await t.rejects(file.store('/f.txt', Buffer.from('late\n'), leaseCredentialOf(first)), LeaseError, 'the former holder\'s late write is refused')
  t.equal(checksSince(from), 0, 'by the floor, without a question')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'f.txt'), 'utf8'), 'second\n')

  // A lease that runs out is no longer trusted, though it was checked.
  await lock.release('/f.txt', leaseCredentialOf(second))
  const short = await lock.acquire({ path: '/f.txt', owner: 'short', ttlMs: 300, delegate: true })
  await file.store('/f.txt', Buffer.from('short\n'), leaseCredentialOf(short))
  await waitFor('the short lease to run out', async () => !(await lock.status('/f.txt')).held)
  await t.rejects(file.store('/f.txt', Buffer.from('too late\n'), leaseCredentialOf(short)), LeaseError, 'a write under a lapsed lease is refused')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'f.txt'), 'utf8'), 'short\n')
})

t.test('a create sent with a lease (PUT /create, X-Dfs-Lock-Token): checked before the file takes its name; a wrong one creates nothing', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const file = fileApiOf(cluster.fileServers[0])
  const lock = new LockApi(new Transport('lock server', cluster.lock.url, 2000, cluster.credentials.caller))
  const lease = await lock.acquire({ path: '/db/j', owner: 'creator' })

  const wrong = `${lease.token}.${'0'.repeat(lease.secret.length)}`
  await t.rejects(file.createWithContent('/db/j', Buffer.from('bytes'), { token: wrong }), LeaseError, 'a wrong secret is refused')
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'db', 'j')), 'and nothing was created')

  const made = await file.createWithContent('/db/j', Buffer.from('bytes'), { token: leaseCredentialOf(lease) })
  t.equal(made.meta.size, 5, 'the right one creates the file')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'db', 'j'), 'utf8'), 'bytes')
  // The file server now knows the lease: an append without it waits for it (LOCKED).
  await t.rejects(file.append('/db/j', Buffer.from('x')), { code: 'LOCKED' }, 'an append without the lease is held back')
})
