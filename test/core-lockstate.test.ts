import t from 'tap'
import type { LockLease } from '../src/shared/protocol'
import { FileRoutes, LockRoutes } from '../src/shared/protocol'
import { startProcessCluster } from './helpers/processCluster'
import { rawAppendWithToken, rawAs } from './helpers/wire'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

/*
 * The lock server keeps keys, leases and its fencing counter in its state folder
 * (servers/lock/journalStore.ts): a crash of its process (SIGKILL) and a restart on the same
 * port and folder lose none of them.
 */

t.test('a lease outlives kill -9 and a restart of the lock server; tokens go on growing', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'data.txt': 'start\n', 'other.txt': '' }] })
  const { raw, rawPost } = rawAs(cluster.credentials.server)
  const lockUrl = cluster.lock.url
  const fileUrl = cluster.files[0].url

  // Tokens handed out and given back before the crash: the counter must stay above them.
  let highest = 0
  for (let i = 0; i < 3; i++) {
    const earlier = (await rawPost(lockUrl, LockRoutes.acquire, { path: '/other.txt', owner: 'earlier' })).body as LockLease
    t.equal((await rawPost(lockUrl, LockRoutes.release, { path: '/other.txt', credential: leaseCredentialOf(earlier) })).status, 200)
    highest = Math.max(highest, earlier.token)
  }
  const granted = await rawPost(lockUrl, LockRoutes.acquire, { path: '/data.txt', owner: 'writer', ttlMs: 60_000 })
  t.equal(granted.status, 200)
  const lease = granted.body as LockLease
  t.equal((await rawAppendWithToken(cluster.credentials.server, fileUrl, '/data.txt', 'before\n', leaseCredentialOf(lease))).status, 200, 'a write under the lease')

  await cluster.lock.kill()
  await cluster.lock.restart()

  const intruder = await rawPost(lockUrl, LockRoutes.acquire, { path: '/data.txt', owner: 'intruder' })
  t.equal(intruder.status, 423, 'someone else is refused while the lease lives')
  t.match(intruder.body, { error: { code: 'LOCKED', holder: 'writer' } })
  const renewed = await rawPost(lockUrl, LockRoutes.renew, { path: '/data.txt', credential: leaseCredentialOf(lease) })
  t.equal(renewed.status, 200, 'the holder renews with its token')
  t.equal((renewed.body as LockLease).token, lease.token)
  t.ok((renewed.body as LockLease).expiresAt >= lease.expiresAt, 'and its lease runs on')
  const written = await rawAppendWithToken(cluster.credentials.server, fileUrl, '/data.txt', 'after\n', leaseCredentialOf(lease))
  t.equal(written.status, 200, 'and writes with it: the file server\'s check passes at the new lock server')

  t.equal((await rawPost(lockUrl, LockRoutes.release, { path: '/data.txt', credential: leaseCredentialOf(lease) })).status, 200, 'and releases it')
  // The intruder, refused a moment ago, is first in line for the freed key.
  const next = await rawPost(lockUrl, LockRoutes.acquire, { path: '/data.txt', owner: 'intruder' })
  t.equal(next.status, 200, 'the intruder gets the key once it is released')
  t.ok((next.body as LockLease).token > Math.max(highest, lease.token), 'the next token is above every token of the old process')
  t.equal((await rawAppendWithToken(cluster.credentials.server, fileUrl, '/data.txt', 'late\n', leaseCredentialOf(lease))).status, 409, 'the old token is fenced off')
  const content = await raw(fileUrl, { method: 'GET', url: FileRoutes.content, params: { path: '/data.txt' }, responseType: 'text' })
  t.equal(content.body, 'start\nbefore\nafter\n')
})

t.test('keys survive a restart: an acquire works before any file server joins again', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'a.txt': 'a\n' }] })
  const { rawGet, rawPost } = rawAs(cluster.credentials.server)
  // A stopped file server cannot create its keys again when it sees the new boot id.
  await cluster.files[0].stop()
  const before = await cluster.lock.waitHealthy()
  await cluster.lock.kill()
  await cluster.lock.restart()
  t.not((await cluster.lock.waitHealthy()).bootId, before.bootId, 'a new lock server process')

  const status = await rawGet(cluster.lock.url, LockRoutes.status, { path: '/a.txt' })
  t.same(status.body, { path: '/a.txt', held: false }, 'the key is there, free')
  const granted = await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/a.txt', owner: 'early' })
  t.equal(granted.status, 200, 'and taken at once')
  t.equal((await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/nothing.txt', owner: 'early' })).status, 200, 'a path nobody created a key for gets one at its first acquire (keys are implicit)')

  await cluster.files[0].cont()
  // Its rejoin creates its keys again: a held key is left alone.
  t.equal((await rawPost(cluster.lock.url, LockRoutes.keys, { paths: ['/a.txt'] })).body.created, 0)
  t.match((await rawGet(cluster.lock.url, LockRoutes.status, { path: '/a.txt' })).body, { held: true, owner: 'early' }, 'still held by the early caller')
})
