import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { LISTED_NAMES_PER_LOOKUP, SMALL_FOLDER_NAMES } from '../src/client/folderCopies'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, sh } from './helpers/mount'
import { quoted } from './helpers/mountOps'
import { Requests } from './helpers/requests'
import { waitFor } from './helpers/waitFor'

/*
 * Copying files into a folder too large to be listed for one lookup (src/client/folderCopies.ts,
 * LISTED_NAMES_PER_LOOKUP): each new name's lookup asks the directory until the lookups there
 * have earned a listing, which then goes behind them; from then on the new names' lookups
 * cost no request, and the folder stays exact for this mount and for another.
 */

const NAMES = SMALL_FOLDER_NAMES + 500
const COPIES = 60

t.test('cp of many files into a large folder: the folder is listed once the lookups there earned it, then new names cost no lookup', async (t) => {
  const tree: Record<string, string> = {}
  for (let i = 0; i < NAMES; i++) tree[`big/f${i}`] = 'x'
  const cluster = await startTestCluster(t, [tree])
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const mount = await mountCluster(t, cluster)
  const other = await mountCluster(t, cluster)
  const sources = t.testdir(Object.fromEntries(Array.from({ length: COPIES }, (_, i) => [`n${i}`, `data-${i}`])))
  const big = mount.at('/big')
  // The mounts' event channels open with their first requests: before, no callback can be had.
  const warm = await sh(`stat ${quoted(path.join(big, 'f0'))} ${quoted(other.at('/big/f0'))} > /dev/null`)
  t.equal(warm.code, 0, outcome(warm))
  await waitFor('both mounts\' event channels to the directory and the file server', async () =>
    requests.eventChannels >= 4, 20_000, 50)

  const from = requests.mark()
  const copy = await sh(`for i in $(seq 0 ${COPIES - 1}); do cp ${quoted(sources)}/n$i ${quoted(big)}/n$i || exit 1; done`, { timeoutMs: 120_000 })
  t.equal(copy.code, 0, outcome(copy))
  const seen = requests.listSince(from, true)
  const newNameLookups = seen.filter((r) => r.route === 'GET /lookup' && /^\/big\/n\d+$/.test(r.path ?? ''))
  const listings = seen.filter((r) => r.route === 'GET /list' && r.path === '/big')
  const earnedAfter = Math.ceil(NAMES / LISTED_NAMES_PER_LOOKUP)
  t.equal(listings.length, 1, `the folder is listed once, behind the lookup that earned it (${listings.length})`)
  t.ok(newNameLookups.length >= earnedAfter - 2, `the first new names are looked up at the directory (${newNameLookups.length})`)
  t.ok(newNameLookups.length < COPIES / 2, `then no longer: ${newNameLookups.length} lookups for ${COPIES} new names`)
  for (let i = 0; i < COPIES; i++) t.equal(fs.readFileSync(path.join(cluster.roots[0], 'big', `n${i}`), 'utf8'), `data-${i}`)

  // What this mount holds is exact: its own names all there, and another mount's new file
  // and removal seen at once (the directory breaks the copy before answering them).
  const own = await sh(`for i in $(seq 0 ${COPIES - 1}); do cat ${quoted(big)}/n$i > /dev/null || exit 1; done`)
  t.equal(own.code, 0, `every file this mount made opens: ${outcome(own)}`)
  const elsewhere = await sh(`echo from-other > ${quoted(other.at('/big/made-elsewhere'))} && rm ${quoted(other.at('/big/n0'))}`)
  t.equal(elsewhere.code, 0, outcome(elsewhere))
  const seenHere = await sh(`cat ${quoted(path.join(big, 'made-elsewhere'))}; test -e ${quoted(path.join(big, 'n0'))} && echo n0-still-here; ls ${quoted(big)} | wc -l`)
  t.equal(seenHere.code, 0, outcome(seenHere))
  t.equal(seenHere.stdout, `from-other\n${NAMES + COPIES}\n`, 'another mount\'s create and unlink are seen here at once')
})
