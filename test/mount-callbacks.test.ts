import t from 'tap'
import { DEFAULT_CALLBACK_LEASE_MS } from '../src/shared/defaults'
import { outcome, run } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import { readUntilCallbackGranted } from './helpers/mountOps'

/*
 * Callbacks through real mounts, each its own process: a stopped mount that holds a
 * callback delays a writer by at most the callback lease, and once it runs again it does not
 * serve the old bytes.
 */

t.test('a stopped mount holding a callback delays a writer by at most its lease, and reads the new bytes when it runs again', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'one\n' }] })
  const holder = await cluster.mount()
  const file = holder.at('/notes/a.txt')
  const client = cluster.client()
  await readUntilCallbackGranted(file, cluster.files[0], 'one\n')

  await holder.stop()
  const started = Date.now()
  await client.append('/notes/a.txt', 'two\n')
  const waited = Date.now() - started
  // A bound for hangs only, not a timing test: the lease plus generous slack for a busy machine.
  t.ok(waited < DEFAULT_CALLBACK_LEASE_MS + 10_000, `the append waited for the stopped holder at most about its lease (${waited} ms)`)

  await holder.cont()
  const after = await run('cat', [file])
  t.equal(after.stdout, 'one\ntwo\n', `the mount that was stopped reads the new bytes: ${outcome(after)}`)
  if (after.code !== 0) t.comment(holder.output())
})
