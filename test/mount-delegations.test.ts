import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { LockRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, sh } from './helpers/mount'
import { quoted } from './helpers/mountOps'
import { ServerRequests } from './helpers/serverRequests'
import { rawAs } from './helpers/wire'
import { waitFor } from './helpers/waitFor'

/*
 * Write delegations (issue #9): a mount keeps a file's write lease after the store that
 * needed it, so its next store of the file asks the lock server nothing, and the file
 * server trusts a lease it checked until the lease's end; another mount that needs the
 * file gets the lease by recall over the lock server's event channel, and a holder killed
 * with kill -9 frees the file when its lease runs out.
 */

const ROUNDS = 20

t.test('repeated overwrites of one file by one mount ask the lock server nothing after the first', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/f.txt': 'old\n' }])
  const mount = await mountCluster(t, cluster)
  const file = quoted(mount.at('/data/f.txt'))
  const lock = new ServerRequests(cluster.lock.url)
  t.teardown(() => lock.stop())
  // The first overwrite takes the lease (with its delegation, once the channel is open: until then, as before).
  await waitFor('a first overwrite that leaves the lease kept', async () => {
    const first = await sh(`echo first > ${file}`)
    if (first.code !== 0) throw new Error(outcome(first))
    const status = await rawAs(cluster.credentials.write).rawGet(cluster.lock.url, LockRoutes.status, { path: '/data/f.txt' })
    return status.body.held === true
  }, 10_000, 50)

  const from = lock.mark()
  const overwrites = await sh(`for i in $(seq 1 ${ROUNDS}); do echo line-$i > ${file} || exit 1; done`, { timeoutMs: 60_000 })
  t.equal(overwrites.code, 0, outcome(overwrites))
  const asked = lock.since(from)
  // Without delegations each overwrite makes one of each. A kept lease is given back when the
  // mount's channel to the lock server lapses (a renewal late on a loaded machine), and the
  // next overwrite takes a new one: at most a couple of those in a run, never one per overwrite.
  const most = 2
  for (const route of [LockRoutes.acquire, LockRoutes.release]) {
    t.ok((asked[`POST ${route}`] ?? 0) <= most, `at most ${most} POST ${route} for ${ROUNDS} overwrites: ${JSON.stringify(asked)}`)
  }
  t.ok((asked[`GET ${LockRoutes.check}`] ?? 0) <= most, `the file server checked the kept lease no more (but for a new one): ${JSON.stringify(asked)}`)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'data', 'f.txt'), 'utf8'), `line-${ROUNDS}\n`, 'the last overwrite is on the server\'s disk')
})

t.test('mounts taking turns on one file get the lease by recall, and every write is there', async (t) => {
  const cluster = await startTestCluster(t, [{ 'shared/log.txt': '' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const reader = await mountCluster(t, cluster)
  const lock = new ServerRequests(cluster.lock.url)
  t.teardown(() => lock.stop())
  const from = lock.mark()

  let expected = ''
  for (let round = 1; round <= 6; round++) {
    for (const [name, mount] of [['a', a], ['b', b]] as const) {
      const file = quoted(mount.at('/shared/log.txt'))
      // Odd rounds overwrite, even ones append: both kinds of store under the lease.
      const overwrite = round % 2 === 1 && name === 'a'
      const line = `${name}-${round}`
      const step = await sh(overwrite ? `echo ${line} > ${file}` : `echo ${line} >> ${file}`, { timeoutMs: 30_000 })
      t.equal(step.code, 0, `${name} writes ${line}: ${outcome(step)}`)
      expected = overwrite ? `${line}\n` : expected + `${line}\n`
      const seen = await sh(`cat ${quoted(reader.at('/shared/log.txt'))}`)
      t.equal(seen.stdout, expected, `a third mount reads every write so far after ${line}`)
    }
  }
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'shared', 'log.txt'), 'utf8'), expected, 'and so does the file server\'s disk')
  const asked = lock.since(from)
  t.ok((asked['POST /callbacks/ack'] ?? 0) > 0, `the lock server recalled kept leases, and their holders answered: ${JSON.stringify(asked)}`)
})

t.test('a holder killed with kill -9 frees the file when its lease runs out; another mount then writes it', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/f.txt': 'old\n' }], { leaseMs: 2_000 })
  const holder = await mountCluster(t, cluster)
  const other = await mountCluster(t, cluster)
  const { rawGet } = rawAs(cluster.credentials.write)
  await waitFor('a write that leaves the lease kept by the holder', async () => {
    const written = await sh(`echo holder > ${quoted(holder.at('/data/f.txt'))}`)
    if (written.code !== 0) throw new Error(outcome(written))
    return (await rawGet(cluster.lock.url, LockRoutes.status, { path: '/data/f.txt' })).body.held === true
  }, 10_000, 50)
  holder.daemon.kill('SIGKILL')
  await holder.exited

  const written = await sh(`echo other > ${quoted(other.at('/data/f.txt'))}`, { timeoutMs: 30_000 })
  t.equal(written.code, 0, `the other mount's write succeeds once the dead holder's lease ran out: ${outcome(written)}`)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'data', 'f.txt'), 'utf8'), 'other\n')
})
