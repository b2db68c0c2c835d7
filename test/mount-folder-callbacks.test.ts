import diagnostics from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'
import t from 'tap'
import type { Test } from 'tap'
import { Headers } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { changesSeenAcross, clusterWithReader } from './helpers/folderChanges'
import { mountCluster, outcome, sh } from './helpers/mount'
import { quoted } from './helpers/mountOps'
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

t.test('a create, rename or unlink on mount A is seen by an ls on mount B started after it returned, 1000 times', async (t) => {
  const { a, b } = await clusterWithReader(t)
  t.same(await changesSeenAcross(a, b, '/shared', 334, 'n'), [], 'B never listed old names')
})
