import fsp from 'node:fs/promises'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { cutDirectoryConnections } from './helpers/folderChanges'
import { mountCluster, outcome, sh } from './helpers/mount'
import { quoted } from './helpers/mountOps'
import { startProcessCluster } from './helpers/processCluster'
import type { MountProcess } from './helpers/processCluster'
import { Requests, show } from './helpers/requests'
import { waitFor } from './helpers/waitFor'

/*
 * Lookups a mount no longer makes (issue #12's database, #9): a name missed in a small
 * folder makes the mount hold the folder's names under a folder callback, so the next misses
 * there (sqlite's journal and -wal, editors' swap files) cost no request; the mount's own
 * creates and unlinks update that copy instead of breaking it (the directory spares the
 * changer); and a store's answer becomes the new value of the writer's own file callback,
 * so a stat after it needs no request. Another mount's change is still seen at once.
 */

const ROUNDS = 20

t.test('a journal made, written, removed and missed next to a file written in place makes no lookup after the first round', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/data.bin': 'x'.repeat(100) }])
  const mount = await mountCluster(t, cluster)
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const data = quoted(mount.at('/db/data.bin'))
  const journal = quoted(mount.at('/db/data.bin-journal'))
  // What sqlite does per transaction, in shell: check for a hot journal (a miss), make and
  // write the journal, write the database in place, remove the journal; stat the database.
  const round = (i: number): string => `stat -c %s ${data} > /dev/null && ! stat ${journal} 2> /dev/null &&
    printf 'journal %s' ${i} > ${journal} && printf y | dd of=${data} bs=1 seek=${i} conv=notrunc status=none &&
    rm ${journal} && ! stat ${journal} 2> /dev/null && stat -c %s ${data} > /dev/null`
  const lookupsIn = (from: number): string[] =>
    requests.listSince(from, true).filter((r) => r.route === 'GET /lookup' && r.path?.startsWith('/db/') === true).map((r) => r.path as string)
  // The first rounds open the event channels and take the callbacks (the folder's on the first miss).
  await waitFor('a round that makes no lookup in /db', async () => {
    const from = requests.mark()
    const warm = await sh(round(0))
    if (warm.code !== 0) throw new Error(outcome(warm))
    return lookupsIn(from).length === 0
  }, 30_000, 50)

  const from = requests.mark()
  const rounds = await sh(`for i in $(seq 1 ${ROUNDS}); do ${round(0).replace(/\n/g, ' ')} || exit 1; done`, { timeoutMs: 120_000 })
  t.equal(rounds.code, 0, outcome(rounds))
  const made = requests.since(from, true)
  t.same(lookupsIn(from), [], `no lookup of a name in /db in ${ROUNDS} rounds: ${show(made)}`)
  t.equal(made.get('PUT /create'), ROUNDS, `the journal is made once a round: ${show(made)}`)
  t.equal(made.get('POST /unlink'), ROUNDS, 'and removed once a round')
  t.same(requests.listSince(from, true).filter((r) => r.route === 'GET /list' && r.path === '/db'), [],
    'and the folder is not listed again: this mount\'s own changes keep its copy current')
  t.equal(await fsp.readFile(`${cluster.roots[0]}/db/data.bin`, 'utf8'), 'y' + 'x'.repeat(99), 'the in-place writes are on the server')

  // An overwrite's open needs the file's current size: after this mount's own store, the
  // callback vouches for it with the store's answer, so `echo > file` asks nothing of it.
  const over = quoted(mount.at('/db/over.txt'))
  const warmOver = await sh(`echo 0 > ${over} && echo 1 > ${over}`)
  t.equal(warmOver.code, 0, outcome(warmOver))
  const overFrom = requests.mark()
  const overwrites = await sh(`for i in $(seq 1 ${ROUNDS}); do echo $i > ${over} || exit 1; done`, { timeoutMs: 120_000 })
  t.equal(overwrites.code, 0, outcome(overwrites))
  const asked = requests.listSince(overFrom, true).filter((r) => r.path === '/db/over.txt' && (r.route === 'GET /stat' || r.route === 'GET /lookup'))
  t.same(asked, [], `${ROUNDS} overwrites make no stat or lookup of the file`)
  t.equal(await fsp.readFile(`${cluster.roots[0]}/db/over.txt`, 'utf8'), `${ROUNDS}\n`, 'and the last one is on the server')

  // The store's answer is the writer's callback's new value: once the brief memory of stats
  // has run out, a stat of the file it wrote still needs no request.
  await sh(`printf z | dd of=${data} bs=1 seek=5 conv=notrunc status=none`)
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const before = requests.mark()
  const stat = await sh(`stat -c %s ${data}`)
  t.equal(stat.stdout.trim(), '100', outcome(stat))
  t.same(requests.listSince(before, true).filter((r) => r.path === '/db/data.bin'), [], 'a stat after this mount\'s own store makes no request for the file')
})

/**
 * Rounds of changes to `folder` by both mounts, each checked on both right after it
 * returned: B's own create and unlink (which B's copy of the folder takes itself) and A's
 * (which break it). Answers what either mount got wrong (none: nothing).
 */
async function namesSeenOnBoth (a: MountProcess, b: MountProcess, folder: string, rounds: number, tag: string): Promise<string[]> {
  const wrong: string[] = []
  const exists = async (mount: MountProcess, name: string): Promise<boolean> =>
    await fsp.stat(mount.at(`${folder}/${name}`)).then(() => true, (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false
      throw err
    })
  const expect = async (name: string, present: boolean, after: string): Promise<void> => {
    for (const [mount, which] of [[a, 'A'], [b, 'B']] as const) {
      if (await exists(mount, name) !== present) wrong.push(`${after}: ${which} ${present ? 'misses' : 'still sees'} ${name}`)
    }
  }
  for (let i = 1; i <= rounds; i++) {
    const mine = `${tag}-b${i}`
    const theirs = `${tag}-a${i}`
    await expect(theirs, false, `round ${i} start`)
    await fsp.writeFile(b.at(`${folder}/${mine}`), 'b')
    await expect(mine, true, `B made ${mine}`)
    await fsp.writeFile(a.at(`${folder}/${theirs}`), 'a')
    await expect(theirs, true, `A made ${theirs}`)
    await fsp.unlink(a.at(`${folder}/${theirs}`))
    await expect(theirs, false, `A removed ${theirs}`)
    await fsp.unlink(b.at(`${folder}/${mine}`))
    await expect(mine, false, `B removed ${mine}`)
    const listed = (await fsp.readdir(b.at(folder))).filter((name) => name.startsWith(`${tag}-`))
    if (listed.length > 0) wrong.push(`round ${i}: B lists ${listed.join(', ')}`)
  }
  return wrong
}

t.test('another mount\'s creates and unlinks in a folder this mount holds are seen at once, also while its channel is cut', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'shared/.keep': '' }] })
  const a = await cluster.mount()
  const b = await cluster.mount()
  // Each mount's event channels open with its first requests; until then (a round or two)
  // a stat may be answered from the mount's brief memory of stats, up to a second old.
  let warm = 0
  await waitFor('a round with event channels open', async () => (await namesSeenOnBoth(a, b, '/shared', 1, `warm${++warm}`)).length === 0, 30_000, 50)
  t.same(await namesSeenOnBoth(a, b, '/shared', ROUNDS, 'calm'), [], 'no stale name on either mount')
  const stopCutting = cutDirectoryConnections(t, cluster, b)
  t.same(await namesSeenOnBoth(a, b, '/shared', ROUNDS, 'cut'), [], 'none while B\'s connections to the directory are cut')
  t.ok(await stopCutting() > 0, 'connections to the directory were cut')
})
