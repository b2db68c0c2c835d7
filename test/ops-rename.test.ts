import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import {
  BadPathError, CrossServerError, IsDirectoryError, LockTimeoutError, NotEmptyError, NotFoundError, ServerUnavailableError
} from '../src/shared/errors'
import { LockRoutes } from '../src/shared/protocol'
import { uploadsLeft } from './helpers/diskImage'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { rawGet, statsOf } from './helpers/wire'

const trees: Array<Record<string, string>> = [
  { 'docs/a.txt': 'alpha\n', 'docs/deep/n.txt': 'nested\n', 'shared/s1.txt': 'first\n' },
  { 'logs/b.log': 'beta\n', 'shared/s2.txt': 'second\n' }
]

/** Whether no lease is held on a path (lock keys are implicit: a path without one is free). */
async function lockFree (cluster: TestCluster, file: string): Promise<boolean> {
  const answer = await rawGet(cluster.lock.url, LockRoutes.status, { path: file }, { token: cluster.credentials.read })
  if (answer.status !== 200) throw new Error(`lock server answered ${answer.status}`)
  return answer.body.held === false
}

t.test('a rename within one server keeps the bytes, leaves no lease behind, and copies nothing', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const reader = cluster.client()
  await client.writeFile('/docs/a.txt', 'alpha, second version\n')
  const before = await reader.fetch('/docs/a.txt')
  t.equal(before.meta.version, 2)

  const meta = await client.rename('/docs/a.txt', '/docs/c.txt')
  t.match(meta, { path: '/docs/c.txt', kind: 'file', version: 3, size: before.meta.size, mtimeMs: before.meta.mtimeMs })
  t.equal((await reader.readFile('/docs/c.txt')).toString(), 'alpha, second version\n')
  await t.rejects(cluster.client().lookup('/docs/a.txt'), NotFoundError, 'the old path is gone from the directory')
  await t.rejects(reader.readFile('/docs/a.txt'), NotFoundError)
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'docs/a.txt')))
  t.ok(fs.existsSync(path.join(cluster.roots[0], 'docs/c.txt')))
  t.ok(await lockFree(cluster, '/docs/a.txt'), 'no lease is left on the old path')
  t.ok(await lockFree(cluster, '/docs/c.txt'), 'the new path is free to lock')
  const held = await client.locks.acquire('/docs/c.txt')
  await held.release()
  t.equal((await statsOf(cluster.fileServers[0])).incoming, 0)
  t.equal((await statsOf(cluster.fileServers[1])).incoming, 0)

  // The renamer's copy of the old path (from its writeFile) moves to the new one.
  const transfers = (await statsOf(cluster.fileServers[0])).contentTransfers
  t.equal((await client.cache.get('/docs/c.txt'))?.meta.version, 3, 'the cached copy moved with the file')
  t.equal(await client.cache.get('/docs/a.txt'), null)
  t.equal((await client.readFile('/docs/c.txt')).toString(), 'alpha, second version\n')
  await client.rename('/docs/c.txt', '/docs/d.txt')
  t.equal((await client.cache.get('/docs/d.txt'))?.meta.version, 4)
  t.equal((await client.readFile('/docs/d.txt')).toString(), 'alpha, second version\n')
  t.equal((await statsOf(cluster.fileServers[0])).contentTransfers, transfers, 'both reads were 304s: the moved copies are valid')
})

t.test('a rename across servers copies the bytes to the server holding the new folder, then removes the old file', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const reader = cluster.client()
  await client.writeFile('/docs/a.txt', 'alpha v2\n')
  const before = await reader.fetch('/docs/a.txt')

  const meta = await client.rename('/docs/a.txt', '/logs/a.txt')
  t.match(meta, { path: '/logs/a.txt', version: 3, size: before.meta.size, mtimeMs: before.meta.mtimeMs })
  t.equal((await reader.lookup('/logs/a.txt')).server?.machineId, cluster.fileServers[1].machineId)
  t.equal((await reader.readFile('/logs/a.txt')).toString(), 'alpha v2\n')
  t.equal((await reader.stat('/logs/a.txt')).version, 3)
  await t.rejects(cluster.client().lookup('/docs/a.txt'), NotFoundError)
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'docs/a.txt')), 'gone from the first server')
  t.equal(fs.readFileSync(path.join(cluster.roots[1], 'logs/a.txt'), 'utf8'), 'alpha v2\n')
  t.ok(await lockFree(cluster, '/docs/a.txt'), 'no lease is left on the old path')
  t.ok(await lockFree(cluster, '/logs/a.txt'), 'the new path is free to lock')
  t.equal((await statsOf(cluster.fileServers[1])).incoming, 1, 'one copy went to the second server')
  t.same((await reader.list('/docs')).map((e) => e.name), ['deep'], 'the old folder no longer lists it')

  // and back: the version keeps growing
  const back = await client.rename('/logs/a.txt', '/docs/a.txt')
  t.equal(back.version, 4)
  t.equal((await cluster.client().readFile('/docs/a.txt')).toString(), 'alpha v2\n')
})

t.test('a rename over an existing file replaces it, with a version above both', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const reader = cluster.client()
  await client.writeFile('/logs/b.log', 'beta v2\n')
  await client.writeFile('/logs/b.log', 'beta v3\n')
  t.equal((await reader.fetch('/logs/b.log')).meta.version, 3, 'a reader caches the destination at version 3')

  // across servers: /docs/a.txt (v1, server 1) over /logs/b.log (v3, server 2)
  const meta = await client.rename('/docs/a.txt', '/logs/b.log')
  t.equal(meta.version, 4, 'above the old destination\'s 3')
  t.equal((await reader.lookup('/logs/b.log')).server?.machineId, cluster.fileServers[1].machineId, 'the destination stays where it was')
  t.equal((await reader.readFile('/logs/b.log')).toString(), 'alpha\n', 'the reader\'s old copy is not taken for current')
  await t.rejects(cluster.client().lookup('/docs/a.txt'), NotFoundError)
  t.ok(await lockFree(cluster, '/docs/a.txt'), 'no lease is left on the old path')
  t.ok(await lockFree(cluster, '/logs/b.log'), 'the new path is free to lock')

  // within a server: /logs/b.log (v4) over a new /logs/c.log (v1, made twice: v2)
  await client.create('/logs/c.log')
  await client.writeFile('/logs/c.log', 'gamma\n')
  const within = await client.rename('/logs/b.log', '/logs/c.log')
  t.equal(within.version, 5)
  t.equal((await reader.readFile('/logs/c.log')).toString(), 'alpha\n')
  await t.rejects(cluster.client().lookup('/logs/b.log'), NotFoundError)
  t.same(fs.readdirSync(path.join(cluster.roots[1], 'logs')).sort(), ['c.log'])
})

t.test('a folder is renamed within its server; one spanning servers is EXDEV', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const reader = cluster.client()
  t.equal((await reader.readFile('/docs/deep/n.txt')).toString(), 'nested\n')
  const meta = await client.rename('/docs', '/papers')
  t.match(meta, { path: '/papers', kind: 'dir' })
  t.same((await reader.list('/papers')).map((e) => e.name), ['a.txt', 'deep'])
  t.equal((await reader.readFile('/papers/deep/n.txt')).toString(), 'nested\n')
  t.equal((await reader.stat('/papers/deep/n.txt')).version, 2, 'moved files get a new version')
  await t.rejects(cluster.client().lookup('/docs'), NotFoundError)
  await t.rejects(cluster.client().lookup('/docs/deep/n.txt'), NotFoundError)
  t.ok(await lockFree(cluster, '/docs/deep/n.txt'), 'no lease is left on the old path')
  t.ok(await lockFree(cluster, '/papers/deep/n.txt'), 'the new path is free to lock')
  t.ok(fs.existsSync(path.join(cluster.roots[0], 'papers/deep/n.txt')))

  const spanning = await client.rename('/shared', '/common').catch((err: unknown) => err)
  t.type(spanning, CrossServerError)
  t.equal((spanning as CrossServerError).errno, 'EXDEV')
  t.ok(await cluster.client().lookup('/shared/s1.txt'), 'nothing moved')
  await t.rejects(client.rename('/papers', '/papers/inside'), BadPathError)
  await t.rejects(client.rename('/papers', '/logs/papers'), CrossServerError, '/logs is on the other server')
  await client.mkdir('/papers/empty')
  await client.create('/papers/empty/x')
  await t.rejects(client.rename('/papers/deep', '/papers/empty'), NotEmptyError)
})

t.test('renames that cannot be done change nothing', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client({ lockTimeoutMs: 100 })
  await t.rejects(client.rename('/docs/missing.txt', '/docs/x.txt'), NotFoundError)
  await t.rejects(client.rename('/docs/a.txt', '/nowhere/a.txt'), NotFoundError)
  await t.rejects(client.rename('/docs/a.txt', '/docs/deep'), IsDirectoryError)

  const holder = await cluster.client().locks.acquire('/docs/a.txt')
  await t.rejects(client.rename('/docs/a.txt', '/logs/a.txt'), LockTimeoutError)
  await holder.release()
  t.equal((await cluster.client().readFile('/docs/a.txt')).toString(), 'alpha\n')
  await t.rejects(cluster.client().lookup('/logs/a.txt'), NotFoundError)
  t.equal((await statsOf(cluster.fileServers[1])).incoming, 0)
})

t.test('a rename across servers whose target server is down leaves the source as it was', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const client = cluster.client()
  const before = await client.statFresh('/docs/a.txt')
  await cluster.fileServers[1].close()

  await t.rejects(client.rename('/docs/a.txt', '/logs/a.txt'), ServerUnavailableError)
  const fresh = cluster.client()
  t.same(await fresh.statFresh('/docs/a.txt'), before, 'same version, size and mtime')
  t.equal((await fresh.readFile('/docs/a.txt')).toString(), 'alpha\n')
  t.equal((await fresh.lookup('/docs/a.txt')).server?.machineId, cluster.fileServers[0].machineId)
  t.ok(await lockFree(cluster, '/docs/a.txt'), 'no lease is left on the source')
  t.ok(await lockFree(cluster, '/logs/a.txt'), 'nor on the destination')
  const held = await fresh.locks.acquire('/docs/a.txt')
  await held.release()
  t.same(uploadsLeft(cluster.roots[0]), [])
})
