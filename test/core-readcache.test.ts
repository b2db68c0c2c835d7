import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { statsOf } from './helpers/wire'

t.test('two clients with separate caches: appends are seen, hits move no content, stale copies are refetched', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'one\n' }])
  const server = cluster.fileServers[0]
  const writer = cluster.client()
  const reader = cluster.client()
  t.not(writer.cache.dir, reader.cache.dir, 'each client has a cache folder of its own')

  t.equal((await writer.readFile('/notes/todo.txt')).toString(), 'one\n')
  t.equal((await reader.readFile('/notes/todo.txt')).toString(), 'one\n')
  const afterFirstReads = await statsOf(server)
  t.equal(afterFirstReads.contentTransfers, 2, 'each client fetched its first copy')
  t.equal(afterFirstReads.notModified, 0)

  t.equal((await reader.readFile('/notes/todo.txt')).toString(), 'one\n')
  const afterHit = await statsOf(server)
  t.equal(afterHit.contentTransfers, afterFirstReads.contentTransfers, 'a cache hit transfers no content')
  t.equal(afterHit.contentBytes, afterFirstReads.contentBytes)
  t.equal(afterHit.notModified, afterFirstReads.notModified + 1, 'the hit was confirmed by a 304')

  const appended = await writer.append('/notes/todo.txt', 'two\n')
  t.equal(appended.version, 2)

  t.equal((await reader.readFile('/notes/todo.txt')).toString(), 'one\ntwo\n', 'the other client sees the append on its next read')
  const afterStale = await statsOf(server)
  t.equal(afterStale.contentTransfers, afterHit.contentTransfers + 1, 'the stale copy was fetched again, once')
  t.equal(afterStale.contentBytes, afterHit.contentBytes + 'one\ntwo\n'.length)
  t.equal(afterStale.notModified, afterHit.notModified)

  // The writer's own copy was brought forward by the bytes it appended, so it stays a hit.
  t.equal((await writer.readFile('/notes/todo.txt')).toString(), 'one\ntwo\n')
  t.equal((await reader.readFile('/notes/todo.txt')).toString(), 'one\ntwo\n')
  const afterBoth = await statsOf(server)
  t.equal(afterBoth.contentTransfers, afterStale.contentTransfers, 'neither client moved content for a current copy')
  t.equal(afterBoth.notModified, afterStale.notModified + 2)
})

t.test('a client started later reuses the copy another client left in a shared cache folder', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'shared\n' }])
  const first = cluster.client()
  t.equal((await first.readFile('/a.txt')).toString(), 'shared\n')
  const before = await statsOf(cluster.fileServers[0])
  const second = cluster.client({ cacheDir: first.cache.dir })
  t.equal((await second.readFile('/a.txt')).toString(), 'shared\n')
  const after = await statsOf(cluster.fileServers[0])
  t.equal(after.contentTransfers, before.contentTransfers, 'no content moved')
  t.equal(after.notModified, before.notModified + 1)
})

t.test('a copy changed on the server behind everyone\'s back is not trusted', async (t) => {
  const cluster = await startTestCluster(t, [{ 'log.txt': 'aaaa\n' }])
  const client = cluster.client()
  t.equal((await client.readFile('/log.txt')).toString(), 'aaaa\n')
  // Same size, new bytes: only the mtime tells, and the ETag carries it.
  const onDisk = path.join(cluster.roots[0], 'log.txt')
  fs.writeFileSync(onDisk, 'bbbb\n')
  const later = new Date(Date.now() + 5000)
  fs.utimesSync(onDisk, later, later)
  const before = await statsOf(cluster.fileServers[0])
  t.equal((await client.readFile('/log.txt')).toString(), 'bbbb\n')
  t.equal((await statsOf(cluster.fileServers[0])).contentTransfers, before.contentTransfers + 1)
})
