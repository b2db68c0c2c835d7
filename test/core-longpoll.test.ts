import http from 'node:http'
import t from 'tap'
import { LockRoutes } from '../src/shared/protocol'
import type { LockLease } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { rawAs } from './helpers/wire'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

// An acquire with waitMs waits on the lock server: the key reaches it when released, not
// at its next poll, and a waiter that hangs up never ends up holding a key nobody releases.
t.test('a waiting acquire gets the key as soon as it is released', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }])
  const { rawPost } = rawAs(cluster.credentials.server)
  const url = cluster.lock.url
  const first = await rawPost(url, LockRoutes.acquire, { path: '/a.txt', owner: 'first' })
  t.equal(first.status, 200)
  const lease = first.body as LockLease

  let answered = false
  const waiting = rawPost(url, LockRoutes.acquire, { path: '/a.txt', owner: 'second', waitMs: 20_000 }, { timeout: 30_000 })
    .finally(() => { answered = true })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.notOk(answered, 'the second acquire is held while the key is taken')
  t.equal((await rawPost(url, LockRoutes.release, { path: '/a.txt', credential: leaseCredentialOf(lease) })).status, 200)
  const second = await waiting
  t.equal(second.status, 200, 'and answered with the key once it is released')
  t.equal((second.body as LockLease).owner, 'second')
  t.ok((second.body as LockLease).token > lease.token, 'with a newer fencing token')
})

t.test('a waiting acquire ends with LOCKED after waitMs, and one that hangs up is not granted the key', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }])
  const { rawPost } = rawAs(cluster.credentials.server)
  const url = cluster.lock.url
  const lease = (await rawPost(url, LockRoutes.acquire, { path: '/a.txt', owner: 'first' })).body as LockLease

  const timedOut = await rawPost(url, LockRoutes.acquire, { path: '/a.txt', owner: 'patient', waitMs: 200 })
  t.equal(timedOut.status, 423)
  t.match(timedOut.body, { error: { code: 'LOCKED', holder: 'first' } })
  t.equal((await rawPost(url, LockRoutes.acquire, { path: '/a.txt', owner: 'x', waitMs: -1 })).status, 400, 'a bad waitMs is a 400')

  // A waiter that gives up: its request is aborted while the server holds it.
  const target = new URL(LockRoutes.acquire, url)
  const req = http.request(target, { method: 'POST', headers: { 'Content-Type': 'application/json' } })
  req.on('error', () => {})
  req.end(JSON.stringify({ path: '/a.txt', owner: 'quitter', waitMs: 20_000 }))
  await new Promise((resolve) => setTimeout(resolve, 200))
  req.destroy()
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal((await rawPost(url, LockRoutes.release, { path: '/a.txt', credential: leaseCredentialOf(lease) })).status, 200)
  const next = await rawPost(url, LockRoutes.acquire, { path: '/a.txt', owner: 'third', waitMs: 2000 })
  t.equal(next.status, 200, 'the key is free for the next one: the quitter did not keep it')
  t.equal((next.body as LockLease).owner, 'third')
})
