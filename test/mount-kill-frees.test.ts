import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { LockRoutes } from '../src/shared/protocol'
import { outcome, sh } from './helpers/mount'
import { quoted } from './helpers/mountOps'
import { startProcessCluster } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'
import { rawAs } from './helpers/wire'

/*
 * A mount keeps a file's write lease after use (write delegation); killed with kill -9 while
 * it keeps one, its channel to the lock server closes and its callback lease runs out, and
 * the lock server ends the lease it had delegated to it when another mount asks (issue #9,
 * servers/lock/delegatedLeases.ts). Every server and mount is a process of its own.
 *
 * Leases last 120 s here and the other mount gives up waiting for the file's lock after 25 s:
 * its write succeeds only if the dead mount's lease was ended early (a few seconds), never
 * by running out.
 */

const LEASE_MS = 120_000
const LOCK_TIMEOUT_MS = 25_000

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('a mount killed with kill -9 while it keeps a file\'s lease frees the file within seconds; another mount then overwrites it', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'data/f.txt': 'old\n' }], lockArgs: ['--lease-ms', String(LEASE_MS)] })
  const holder = await cluster.mount()
  const other = await cluster.mount(['--lock-timeout-ms', String(LOCK_TIMEOUT_MS)])
  const { rawGet } = rawAs(cluster.credentials.write)
  const held = async (): Promise<boolean> => (await rawGet(cluster.lock.url, LockRoutes.status, { path: '/data/f.txt' })).body.held === true

  // The first write opens the mount's channel to the lock server; one after it takes the
  // lease with its delegation and keeps it (for a few seconds unused: the kill comes first).
  const first = await sh(`echo first > ${quoted(holder.at('/data/f.txt'))}`)
  t.equal(first.code, 0, outcome(first))
  await sleep(1_500)
  await waitFor('an overwrite that leaves the lease kept by the holder', async () => {
    const written = await sh(`echo holder > ${quoted(holder.at('/data/f.txt'))}`)
    if (written.code !== 0) throw new Error(outcome(written))
    return await held()
  }, 20_000, 50)
  await holder.kill()

  const killedAt = Date.now()
  const written = await sh(`echo other > ${quoted(other.at('/data/f.txt'))}`, { timeoutMs: LOCK_TIMEOUT_MS + 15_000 })
  t.equal(written.code, 0, `the other mount's overwrite succeeds, though the dead mount's lease had ${LEASE_MS} ms to run: ${outcome(written)}`)
  t.comment(`the overwrite returned ${Date.now() - killedAt} ms after the kill`)
  t.equal(fs.readFileSync(path.join(cluster.files[0].root!, 'data', 'f.txt'), 'utf8'), 'other\n', 'the overwrite is on the file server\'s disk')
  const read = await sh(`cat ${quoted(other.at('/data/f.txt'))}`)
  t.equal(read.stdout, 'other\n', 'and reads back through the mount')
  t.match(cluster.lock.output(), /ended lease \d+ on \/data\/f\.txt: the client it was delegated to is gone/, 'the lock server says it ended the dead mount\'s lease')
})
