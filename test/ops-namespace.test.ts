import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { BadPathError, ConflictError, IsDirectoryError, NotDirectoryError, NotEmptyError, NotFoundError } from '../src/shared/errors'
import { DirectoryRoutes, LockRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { fileApiOf, rawAs } from './helpers/wire'

const trees: Array<Record<string, string>> = [
  { 'one/a.txt': 'alpha\n', 'shared/s1.txt': 'first\n' },
  { 'two/b.txt': 'beta\n', 'shared/s2.txt': 'second\n' }
]

t.test('a created file is on a server holding its folder, lockable, and another client sees it', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const { rawGet } = rawAs(cluster.credentials.server)
  const writer = cluster.client()
  const reader = cluster.client()
  t.same(await reader.list('/two').then((l) => l.map((e) => e.name)), ['b.txt'], 'the reader lists the folder first')

  const meta = await writer.create('two/new.txt')
  t.match(meta, { path: '/two/new.txt', kind: 'file', size: 0, version: 1 })
  t.ok(fs.existsSync(path.join(cluster.roots[1], 'two/new.txt')), 'placed on the only server holding /two')
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'two/new.txt')))

  t.equal((await reader.lookup('/two/new.txt')).server?.machineId, cluster.fileServers[1].machineId)
  t.same((await reader.list('/two')).map((e) => e.name), ['b.txt', 'new.txt'])
  t.equal((await reader.readFile('/two/new.txt')).length, 0)
  const lock = await rawGet(cluster.lock.url, LockRoutes.status, { path: '/two/new.txt' })
  t.equal(lock.status, 200, 'the lock server answers for the new path (keys are implicit)')
  t.equal(lock.body.held, false)
})

t.test('creating an existing path is a conflict and changes nothing', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  await t.rejects(client.create('/one/a.txt'), ConflictError)
  await t.rejects(client.create('/one'), ConflictError, 'a folder is in the way')
  await t.rejects(client.mkdir('/two/b.txt'), ConflictError)
  t.equal((await client.readFile('/one/a.txt')).toString(), 'alpha\n')
  await t.rejects(client.create('/nowhere/x.txt'), NotFoundError, 'the parent folder must exist')
  await t.rejects(client.create('/one/a.txt/x'), NotDirectoryError, 'the parent must be a folder')
})

t.test('the same new path created on two servers at once: one wins, the other leaves nothing behind', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  // /shared is on both servers: ask each directly, as two racing clients' placements might.
  const results = await Promise.allSettled(cluster.fileServers.map(async (server) =>
    await fileApiOf(server).create('/shared/race.txt', 'file')))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one create succeeded')
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  t.type(failed?.reason, ConflictError)
  const onDisk = cluster.roots.filter((root) => fs.existsSync(path.join(root, 'shared/race.txt')))
  t.equal(onDisk.length, 1, 'the loser removed its file')
  const owner = (await client.lookup('/shared/race.txt')).server?.machineId
  t.equal(owner, cluster.fileServers[cluster.roots.indexOf(onDisk[0])].machineId, 'the directory names the server that has it')
})

t.test('in a folder held by several servers, a new file goes to one of them; an existing path gets no placement', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const { rawGet } = rawAs(cluster.credentials.server)
  const client = cluster.client()
  // Both roots are on one disk here, so free space cannot tell them apart.
  const meta = await client.create('/shared/placed.txt')
  const owner = (await client.lookup(meta.path)).server?.machineId
  t.ok(cluster.fileServers.some((s) => s.machineId === owner))
  const placement = await rawGet(cluster.directory.url, DirectoryRoutes.placement, { path: '/shared/next.txt' })
  t.equal(placement.status, 200)
  t.ok([1, 2].includes(placement.body.server.machineId))
  const taken = await rawGet(cluster.directory.url, DirectoryRoutes.placement, { path: '/shared/placed.txt' })
  t.equal(taken.status, 409, 'no placement for a path that exists')
  t.equal(taken.body.error.code, 'CONFLICT')
})

t.test('entries at the root go to any server; the root itself cannot be removed', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  await client.mkdir('/top')
  await client.create('/top.txt')
  const names = (await cluster.client().list('/')).map((e) => e.name)
  t.same(names, ['one', 'shared', 'top', 'top.txt', 'two'])
  t.equal(cluster.roots.filter((root) => fs.existsSync(path.join(root, 'top.txt'))).length, 1)
  await t.rejects(client.rmdir('/'), BadPathError)
  await client.rmdir('/top')
  t.notOk((await cluster.client().list('/')).some((e) => e.name === 'top'))
})

t.test('utimes on a folder held by several servers sets it on each', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client({ metaTtlMs: 0 })
  const when = Date.UTC(2021, 5, 6)
  await client.utimes('/shared', when)
  for (const root of cluster.roots) t.equal(fs.statSync(path.join(root, 'shared')).mtimeMs, when)
  t.equal((await client.list('/')).find((e) => e.name === 'shared')?.mtimeMs, when)
})

t.test('unlink removes the file, its directory entry and any lease on it', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const { rawGet } = rawAs(cluster.credentials.server)
  const client = cluster.client()
  const other = cluster.client()
  t.equal((await other.readFile('/one/a.txt')).toString(), 'alpha\n', 'another client has it cached')
  await client.unlink('/one/a.txt')
  await t.rejects(cluster.client().lookup('/one/a.txt'), NotFoundError, 'the directory has forgotten it')
  await t.rejects(other.readFile('/one/a.txt'), NotFoundError, 'a client that remembered it finds it gone')
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'one/a.txt')))
  t.match((await rawGet(cluster.lock.url, LockRoutes.status, { path: '/one/a.txt' })).body, { held: false }, 'no lease is left on it')
  t.same((await other.list('/one')).map((e) => e.name), [], 'the folder stays, empty')
  await t.rejects(client.unlink('/one/a.txt'), NotFoundError)
  await t.rejects(client.unlink('/one'), IsDirectoryError)

  const again = await client.create('/one/a.txt')
  t.ok(again.version > 1, 'a file made again at the path starts above the removed one\'s version')
})

t.test('mkdir and rmdir, across the servers that hold a folder', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const other = cluster.client()
  const made = await client.mkdir('/two/sub')
  t.match(made, { path: '/two/sub', kind: 'dir' })
  t.ok(fs.statSync(path.join(cluster.roots[1], 'two/sub')).isDirectory())
  t.equal((await other.stat('/two/sub')).kind, 'dir')
  await t.rejects(client.mkdir('/two/sub'), ConflictError)

  await client.create('/two/sub/f.txt')
  await t.rejects(client.rmdir('/two/sub'), NotEmptyError)
  await t.rejects(client.rmdir('/two/sub/f.txt'), NotDirectoryError)
  await client.unlink('/two/sub/f.txt')
  await client.rmdir('/two/sub')
  await t.rejects(cluster.client().lookup('/two/sub'), NotFoundError)
  t.notOk(fs.existsSync(path.join(cluster.roots[1], 'two/sub')))

  // /shared is on both servers; it is not empty while either holds a file in it.
  await client.unlink('/shared/s1.txt')
  await t.rejects(client.rmdir('/shared'), NotEmptyError, 'still has a file on the second server')
  t.ok(fs.existsSync(path.join(cluster.roots[0], 'shared')), 'a refused rmdir removes it nowhere')
  await client.unlink('/shared/s2.txt')
  await client.rmdir('/shared')
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'shared')))
  t.notOk(fs.existsSync(path.join(cluster.roots[1], 'shared')))
  t.notOk((await other.list('/')).some((e) => e.name === 'shared'))
  await t.rejects(client.rmdir('/shared'), NotFoundError)
})

t.test('statfs sums the file servers\' disks', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const expectedTotal = cluster.roots.reduce((sum, root) => {
    const disk = fs.statfsSync(root)
    return sum + disk.blocks * disk.bsize
  }, 0)
  const space = await client.statfs()
  t.equal(space.servers, 2)
  t.equal(space.unreachable, 0)
  t.equal(space.totalBytes, expectedTotal)
  t.ok(space.freeBytes > 0 && space.freeBytes <= space.totalBytes)

  await cluster.fileServers[1].close()
  const partial = await client.statfs()
  t.equal(partial.servers, 1)
  t.equal(partial.unreachable, 1)
  const first = fs.statfsSync(cluster.roots[0])
  t.equal(partial.totalBytes, first.blocks * first.bsize, 'only the server that answered is counted')
})
