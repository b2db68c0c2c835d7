import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, sh } from './helpers/mount'
import { quoted } from './helpers/mountOps'
import { Requests, show, total } from './helpers/requests'
import { waitFor } from './helpers/waitFor'
import { KEEP_IDLE_MS } from '../src/client/keptLeases'

/*
 * How many requests one operation on a mount costs, counted where the servers receive them
 * (test/helpers/requests.ts). What an operation's own requests are is exact; how many
 * revalidations (a lookup or stat once a remembered answer is a second old) come along
 * depends on how long the loop takes, so those are only shown, never counted.
 */

/**
 * Looking a name up again, which depends on time: the directory's lookup and placement, a
 * file server's stat; and the listing of a small folder a lookup answered, which the mount
 * makes behind that answer to hold the folder's names (src/client/folderCopies.ts).
 */
const REVALIDATION = new Set(['GET /lookup', 'GET /stat', 'GET /placement', 'GET /list'])

/** The routes in `counts` other than `expected` and revalidations. */
function unexpected (counts: Map<string, number>, expected: string[]): string[] {
  return [...counts.keys()].filter((route) => !expected.includes(route) && !REVALIDATION.has(route))
}

const ROUNDS = 20

t.test('an append through the mount (open, write, close) is one request; a create with data is two, and one among the servers', async (t) => {
  const cluster = await startTestCluster(t, [{ 'logs/app.log': '', 'made/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const log = mount.at('/logs/app.log')
  // The first open learns the file (lookup, stat); what follows is what each append costs.
  const first = await sh(`echo warm >> ${quoted(log)}`)
  t.equal(first.code, 0, outcome(first))

  let from = requests.mark()
  const appends = await sh(`for i in $(seq 1 ${ROUNDS}); do echo line-$i >> ${quoted(log)}; done`, { timeoutMs: 60_000 })
  t.equal(appends.code, 0, outcome(appends))
  const byAppends = requests.since(from, true)
  t.equal(byAppends.get('POST /append'), ROUNDS, `one POST /append per append: ${show(byAppends)}`)
  t.same(unexpected(byAppends, ['POST /append']), [], `and nothing else but revalidations: ${show(byAppends)}`)
  t.equal(total(requests.since(from, false)), 0, 'and no request among the servers')
  const lines = fs.readFileSync(path.join(cluster.roots[0], 'logs', 'app.log'), 'utf8').split('\n').filter(Boolean)
  t.equal(lines.length, ROUNDS + 1, 'every line is on the server\'s disk')

  // cp of a local file: create (O_EXCL), write, close, as tar -x and cp -r do.
  const sources = t.testdir(Object.fromEntries(Array.from({ length: ROUNDS }, (_, i) => [`f${i + 1}`, `data-${i + 1}`])))
  from = requests.mark()
  const creates = await sh(`for i in $(seq 1 ${ROUNDS}); do cp ${quoted(sources)}/f$i ${quoted(mount.at('/made'))}/f$i || exit 1; done`, { timeoutMs: 60_000 })
  t.equal(creates.code, 0, outcome(creates))
  const byCreates = requests.since(from, true)
  // The kernel's lookup of the new name finds nothing: the first lists the small folder (a
  // folder callback), and the mount answers the others itself, its own creates keeping its
  // copy current. Then the create with its bytes at the close.
  t.equal(byCreates.get('PUT /create'), ROUNDS, `one PUT /create per file, at its close: ${show(byCreates)}`)
  const newNames = requests.listSince(from, true).filter((r) => r.route === 'GET /lookup' && r.path?.startsWith('/made/') === true)
  // (The first few, while the mount's channel to the directory opens.)
  t.ok(newNames.length < ROUNDS / 2, `not a lookup per new name: ${newNames.map((r) => r.path).join(', ')}`)
  t.same(unexpected(byCreates, ['PUT /create']), [], `and nothing else but revalidations (no POST /create, no POST /append): ${show(byCreates)}`)
  const amongServers = requests.since(from, false)
  t.same(Object.fromEntries(amongServers), { 'POST /servers/1/entries': ROUNDS },
    'the file server\'s own per create: the directory\'s claim, and no lock key (keys are implicit)')
  for (let i = 1; i <= ROUNDS; i++) {
    t.equal(fs.readFileSync(path.join(cluster.roots[0], 'made', `f${i}`), 'utf8'), `data-${i}`)
  }

  // A shell's > closes the file once before it writes (it moves the descriptor to 1 with
  // dup2): that first close must make the file, so the bytes follow as an append.
  from = requests.mark()
  const shells = await sh(`for i in $(seq 1 ${ROUNDS}); do echo text-$i > ${quoted(mount.at('/made'))}/s$i; done`, { timeoutMs: 60_000 })
  t.equal(shells.code, 0, outcome(shells))
  const byShells = requests.since(from, true)
  t.equal(byShells.get('PUT /create'), ROUNDS, `one PUT /create per file, at the first close: ${show(byShells)}`)
  t.equal(byShells.get('POST /append'), ROUNDS, `one POST /append per file, at the last: ${show(byShells)}`)
  t.same(unexpected(byShells, ['PUT /create', 'POST /append']), [], `and nothing else but revalidations: ${show(byShells)}`)
  for (let i = 1; i <= ROUNDS; i++) {
    t.equal(fs.readFileSync(path.join(cluster.roots[0], 'made', `s${i}`), 'utf8'), `text-${i}\n`)
  }
})

t.test('a journal\'s life, as sqlite\'s (create, write, fsync, rewrite its head, fsync, close, unlink): the lease rides with the create and stays past the unlink, nothing is fetched, nothing released', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const journal = mount.at('/db/test.db-journal')
  // One process, so the mount sees one program's calls in order, as sqlite makes them; the last journal stays.
  const script = (rounds: number): string => `
    const fs = require('fs')
    const file = ${JSON.stringify(journal)}
    for (let i = 0; i < ${rounds}; i++) {
      const fd = fs.openSync(file, 'w+')
      fs.writeSync(fd, Buffer.alloc(4096, 97 + (i % 26)), 0, 4096, 0)
      fs.fsyncSync(fd)
      fs.writeSync(fd, Buffer.from('head-' + i), 0, 5 + String(i).length, 0)
      fs.fsyncSync(fd)
      fs.closeSync(fd)
      if (i === ${rounds} - 1) break
      fs.unlinkSync(file)
    }`
  // The first round learns the folder; the rounds after are what each journal costs.
  const warm = await sh(`node -e ${quoted(script(1))} && rm ${quoted(journal)}`, { timeoutMs: 30_000 })
  t.equal(warm.code, 0, outcome(warm))
  const from = requests.mark()
  const run = await sh(`node -e ${quoted(script(ROUNDS))}`, { timeoutMs: 120_000 })
  t.equal(run.code, 0, outcome(run))
  const byClient = requests.since(from, true)
  const unlinks = ROUNDS - 1
  t.equal(byClient.get('PUT /create'), ROUNDS, `one PUT /create per journal: ${show(byClient)}`)
  // The unlink keeps the lease (Headers.keepLease): the next journal is made under it.
  t.ok((byClient.get('POST /locks/acquire') ?? 0) < ROUNDS / 4, `not an acquire per journal: the lease stays from one to the next: ${show(byClient)}`)
  t.equal(byClient.get('PATCH /content'), ROUNDS, `the rewrite of its head is one range write: ${show(byClient)}`)
  t.equal(byClient.get('POST /unlink'), unlinks, `one unlink: ${show(byClient)}`)
  t.notOk(byClient.has('GET /content'), `the rewrite fetches nothing: the create's callback vouches for the copy: ${show(byClient)}`)
  t.notOk(byClient.has('POST /locks/release'), `and nothing is released: the lease is kept past each unlink: ${show(byClient)}`)
  t.same(unexpected(byClient, ['PUT /create', 'POST /locks/acquire', 'PATCH /content', 'POST /unlink']), [], `and nothing else but revalidations: ${show(byClient)}`)
  const amongServers = requests.since(from, false)
  t.ok((amongServers.get('GET /locks/check') ?? 0) < ROUNDS / 4, `the file server knows the kept lease: not a check per create: ${show(amongServers)}`)
  t.notOk(amongServers.has('DELETE /keys'), `no key removal per unlink: the journal is made again at once and keeps its key (KeyRemovals): ${show(amongServers)}`)
  const last = fs.readFileSync(path.join(cluster.roots[0], 'db', 'test.db-journal'))
  const i = ROUNDS - 1
  t.equal(last.subarray(0, 5 + String(i).length).toString(), 'head-' + i, 'the last head is on the server\'s disk')
  t.equal(last.length, 4096, 'over the bytes of the create')
  t.equal(last[4095], 97 + (i % 26))
  // The last journal removed and not made again: its key goes a little later, once.
  const removedAt = requests.mark()
  const rm = await sh(`rm ${quoted(journal)}`)
  t.equal(rm.code, 0, outcome(rm))
  await waitFor('the removal of the last journal\'s key', async () => requests.since(removedAt, false).has('DELETE /keys'), 15_000, 50)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(requests.since(removedAt, false).get('DELETE /keys'), 1, `its key removed once: ${show(requests.since(removedAt, false))}`)
})

t.test('rm of files nobody holds: one request each, no lease taken, none given back later, the keys gone', async (t) => {
  const files: Record<string, string> = {}
  for (let i = 1; i <= ROUNDS; i++) files[`old/f${i}`] = `old-${i}\n`
  const cluster = await startTestCluster(t, [files])
  const mount = await mountCluster(t, cluster)
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const listed = await sh(`ls ${quoted(mount.at('/old'))} > /dev/null`)
  t.equal(listed.code, 0, outcome(listed))
  const from = requests.mark()
  const removed = await sh(`rm ${quoted(mount.at('/old'))}/f*`, { timeoutMs: 60_000 })
  t.equal(removed.code, 0, outcome(removed))
  // A lease kept past an unlink (the journal's, above) would be given back once idle.
  await new Promise((resolve) => setTimeout(resolve, KEEP_IDLE_MS + 1000))
  const byClient = requests.since(from, true)
  const byServers = requests.since(from, false)
  t.equal(byClient.get('POST /unlink'), ROUNDS, `one unlink each: ${show(byClient)}`)
  t.notOk(byClient.has('POST /locks/acquire'), `no lease taken: ${show(byClient)}`)
  t.notOk(byClient.has('POST /locks/release'), `no release, then or later: ${show(byClient)}`)
  t.notOk(byServers.has('GET /locks/check'), `no lease for the file server to check: ${show(byServers)}`)
  t.equal(byServers.get('DELETE /keys'), ROUNDS, `each key removed, once: ${show(byServers)}`)
  t.same(fs.readdirSync(path.join(cluster.roots[0], 'old')), [], 'and the files are gone from the server')
})

t.test('files a mount made are stat\'ed, read and removed with no request to their server: each create came with a callback', async (t) => {
  const cluster = await startTestCluster(t, [{ 'made/.keep': '' }])
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const mount = await mountCluster(t, cluster)
  const folder = quoted(mount.at('/made'))
  // The mount's event channels open with its first requests (a create asks for a callback
  // only once the file server's is open); the files made after that are what counts.
  const warm = await sh(`echo warm > ${folder}/warm && cat ${folder}/warm > /dev/null`)
  t.equal(warm.code, 0, outcome(warm))
  await waitFor('the mount\'s event channels to the directory and the file server', async () => requests.eventChannels >= 2, 20_000, 50)
  // cp: create, write, close, as tar -x and cp -r make files (one PUT /create each).
  const sources = t.testdir(Object.fromEntries(Array.from({ length: ROUNDS }, (_, i) => [`f${i + 1}`, `data-${i + 1}`])))
  // And a shell's >: a create at the first close, then the line as an append.
  const made = await sh(`for i in $(seq 1 ${ROUNDS}); do cp ${quoted(sources)}/f$i ${folder}/f$i && echo line-$i > ${folder}/g$i || exit 1; done`, { timeoutMs: 60_000 })
  t.equal(made.code, 0, outcome(made))
  // Past the second a remembered stat is trusted (DEFAULT_META_TTL_MS): only a callback answers now.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const from = requests.mark()
  // No ls: a listing takes callbacks on the files it lists in bulk.
  const used = await sh(`for i in $(seq 1 ${ROUNDS}); do stat ${folder}/f$i ${folder}/g$i > /dev/null && cat ${folder}/f$i ${folder}/g$i > /dev/null && rm ${folder}/f$i ${folder}/g$i || exit 1; done`, { timeoutMs: 60_000 })
  t.equal(used.code, 0, outcome(used))
  const byClient = requests.since(from, true)
  const ofFiles = requests.listSince(from, true).filter((r) => /^\/made\/[fg]\d+$/.test(r.path ?? ''))
  t.same(ofFiles.filter((r) => r.route !== 'POST /unlink').map((r) => `${r.route} ${r.path ?? ''}`), [], `no request for the files but their unlinks: ${show(byClient)}`)
  t.equal(byClient.get('POST /unlink'), 2 * ROUNDS, `one unlink each: ${show(byClient)}`)
  t.same(fs.readdirSync(path.join(cluster.roots[0], 'made')).sort(), ['.keep', 'warm'], 'and the files are gone from the server')
})

t.test('rm of a file another mount is writing: done once the writer\'s change is stored, not held back until its close', async (t) => {
  const cluster = await startTestCluster(t, [{ 'shared/busy.txt': 'old\n' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const signals = t.testdir()
  const started = path.join(signals, 'started')
  const release = path.join(signals, 'release')
  // A write in place (not at the end) makes a working copy on A, under the file's lease while
  // it holds the change; the mount stores it after a pause (write-behind), and the file stays
  // open until the test's signal.
  const writer = sh(`exec 3<> ${quoted(a.at('/shared/busy.txt'))}; printf N >&3; touch ${quoted(started)}; ` +
    `while [ ! -e ${quoted(release)} ]; do sleep 0.05; done; exec 3>&-`, { timeoutMs: 60_000 })
  await waitFor('A to write', async () => fs.existsSync(started), 20_000)
  const from = requests.mark()
  const removed = await sh(`rm ${quoted(b.at('/shared/busy.txt'))}`, { timeoutMs: 30_000 })
  t.equal(removed.code, 0, `B's rm is done while A still holds the file open (${outcome(removed)})`)
  t.same(fs.readdirSync(path.join(cluster.roots[0], 'shared')), [], 'the file is gone from the server')
  fs.writeFileSync(release, '')
  t.equal((await writer).code, 0, 'A closed')
  t.same(fs.readdirSync(path.join(cluster.roots[0], 'shared')), [], 'and A\'s close, with nothing left to store, did not bring it back')
  // Without a lease first: refused while A held the key with its change unstored, then
  // asked again under the lease once A gave it up (recalled, or with no channel, after its
  // store); or, A's store and giving up done already, at once.
  const byClients = requests.since(from, true)
  const unlinks = byClients.get('POST /unlink') ?? 0
  t.ok(unlinks === 1 || unlinks === 2, `B asked once or twice: ${show(byClients)}`)
  t.equal(byClients.get('POST /locks/acquire') ?? 0, unlinks - 1, `a lease only for the second ask: ${show(byClients)}`)
})

t.test('an exclusive create (O_EXCL) fails with EEXIST when another mount made the file, also when both race', async (t) => {
  const cluster = await startTestCluster(t, [{ 'locks/.keep': '' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  // set -C: the shell's > opens with O_CREAT|O_EXCL.
  const exclusive = async (file: string, text: string): Promise<number | null> => (await sh(`set -C; echo ${text} > ${quoted(file)}`)).code
  t.equal(await exclusive(a.at('/locks/one'), 'a'), 0, 'A makes the file')
  t.not(await exclusive(b.at('/locks/one'), 'b'), 0, 'B cannot make it again')
  t.not(await exclusive(a.at('/locks/one'), 'a2'), 0, 'nor can A')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'locks', 'one'), 'utf8'), 'a\n', 'A\'s bytes stay')

  // Both look the name up and find nothing; their creates ride in their closes, and the one
  // that comes second fails there with EEXIST. dd reports an error of its close, as tar and
  // cp do (a shell does not: it ignores errors of close).
  const racer = async (file: string, text: string): Promise<{ code: number | null, stderr: string }> =>
    await sh(`printf ${text} | dd of=${quoted(file)} conv=excl status=none`)
  for (let round = 0; round < 5; round++) {
    const name = `/locks/race-${round}`
    const outcomes = await Promise.all([racer(a.at(name), 'a'), racer(b.at(name), 'b')])
    const codes = outcomes.map((o) => o.code)
    t.equal(codes.filter((code) => code === 0).length, 1, `exactly one of the two made ${name}: ${codes.join(', ')}`)
    const loser = outcomes.find((o) => o.code !== 0)
    t.match(loser?.stderr, /File exists/, 'the other is told EEXIST')
    const winner = codes[0] === 0 ? 'a' : 'b'
    t.equal(fs.readFileSync(path.join(cluster.roots[0], name), 'utf8'), winner, 'with the winner\'s bytes')
  }
  t.same(fs.readdirSync(path.join(cluster.roots[0], 'locks')).filter((n) => n.includes('conflict')), [], 'and no copy of the loser\'s bytes: it was told')
})
