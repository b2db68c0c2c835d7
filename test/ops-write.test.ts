import fs from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { IsDirectoryError, LockTimeoutError } from '../src/shared/errors'
import { etagOf, FileRoutes } from '../src/shared/protocol'
import { uploadsLeft } from './helpers/diskImage'
import { startTestCluster } from './helpers/cluster'
import { rawAs, statsOf } from './helpers/wire'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

const trees: Array<Record<string, string>> = [
  { 'docs/a.txt': 'the first version\n' },
  { 'logs/b.log': 'one\ntwo\n' }
]

t.test('writeFile replaces the content, one version up, and another client reads the new bytes', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const writer = cluster.client()
  const reader = cluster.client()
  const before = await reader.fetch('/docs/a.txt')
  t.equal(before.meta.version, 1)

  const meta = await writer.writeFile('/docs/a.txt', 'short\n')
  t.equal(meta.version, 2)
  t.equal(meta.size, 6)
  t.ok(meta.mtimeMs > before.meta.mtimeMs, 'the mtime grows, so a kernel cache notices')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'docs/a.txt'), 'utf8'), 'short\n', 'on the server\'s disk')
  t.equal((await reader.readFile('/docs/a.txt')).toString(), 'short\n')
  t.same(uploadsLeft(cluster.roots[0]), [], 'no upload left behind')

  // The writer's own cache holds the written bytes: reading them back moves no content.
  const transfers = (await statsOf(cluster.fileServers[0])).contentTransfers
  t.equal((await writer.readFile('/docs/a.txt')).toString(), 'short\n')
  t.equal((await statsOf(cluster.fileServers[0])).contentTransfers, transfers)
  t.equal((await statsOf(cluster.fileServers[0])).overwrites, 1)

  const streamed = await writer.writeFile('/docs/a.txt', Readable.from([Buffer.from('from '), Buffer.from('a stream\n')]))
  t.equal(streamed.version, 3)
  t.equal((await reader.readFile('/docs/a.txt')).toString(), 'from a stream\n')
})

t.test('writeFile creates a missing file; a folder is refused', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const meta = await client.writeFile('/logs/new.log', 'fresh\n')
  t.equal(meta.version, 2, 'created at 1, written at 2')
  t.equal((await cluster.client().readFile('/logs/new.log')).toString(), 'fresh\n')
  t.ok(fs.existsSync(path.join(cluster.roots[1], 'logs/new.log')), 'on the server holding /logs')
  await t.rejects(client.writeFile('/logs', 'x'), IsDirectoryError)
})

t.test('an overwrite needs the live lease, and waits for another holder', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const { raw } = rawAs(cluster.credentials.server)
  const client = cluster.client({ lockTimeoutMs: 200 })
  const server = cluster.fileServers[0].url
  const unlocked = await raw(server, { method: 'PUT', url: FileRoutes.content, params: { path: '/docs/a.txt' }, data: Buffer.from('x') })
  t.equal(unlocked.status, 409)
  t.equal(unlocked.body.error.code, 'LEASE_INVALID')

  const holder = await cluster.client().locks.acquire('/docs/a.txt')
  await t.rejects(client.writeFile('/docs/a.txt', 'mine'), LockTimeoutError)
  const withTheirLease = await client.writeFile('/docs/a.txt', 'theirs\n', { lease: holder })
  t.equal(withTheirLease.version, 2)
  await holder.release()
  const stale = await raw(server, {
    method: 'PUT', url: FileRoutes.content, params: { path: '/docs/a.txt' }, data: Buffer.from('late'), headers: { 'x-dfs-lock-token': leaseCredentialOf(holder.lease) }
  })
  t.equal(stale.status, 409, 'a released lease writes nothing')
  t.equal((await client.readFile('/docs/a.txt')).toString(), 'theirs\n')
})

t.test('truncate cuts or extends under the lock, one version up', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const other = cluster.client()
  t.equal((await client.readFile('/logs/b.log')).toString(), 'one\ntwo\n')
  const cut = await client.truncate('/logs/b.log', 4)
  t.match(cut, { version: 2, size: 4 })
  t.equal((await client.cache.get('/logs/b.log'))?.meta.version, 2, 'the local copy was cut too')
  t.equal((await client.readFile('/logs/b.log')).toString(), 'one\n')
  t.equal((await other.readFile('/logs/b.log')).toString(), 'one\n')
  const grown = await client.truncate('/logs/b.log', 6)
  t.match(grown, { version: 3, size: 6 })
  t.same(await other.readFile('/logs/b.log'), Buffer.from('one\n\0\0'))
  const emptied = await client.truncate('/logs/b.log', 0)
  t.match(emptied, { version: 4, size: 0 })
  t.equal((await other.readFile('/logs/b.log')).length, 0)
  await t.rejects(client.truncate('/logs', 0), IsDirectoryError)
})

t.test('storeWithLease uploads a local file under a held lease and makes it the cached copy', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const held = await client.locks.acquire('/docs/a.txt')
  const local = path.join(cluster.workDir, 'edited.txt')
  fs.writeFileSync(local, 'edited in place\n')
  const meta = await client.storeWithLease('/docs/a.txt', local, held)
  t.match(meta, { version: 2, size: 16 })
  const cached = await client.cache.get('/docs/a.txt')
  t.equal(cached?.meta.version, 2)
  t.equal(fs.readFileSync(cached?.file as string, 'utf8'), 'edited in place\n')
  t.ok(fs.existsSync(local), 'copied, not taken')

  fs.writeFileSync(local, 'second store\n')
  const moved = await client.storeWithLease('/docs/a.txt', local, held.lease, { moveIntoCache: true })
  t.equal(moved.version, 3)
  t.notOk(fs.existsSync(local), 'moved into the cache')
  const transfers = (await statsOf(cluster.fileServers[0])).contentTransfers
  t.equal((await client.readFile('/docs/a.txt')).toString(), 'second store\n')
  t.equal((await statsOf(cluster.fileServers[0])).contentTransfers, transfers, 'read from the copy, validated by a 304')
  t.equal((await cluster.client().readFile('/docs/a.txt')).toString(), 'second store\n')
  await t.rejects(cluster.client({ lockTimeoutMs: 50 }).locks.acquire('/docs/a.txt'), LockTimeoutError, 'the lease is still held')
  await held.release()
})

t.test('utimes sets the mtime, so the ETag changes; chmod sets mode bits', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const other = cluster.client()
  const before = (await other.fetch('/docs/a.txt')).meta
  const when = Date.UTC(2020, 0, 2, 3, 4, 5)
  const meta = await client.utimes('/docs/a.txt', when)
  t.equal(meta.mtimeMs, when)
  t.equal(meta.version, before.version, 'no new version: the bytes did not change')
  t.not(etagOf(meta), etagOf(before))
  t.equal(fs.statSync(path.join(cluster.roots[0], 'docs/a.txt')).mtimeMs, when)
  t.equal((await other.fetch('/docs/a.txt')).meta.mtimeMs, when, 'the other client\'s copy is revalidated')
  const folder = await client.utimes('/docs', when)
  t.equal(folder.mtimeMs, when)

  const chmodded = await client.chmod('/docs/a.txt', 0o640)
  t.equal(chmodded.mode, 0o640)
  t.equal(fs.statSync(path.join(cluster.roots[0], 'docs/a.txt')).mode & 0o777, 0o640)
  t.equal((await cluster.client().stat('/docs/a.txt')).mode, 0o640, 'stat reports it')
  t.equal((await client.chmod('/docs/a.txt', 0)).mode, 0, 'mode 0 is shown as 0')
  t.equal(fs.statSync(path.join(cluster.roots[0], 'docs/a.txt')).mode & 0o777, 0o600, 'while the server\'s disk keeps read and write for it, so it can serve the file')
  t.equal((await client.writeFile('/docs/a.txt', 'keeps its mode\n')).mode, 0, 'an overwrite keeps the mode')
})

t.test('a failed upload leaves the file as it was', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const broken = new Readable({
    read () {
      this.push(Buffer.from('partial '))
      this.destroy(new Error('the source failed'))
    }
  })
  await t.rejects(client.writeFile('/docs/a.txt', broken))
  const fresh = cluster.client()
  const meta = await fresh.statFresh('/docs/a.txt')
  t.equal(meta.version, 1)
  t.equal((await fresh.readFile('/docs/a.txt')).toString(), 'the first version\n')
  t.same(uploadsLeft(cluster.roots[0]), [], 'the upload was removed')
  t.equal((await cluster.client().locks.acquire('/docs/a.txt').then(async (held) => await held.release())), undefined, 'the lock was given back')
})
