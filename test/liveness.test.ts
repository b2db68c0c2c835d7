import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startFileServer } from '../servers/file/server'
import { DirectoryApi } from '../src/shared/api'
import { DEFAULT_SERVER_DOWN_AFTER_MS } from '../src/shared/defaults'
import { ConflictError, ServerUnavailableError } from '../src/shared/errors'
import type { ServerStatus } from '../src/shared/protocol'
import { Transport } from '../src/shared/transport'
import { runNode } from './helpers/processes'
import { startProcessCluster } from './helpers/processCluster'
import type { ProcessCluster, ServerProcess } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'

/*
 * Stable machine ids and liveness, on real processes: ids that survive restarts of the
 * directory and of a file server (and a move), a killed file server marked down and
 * skipped, its files failing fast but still listed, its return, and forget-server.
 */

/** Loose: well under the client's request timeout, with room for 2 busy CPUs. */
const FAST_MS = 2500

function directoryOf (cluster: ProcessCluster): DirectoryApi {
  return new DirectoryApi(new Transport('directory server', cluster.directory.url, 2000, { credential: () => cluster.credentials.server }))
}

async function statusOf (cluster: ProcessCluster, machineId: number): Promise<ServerStatus | undefined> {
  return (await directoryOf(cluster).servers()).servers.find((s) => s.machineId === machineId)
}

async function machineIdOf (server: ServerProcess): Promise<number> {
  return (await server.waitHealthy()).machineId as number
}

async function failsWithin<T> (task: Promise<T>): Promise<{ error: unknown, tookMs: number }> {
  const started = Date.now()
  const error = await task.then(() => null, (err: unknown) => err)
  return { error, tookMs: Date.now() - started }
}

t.test('machine ids survive a restart of the directory, of a file server, and a move to a new URL', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'a\n' }, { 'logs/b.txt': 'b\n' }] })
  const directory = directoryOf(cluster)
  const before = (await directory.servers()).servers
  t.same(before.map((s) => s.state), ['up', 'up'], 'both file servers are up')
  const idOf = new Map(before.map((s) => [s.url, s.machineId]))
  const identity = JSON.parse(fs.readFileSync(path.join(cluster.files[0].root as string, '.dfs', 'identity.json'), 'utf8')) as { serverId: string, machineId: number }
  t.equal(identity.machineId, idOf.get(cluster.files[0].url), 'the file server keeps its machine id in ROOT/.dfs/identity.json')
  t.equal(identity.serverId, before.find((s) => s.url === cluster.files[0].url)?.serverId, 'and the identity the directory bound it to')

  await cluster.directory.restart()
  const healed = await waitFor('both file servers to join the new directory', async () => {
    const health = await cluster.directory.waitHealthy()
    return health.serversUp === 2 && health.files === 2 && health
  }, 10_000, 100)
  t.equal(healed.servers, 2, 'no new registrations')
  const after = (await directory.servers()).servers
  t.same(new Map(after.map((s) => [s.url, s.machineId])), idOf, 'every file server has its machine id back')
  t.equal((await directory.lookup('/notes/a.txt')).server?.machineId, idOf.get(cluster.files[0].url), 'the namespace is rebuilt from their reports')

  await cluster.files[1].restart()
  t.equal(await machineIdOf(cluster.files[1]), idOf.get(cluster.files[1].url), 'a restarted file server has its machine id back')
  const client = cluster.client()
  t.equal((await client.readFile('/logs/b.txt')).toString(), 'b\n')

  // The same root served from another address: the id follows the root, not the URL.
  const first = cluster.files[0]
  await first.kill()
  const moved = await startFileServer({ root: first.root as string, port: 0, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key }, timeoutMs: 2000 })
  t.teardown(moved.close)
  t.not(moved.url, first.url)
  t.equal(moved.machineId, idOf.get(first.url), 'a file server at a new URL keeps its machine id')
  const lookup = await directory.lookup('/notes/a.txt')
  t.same([lookup.server?.url, lookup.server?.state], [moved.url, 'up'], 'and its files are found at the new URL')
  t.equal((await cluster.client().readFile('/notes/a.txt')).toString(), 'a\n')
})

t.test('a killed file server is marked down, skipped, fails fast, stays listed, comes back; forget-server drops it', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'shared/a.txt': 'a\n', 'only/x.txt': 'x\n' }, { 'shared/b.txt': 'b\n' }] })
  const [dying, other] = cluster.files
  const dyingId = await machineIdOf(dying)
  const otherId = await machineIdOf(other)
  // Default timeout (5 s): what fails fast here is the down state, not a short timeout.
  const client = cluster.client({ timeoutMs: 5000 })
  t.equal((await client.readFile('/shared/a.txt')).toString(), 'a\n', 'a client that had looked the file up and cached it')

  await dying.kill()
  const killedAt = Date.now()
  await waitFor('the directory to mark the killed server down', async () => (await statusOf(cluster, dyingId))?.state === 'down', DEFAULT_SERVER_DOWN_AFTER_MS + 5000, 100)
  const downAfter = Date.now() - killedAt
  t.ok(downAfter < DEFAULT_SERVER_DOWN_AFTER_MS + 3000, `marked down ${downAfter} ms after the kill (down after ${DEFAULT_SERVER_DOWN_AFTER_MS} ms without a heartbeat)`)
  const status = await statusOf(cluster, dyingId)
  t.ok((status?.sinceHeartbeatMs ?? 0) >= DEFAULT_SERVER_DOWN_AFTER_MS, 'GET /servers shows how long it has been silent')
  t.type(status?.lastHeartbeatMs, 'number', 'and when it was last heard of')

  const fresh = cluster.client({ timeoutMs: 5000 })
  for (const [what, task] of [
    ['stat', async () => await fresh.stat('/shared/a.txt')],
    ['read', async () => await fresh.readFile('/shared/a.txt')],
    ['read by the client that cached it', async () => await client.readFile('/shared/a.txt')],
    ['stat by the client that cached it', async () => await client.statFresh('/shared/a.txt')]
  ] as const) {
    const { error, tookMs } = await failsWithin<unknown>(task())
    t.type(error, ServerUnavailableError, `${what} of a file on the down server fails as unavailable (EIO)`)
    t.match((error as Error).message, /is down/, `${what}: and says the server is down`)
    t.ok(tookMs < FAST_MS, `${what}: at once (${tookMs} ms)`)
  }

  const listing = await fresh.list('/shared')
  t.same(listing.map((e) => [e.name, e.unavailable === true]), [['a.txt', true], ['b.txt', false]], 'a listing still names its files, marked unavailable')
  t.same((await fresh.list('/')).map((e) => e.name), ['only', 'shared'], 'and its folders')
  const { error: statAfterList } = await failsWithin(fresh.stat('/shared/a.txt'))
  t.type(statAfterList, ServerUnavailableError, 'a stat answered after the listing still fails')

  for (const name of ['/shared/new-1.txt', '/shared/new-2.txt', '/top-level.txt']) {
    await fresh.create(name)
    t.equal((await fresh.lookup(name)).server?.machineId, otherId, `${name} is created on the server that is up`)
  }
  await client.create('/shared/new-3.txt')
  t.equal((await client.lookup('/shared/new-3.txt')).server?.machineId, otherId, 'also by the client that had used the down server')
  const onlyDown = await failsWithin(fresh.create('/only/y.txt'))
  t.type(onlyDown.error, ServerUnavailableError, 'a folder held only by the down server takes no new files')

  await dying.restart()
  await waitFor('the restarted server to be up', async () => (await statusOf(cluster, dyingId))?.state === 'up', 10_000, 100)
  t.equal(await machineIdOf(dying), dyingId, 'it came back with its machine id')
  await waitFor('its files to be served again', async () => await fresh.readFile('/shared/a.txt').catch(() => undefined), 10_000, 100)
  t.equal((await client.readFile('/shared/a.txt')).toString(), 'a\n', 'it serves its files again, also to the client that failed on it')
  t.same((await fresh.list('/shared')).map((e) => e.unavailable === true), [false, false, false, false, false], 'nothing is unavailable any more')

  const refused = await runNode(['bin/dfs-serve', 'forget-server', '--directory', cluster.directory.url, '--cluster-key', cluster.credentials.keyFile, String(dyingId)])
  t.not(refused.code, 0, 'a server that is up cannot be forgotten')
  t.match(refused.stderr, /is up/)
  await t.rejects(directoryOf(cluster).forgetServer(dyingId), ConflictError)

  await dying.kill()
  await waitFor('it to be down again', async () => (await statusOf(cluster, dyingId))?.state === 'down', DEFAULT_SERVER_DOWN_AFTER_MS + 5000, 100)
  const forgot = await runNode(['bin/dfs-serve', 'forget-server', '--directory', cluster.directory.url, '--cluster-key', cluster.credentials.keyFile, String(dyingId)])
  t.equal(forgot.code, 0, forgot.stderr)
  t.match(forgot.stdout, new RegExp(`forgot file server ${dyingId} and its \\d+ entries`))
  t.equal(await statusOf(cluster, dyingId), undefined, 'GET /servers no longer shows it')
  t.same((await fresh.list('/shared')).map((e) => e.name), ['b.txt', 'new-1.txt', 'new-2.txt', 'new-3.txt'], 'its names are gone from the listing')
  t.same((await fresh.list('/')).map((e) => e.name), ['shared', 'top-level.txt'], 'a folder only it held is gone')
})

t.test('a hung file server (SIGSTOP) fails a read within the read timeout before it is marked down', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'a.txt': 'a\n' }] })
  const [file] = cluster.files
  const client = cluster.client({ timeoutMs: 5000 })
  await file.stop()
  const { error, tookMs } = await failsWithin(client.stat('/a.txt'))
  t.type(error, ServerUnavailableError, 'the stat fails as unavailable')
  t.ok(tookMs < 2000 + 1500, `within the 2 s read timeout, not the 5 s request timeout (${tookMs} ms)`)
  await file.cont()
  await waitFor('the server to answer again', async () => await client.stat('/a.txt').catch(() => undefined), 10_000, 100)
  t.pass('it answers again after SIGCONT')
})
