import fsp from 'node:fs/promises'
import t from 'tap'
import { changesSeenAcross, clusterWithReader, cutDirectoryConnections } from './helpers/folderChanges'
import { outcome, run } from './helpers/mount'

/** Rounds of create, rename and unlink in each loop: 300 changes, each followed by an ls. */
const ROUNDS = 100

/*
 * Folder callbacks under faults (see mount-folder-callbacks.test.ts): a reader whose event
 * channel to the directory is cut again and again, and a third mount holding the folder that
 * is stopped, never make a reader list old names after a change returned.
 */

t.test('the same while B\'s event channel is cut and restored, and while a third mount holding the folder is stopped', async (t) => {
  const { cluster, a, b } = await clusterWithReader(t)
  const stopCutting = cutDirectoryConnections(t, cluster, b)
  t.same(await changesSeenAcross(a, b, '/shared', ROUNDS, 'c'), [], 'B never listed old names while its channel was cut')
  const cuts = await stopCutting()
  t.ok(cuts > 0, `connections to the directory were cut (${cuts})`)

  const c = await cluster.mount()
  for (let i = 0; i < 5; i++) t.equal((await run('ls', [c.at('/shared')])).code, 0)
  await c.stop()
  // The stopped holder delays the first change by at most its 3 s lease, then the directory
  // forgets it: were every change held up that long, the loop would outlast the test's time limit.
  t.same(await changesSeenAcross(a, b, '/shared', ROUNDS, 's'), [], 'B never listed old names while C was stopped')
  await c.cont()
  const seen = await run('ls', [c.at('/shared')])
  t.equal(seen.stdout, '', `C, running again, lists the folder as it is now: ${outcome(seen)}`)
})

t.test('a restarted directory server voids the folder callbacks: a mount lists names made after the restart', async (t) => {
  const { cluster, a, b } = await clusterWithReader(t)
  t.same(await changesSeenAcross(a, b, '/shared', 3, 'before'), [], 'B holds the folder and sees changes')
  await cluster.directory.kill()
  await cluster.directory.restart()
  t.same(await changesSeenAcross(a, b, '/shared', 3, 'after'), [], 'after the restart too')
  await fsp.writeFile(a.at('/shared/made-after-restart'), 'x')
  const seen = await run('ls', [b.at('/shared')])
  t.equal(seen.stdout, 'made-after-restart\n', `B lists it: ${outcome(seen)}`)
})
