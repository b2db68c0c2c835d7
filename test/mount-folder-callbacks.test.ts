import diagnostics from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'
import t from 'tap'
import type { Test } from 'tap'
import { DEFAULT_CALLBACK_LEASE_MS } from '../src/shared/defaults'
import { Headers } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run, sh } from './helpers/mount'
import { quoted } from './helpers/mountOps'
import { startProcessCluster } from './helpers/processCluster'
import type { MountProcess, ProcessCluster } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'

/*
 * Folder callbacks through real mounts: a mount that listed a folder holds its names under a
 * callback of the directory server, and with callbacks of the file servers on the files
 * listed, a repeated `ls -l` costs no request. Any change to the folder's names on another
 * mount breaks the callback before that change returns, so an `ls` started afterwards sees it.
 */

/** The channel's own traffic and the servers' liveness: not what an operation costs. */
const BACKGROUND = new Set(['GET /health', 'GET /events', 'POST /callbacks/renew', 'POST /callbacks/ack'])

/** Counts the requests the servers of this process receive from clients (they carry a client id). */
function countClientRequests (t: Test): () => string[] {
  const seen: string[] = []
  const onRequest = (message: unknown): void => {
    const { request } = message as { request: IncomingMessage }
    const route = `${request.method ?? '?'} ${(request.url ?? '').split('?')[0]}`
    if (request.headers[Headers.clientId] !== undefined && !BACKGROUND.has(route)) seen.push(route)
  }
  diagnostics.subscribe('http.server.request.start', onRequest)
  t.teardown(() => diagnostics.unsubscribe('http.server.request.start', onRequest))
  return () => seen.splice(0)
}

const FILES = 40

t.test('a repeated ls -l of a folder makes no request, and shows a change made elsewhere at once', async (t) => {
  const tree: Record<string, string> = {}
  for (let i = 0; i < FILES; i++) tree[`many/f${i}`] = 'x'.repeat(i)
  const cluster = await startTestCluster(t, [tree])
  const mount = await mountCluster(t, cluster)
  const taken = countClientRequests(t)
  const folder = quoted(mount.at('/many'))
  const listing = async (): Promise<string> => {
    const ls = await sh(`ls -ln ${folder}`)
    if (ls.code !== 0) throw new Error(outcome(ls))
    return ls.stdout
  }
  // The first passes open the event channels and take the callbacks; then a pass costs nothing.
  await waitFor('an ls -l that makes no request', async () => {
    taken()
    await listing()
    return taken().length === 0
  }, 20_000, 50)
  for (let pass = 0; pass < 3; pass++) {
    const out = await listing()
    t.same(taken(), [], `pass ${pass + 1} made no request`)
    t.equal(out.split('\n').filter((line) => line.startsWith('-')).length, FILES, 'and lists every file')
    t.match(out, new RegExp(` ${FILES - 1} [A-Z][a-z]+ .* f${FILES - 1}\n`), 'with its size')
  }
  // A change through another client (with no callbacks of its own) is seen by the next ls.
  const other = cluster.client()
  await other.append('/many/f1', 'more')
  await other.writeFile('/many/new.txt', 'new')
  const after = await listing()
  t.match(after, / 5 [A-Z][a-z]+ .* f1\n/, 'the append shows in the size')
  t.match(after, /new\.txt\n/, 'the new file is listed')
  t.ok(taken().length > 0, 'which took requests: the callbacks were broken')
})

/**
 * Creates, renames and removes names on `writer`, and after each returned lists the folder
 * on `reader`, `rounds` times; answers what the reader got wrong.
 */
async function changesSeenAcross (writer: MountProcess, reader: MountProcess, folder: string, rounds: number, tag: string): Promise<string> {
  const w = quoted(writer.at(folder))
  const r = quoted(reader.at(folder))
  const script = `
    for i in $(seq 1 ${rounds}); do
      : > ${w}/${tag}$i || { echo "create $i failed"; continue; }
      ls ${r} | grep -qx ${tag}$i || echo "create of ${tag}$i not seen"
      ls ${r} | grep -qx ${tag}$i || echo "create of ${tag}$i not seen on a second look"
      mv ${w}/${tag}$i ${w}/moved-${tag}$i || echo "rename $i failed"
      names=$(ls ${r})
      echo "$names" | grep -qx ${tag}$i && echo "rename of ${tag}$i: old name still seen"
      echo "$names" | grep -qx moved-${tag}$i || echo "rename of ${tag}$i: new name not seen"
      rm ${w}/moved-${tag}$i || echo "unlink $i failed"
      ls ${r} | grep -qx moved-${tag}$i && echo "unlink of moved-${tag}$i not seen"
    done; true`
  const result = await sh(script, { timeoutMs: 280_000 })
  if (result.code !== 0) return outcome(result)
  return (result.stdout + result.stderr).trim()
}

async function clusterWithReader (t: Test): Promise<{ cluster: ProcessCluster, a: MountProcess, b: MountProcess }> {
  const cluster = await startProcessCluster(t, { trees: [{ 'shared/.keep': '' }] })
  const a = await cluster.mount()
  const b = await cluster.mount()
  // B lists the folder until it holds it (its channel opens with its first request).
  for (let i = 0; i < 5; i++) t.equal((await run('ls', [b.at('/shared')])).code, 0)
  return { cluster, a, b }
}

t.test('a create, rename or unlink on mount A is seen by an ls on mount B started after it returned, 1000 times', async (t) => {
  const { a, b } = await clusterWithReader(t)
  t.equal(await changesSeenAcross(a, b, '/shared', 1000, 'n'), '', 'B never listed old names')
})

t.test('the same while B\'s event channel is cut and restored, and while a third mount holding the folder is stopped', async (t) => {
  const { cluster, a, b } = await clusterWithReader(t)
  const port = cluster.directory.port
  // Cuts B's connections to the directory server (its event channel among them) every 200 ms.
  const cut = `for p in $(ss -tnpH state established '( dport = :${port} )' | grep 'pid=${b.pid},' | awk '{print $3}' | sed 's/.*://'); do
    ss -K -tn state established "( dport = :${port} and sport = :$p )" > /dev/null && echo cut; done`
  let cutting = true
  let cuts = 0
  const cutter = (async () => {
    while (cutting) {
      const killed = await sh(cut)
      cuts += killed.stdout.split('\n').filter((line) => line === 'cut').length
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  })()
  t.teardown(async () => {
    cutting = false
    await cutter
  })
  t.equal(await changesSeenAcross(a, b, '/shared', 200, 'c'), '', 'B never listed old names while its channel was cut')
  cutting = false
  await cutter
  t.ok(cuts > 0, `connections to the directory were cut (${cuts})`)

  const c = await cluster.mount()
  for (let i = 0; i < 5; i++) t.equal((await run('ls', [c.at('/shared')])).code, 0)
  await c.stop()
  const started = Date.now()
  t.equal(await changesSeenAcross(a, b, '/shared', 200, 's'), '', 'B never listed old names while C was stopped')
  // A bound for hangs only, not a timing test: a stopped holder delays a change by at most its lease, once.
  t.ok(Date.now() - started < 200 * DEFAULT_CALLBACK_LEASE_MS, 'the stopped mount did not hold every change up for its lease')
  await c.cont()
  const seen = await run('ls', [c.at('/shared')])
  t.equal(seen.stdout, '', `C, running again, lists the folder as it is now: ${outcome(seen)}`)
})
