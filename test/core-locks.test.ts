import path from 'node:path'
import t from 'tap'
import { LockTimeoutError } from '../src/shared/errors'
import type { LockLease, LockStatus } from '../src/shared/protocol'
import { LockRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { cleanEnv, startNode, stopNode } from './helpers/processes'
import { rawAppendWithToken, rawAs, statsOf } from './helpers/wire'
import { waitFor } from './helpers/waitFor'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

/** A separate process that takes a file's lock through the client proxy, renews it, and never lets go. */
const HOLDER_SCRIPT = `
const [clientModule, directoryUrl, lockUrl, cacheDir, owner, file] = process.argv.slice(1)
const { DfsClient } = require(clientModule)
const token = process.env.DFS_TOKEN
const client = new DfsClient({ directoryUrl, lockUrl, cacheDir, owner, caller: { credential: () => token } })
client.locks.acquire(file).then((held) => {
  console.log('holding ' + JSON.stringify(held.lease))
  setInterval(() => {}, 60000)
}, (err) => { console.error(err.message); process.exit(1) })
`
const clientModule = path.resolve(__dirname, '..', 'src', 'client', 'dfsClient.js')

t.test('a holder that dies loses its lock when the lease runs out, and its late writes are fenced off', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data.txt': 'start\n' }], { leaseMs: 500 })
  const { rawGet } = rawAs(cluster.credentials.server)
  const fileServer = cluster.fileServers[0]

  const holder = await startNode(['-e', HOLDER_SCRIPT, clientModule, cluster.directory.url, cluster.lock.url,
    path.join(cluster.workDir, 'holder-cache'), 'dying-holder', '/data.txt'], /^holding /, 15_000, { ...cleanEnv(), DFS_TOKEN: cluster.credentials.write })
  t.teardown(async () => { await stopNode(holder, 'SIGKILL') })
  const deadLease = JSON.parse(holder.line.slice('holding '.length)) as LockLease
  t.equal(deadLease.owner, 'dying-holder')
  t.equal(deadLease.ttlMs, 500, 'the lease is the lock server\'s short one')

  // Waiting longer than a lease: the live holder's renewals must keep the key (a truncate
  // needs it; appends do not, see core-changes.test.ts).
  const impatient = cluster.client({ lockTimeoutMs: 1200 })
  const refused = await impatient.truncate('/data.txt', 0).then(() => null, (err: unknown) => err)
  t.type(refused, LockTimeoutError, 'a live, renewing holder keeps the key past its lease')
  t.match((refused as Error).message, /dying-holder/)

  t.same(await stopNode(holder, 'SIGKILL'), { code: null, signal: 'SIGKILL' }, 'the holder died without releasing')

  const successor = cluster.client({ lockTimeoutMs: 5000, owner: 'successor' })
  const taken = await successor.locks.acquire('/data.txt')
  t.ok(taken.lease.token > deadLease.token, 'the new lease has a higher fencing token')
  const status = await rawGet(cluster.lock.url, LockRoutes.status, { path: '/data.txt' })
  t.equal((status.body as LockStatus).owner, 'successor')

  const appendsBefore = (await statsOf(fileServer)).appends
  const late = await rawAppendWithToken(cluster.credentials.server, fileServer.url, '/data.txt', 'late write\n', leaseCredentialOf(deadLease))
  t.equal(late.status, 409, 'the dead holder\'s token is refused while another holds the key')
  t.equal(late.body.error.code, 'LEASE_INVALID')

  const good = await rawAppendWithToken(cluster.credentials.server, fileServer.url, '/data.txt', 'successor write\n', leaseCredentialOf(taken.lease))
  t.equal(good.status, 200)
  t.equal(good.body.version, 2)
  await taken.release()

  const superseded = await rawAppendWithToken(cluster.credentials.server, fileServer.url, '/data.txt', 'later write\n', leaseCredentialOf(deadLease))
  t.equal(superseded.status, 409, 'a superseded token stays refused after the newer holder let go')
  t.equal(superseded.body.error.code, 'LEASE_INVALID')

  // An append needs no token: with the key free it goes in (the file server asks the lock
  // server, since it saw a lease on the path lately).
  const noToken = await rawAppendWithToken(cluster.credentials.server, fileServer.url, '/data.txt', 'no lock\n')
  t.equal(noToken.status, 200, 'an append with no token goes in while nobody holds the key')
  t.equal(noToken.body.version, 3)

  const junkToken = await rawAppendWithToken(cluster.credentials.server, fileServer.url, '/data.txt', 'junk\n', 'not-a-number')
  t.equal(junkToken.status, 409)
  t.equal(junkToken.body.error.code, 'LEASE_INVALID')

  t.equal((await statsOf(fileServer)).appends, appendsBefore + 2, 'only the valid writes were applied')
  t.equal((await cluster.client().readFile('/data.txt')).toString(), 'start\nsuccessor write\nno lock\n', 'no refused bytes reached the file')
  t.equal((await successor.truncate('/data.txt', 6)).version, 4, 'the released key is free again')
})

t.test('a writer whose lease ran out is refused even when nobody took the key since', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data.txt': '' }], { leaseMs: 500 })
  const { rawGet, rawPost } = rawAs(cluster.credentials.server)
  const granted = await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/data.txt', owner: 'forgetful', ttlMs: 100 })
  t.equal(granted.status, 200)
  const lease = granted.body as LockLease
  const ok = await rawAppendWithToken(cluster.credentials.server, cluster.fileServers[0].url, '/data.txt', 'in time\n', leaseCredentialOf(lease))
  t.equal(ok.status, 200, 'the token works while the lease lives')
  await waitFor('the unrenewed lease to run out', async () => {
    const status = await rawGet(cluster.lock.url, LockRoutes.status, { path: '/data.txt' })
    return !(status.body as LockStatus).held
  })
  const late = await rawAppendWithToken(cluster.credentials.server, cluster.fileServers[0].url, '/data.txt', 'too late\n', leaseCredentialOf(lease))
  t.equal(late.status, 409)
  t.equal(late.body.error.code, 'LEASE_INVALID')
  t.equal((await cluster.client().readFile('/data.txt')).toString(), 'in time\n')
})

t.test('a writer that cannot get the lock in time gets LockTimeoutError naming the holder', async (t) => {
  const cluster = await startTestCluster(t, [{ 'busy.txt': 'before\n' }])
  const holder = cluster.client({ owner: 'holder-on-host-a:1234' })
  const held = await holder.locks.acquire('/busy.txt')
  t.teardown(held.release)

  const waiter = cluster.client({ lockTimeoutMs: 300 })
  const err = await waiter.truncate('/busy.txt', 0).then(() => null, (e: unknown) => e)
  t.type(err, LockTimeoutError)
  const timeout = err as LockTimeoutError
  t.match(timeout.message, 'holder-on-host-a:1234', 'the message names the holder')
  t.equal(timeout.details.holder, 'holder-on-host-a:1234')
  t.equal(timeout.errno, 'ENOLCK')
  t.equal((await cluster.client().readFile('/busy.txt')).toString(), 'before\n', 'nothing was written')

  await held.release()
  t.equal((await waiter.truncate('/busy.txt', 3)).version, 2, 'once released, the waiter writes')
})

t.test('a freed key goes to the writer who has waited longest, not to the one who just let go', async (t) => {
  const cluster = await startTestCluster(t, [{ 'hot.txt': '' }])
  const { rawPost } = rawAs(cluster.credentials.server)
  const acquire = async (owner: string): Promise<{ status: number, body: any }> =>
    await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/hot.txt', owner })
  const release = async (lease: LockLease): Promise<void> => {
    t.equal((await rawPost(cluster.lock.url, LockRoutes.release, { path: '/hot.txt', credential: leaseCredentialOf(lease) })).status, 200)
  }

  const busyFirst = await acquire('busy')
  t.equal(busyFirst.status, 200)
  const waiting = await acquire('patient')
  t.equal(waiting.status, 423, 'the patient writer has to wait')
  t.equal(waiting.body.error.holder, 'busy')

  await release(busyFirst.body)
  const barging = await acquire('busy')
  t.equal(barging.status, 423, 'a writer that asks again right after letting go is sent behind the waiter')
  t.equal(barging.body.error.code, 'LOCKED')
  t.equal(barging.body.error.holder, 'patient', 'and is told who the key is promised to')

  const patientTurn = await acquire('patient')
  t.equal(patientTurn.status, 200, 'the waiter gets the key on its next try')
  await release(patientTurn.body)
  t.equal((await acquire('busy')).status, 200, 'then the writer that was sent behind it')
})

t.test('a waiter that gave up does not keep the key promised for long', async (t) => {
  const cluster = await startTestCluster(t, [{ 'hot.txt': '' }])
  const { rawPost } = rawAs(cluster.credentials.server)
  const holding = await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/hot.txt', owner: 'holder' })
  const quitter = cluster.client({ owner: 'quitter', lockTimeoutMs: 300 })
  await t.rejects(quitter.truncate('/hot.txt', 0), LockTimeoutError)
  await rawPost(cluster.lock.url, LockRoutes.release, { path: '/hot.txt', credential: leaseCredentialOf(holding.body) })

  const promised = await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/hot.txt', owner: 'latecomer' })
  t.equal(promised.status, 423, 'right after the release the key is still promised to the quitter')
  t.equal(promised.body.error.holder, 'quitter')
  const latecomer = cluster.client({ owner: 'latecomer', lockTimeoutMs: 5000 })
  t.equal((await latecomer.truncate('/hot.txt', 0)).version, 2, 'once the quitter stops asking, the promise lapses')
})
