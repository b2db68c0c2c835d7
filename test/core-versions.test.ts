import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { FileRoutes } from '../src/shared/protocol'
import { startFileServer } from '../servers/file/server'
import type { RunningFileServer } from '../servers/file/server'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { rawAs, statsOf } from './helpers/wire'

/** Stops a file server and starts it again on the same root and address, as after a reboot. */
async function restart (cluster: TestCluster, server: RunningFileServer): Promise<RunningFileServer> {
  await server.close()
  return await startFileServer({ root: server.store.root, port: server.port, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key }, timeoutMs: 2000 })
}

t.test('the version goes up by one per append and survives restarts of the file server', async (t) => {
  const cluster = await startTestCluster(t, [{ 'v.txt': 'v1\n', 'untouched.txt': 'same\n' }])
  const { rawGet } = rawAs(cluster.credentials.server)
  const client = cluster.client()
  t.equal((await client.statFresh('/v.txt')).version, 1, 'a file never written is at version 1')
  for (const expected of [2, 3, 4]) {
    const meta = await client.append('/v.txt', `v${expected}\n`)
    t.equal(meta.version, expected, `append ${expected - 1} gives version ${expected}`)
    t.equal((await client.statFresh('/v.txt')).version, expected)
  }
  t.equal((await client.readFile('/v.txt')).toString(), 'v1\nv2\nv3\nv4\n')
  t.ok(fs.existsSync(path.join(cluster.roots[0], '.dfs', 'versions.log')), 'versions are kept on disk')
  t.notOk((await client.list('/')).some((e) => e.name === '.dfs'), 'the server\'s state folder is not a file of the cluster')

  let server = await restart(cluster, cluster.fileServers[0])
  t.teardown(async () => { await server.close() })
  t.equal(server.machineId, cluster.fileServers[0].machineId, 'same address, same machine id')
  const onWire = await rawGet(server.url, FileRoutes.stat, { path: '/v.txt' })
  t.equal(onWire.body.version, 4, 'the restarted server still says version 4')
  t.equal((await client.statFresh('/v.txt')).version, 4)
  t.equal((await client.statFresh('/untouched.txt')).version, 1)

  t.equal((await client.readFile('/v.txt')).toString(), 'v1\nv2\nv3\nv4\n')
  const afterRead = await statsOf(server)
  t.equal(afterRead.contentTransfers, 0, 'the cached copy is still trusted: no content moved')
  t.equal(afterRead.notModified, 1)

  t.equal((await client.append('/v.txt', 'v5\n')).version, 5, 'appends carry on from the kept version')
  server = await restart(cluster, server)
  t.equal((await client.statFresh('/v.txt')).version, 5, 'and the count survives a second restart (after the log was compacted)')
  t.equal((await client.append('/v.txt', 'v6\n')).version, 6)
  t.equal((await cluster.client().readFile('/v.txt')).toString(), 'v1\nv2\nv3\nv4\nv5\nv6\n', 'the bytes survived with their versions')
})
