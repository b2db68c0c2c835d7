import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { ConflictError, NotFoundError } from '../src/shared/errors'
import { startFileServer } from '../servers/file/server'
import type { RunningFileServer } from '../servers/file/server'
import { startTestCluster, writeTree } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'

async function joinServer (t: Test, cluster: TestCluster, name: string, tree: Record<string, string>): Promise<RunningFileServer> {
  const root = path.join(cluster.workDir, name)
  fs.mkdirSync(root, { recursive: true })
  writeTree(root, tree)
  const server = await startFileServer({ root, port: 0, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key }, timeoutMs: 2000 })
  t.teardown(server.close)
  return server
}

t.test('a file server that joins later shows its files to a client that is already running', async (t) => {
  const cluster = await startTestCluster(t, [{ 'old/a.txt': 'a\n' }])
  const client = cluster.client()
  t.same((await client.list('/')).map((e) => e.name), ['old'])
  await t.rejects(client.readFile('/late/new.txt'), NotFoundError, 'not there yet')

  const late = await joinServer(t, cluster, 'late-root', { 'late/new.txt': 'new\n', 'old/also.txt': 'also\n' })
  t.not(late.machineId, cluster.fileServers[0].machineId, 'the newcomer has a machine id of its own')

  t.same((await client.list('/')).map((e) => e.name), ['late', 'old'], 'the running client sees the new folder')
  const old = await client.list('/old')
  t.same(old.map((e) => [e.name, e.size]), [['a.txt', 2], ['also.txt', 5]], 'a folder may span two servers')
  t.equal((await client.readFile('/late/new.txt')).toString(), 'new\n', 'and reads the new file')
  t.equal((await client.lookup('/old/also.txt')).server?.machineId, late.machineId)
  t.equal((await client.append('/late/new.txt', 'more\n')).version, 2, 'the newcomer\'s files have lock keys, so they take appends')
  t.equal(fs.readFileSync(path.join(late.store.root, 'late', 'new.txt'), 'utf8'), 'new\nmore\n', 'the append landed on the newcomer\'s disk')
})

t.test('a second file server claiming a path that is taken does not start, and the first keeps it', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/readme.txt': 'original\n', 'folder/x.txt': 'x\n' }])
  const owner = cluster.fileServers[0]
  const client = cluster.client()

  const impostorRoot = path.join(cluster.workDir, 'impostor')
  writeTree(impostorRoot, { 'docs/readme.txt': 'impostor\n', 'only-impostor.txt': 'sneaky\n' })
  const refused = await startFileServer({ root: impostorRoot, port: 0, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key }, timeoutMs: 2000 })
    .then(async (server) => { await server.close(); return null }, (err: unknown) => err)
  t.type(refused, ConflictError)
  t.match((refused as Error).message, '/docs/readme.txt', 'the error names the clashing path')

  t.equal((await client.lookup('/docs/readme.txt')).server?.machineId, owner.machineId, 'the first server keeps the path')
  t.equal((await client.readFile('/docs/readme.txt')).toString(), 'original\n')
  await t.rejects(client.readFile('/only-impostor.txt'), NotFoundError, 'a refused server claims nothing at all')

  const fileOverFolderRoot = path.join(cluster.workDir, 'file-over-folder')
  writeTree(fileOverFolderRoot, { folder: 'a file where a folder is\n' })
  await t.rejects(startFileServer({ root: fileOverFolderRoot, port: 0, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key }, timeoutMs: 2000 }), ConflictError,
    'a file where another server has a folder is a clash too')
  t.same((await client.list('/folder')).map((e) => e.name), ['x.txt'])
})

t.test('a file server not told the lock server uses the one the directory server names', async (t) => {
  // The cluster's lock server is on a port of its own: the default one would find nobody.
  const cluster = await startTestCluster(t, [{ 'old/a.txt': 'a\n' }])
  const root = path.join(cluster.workDir, 'no-lock-option')
  writeTree(root, { 'unlocked/b.txt': 'b\n' })
  const said: string[] = []
  const server = await startFileServer({ root, port: 0, directoryUrl: cluster.directory.url, auth: { key: cluster.credentials.key }, timeoutMs: 2000, log: (line) => said.push(line) })
  t.teardown(server.close)
  t.ok(said.includes(`lock server at ${cluster.lock.url}, as the directory server names it`), said.join('\n'))
  const client = cluster.client()
  t.equal((await client.append('/unlocked/b.txt', 'more\n')).version, 2, 'its files have lock keys on that lock server, so they take appends')
  t.equal(fs.readFileSync(path.join(root, 'unlocked', 'b.txt'), 'utf8'), 'b\nmore\n')
})
