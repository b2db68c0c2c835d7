import fs from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import type { DfsClient } from '../src/client/dfsClient'
import { NotFoundError } from '../src/shared/errors'
import type { FileMeta } from '../src/shared/protocol'
import { uploadsLeft } from './helpers/diskImage'
import { startProcessCluster } from './helpers/processCluster'
import type { ProcessCluster, ServerProcess } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'

/*
 * A file server killed (SIGKILL) in the middle of a change, then started again: the change
 * ends as before or as after, never both, never neither. Renames are crashed at exact steps
 * (DFS_CRASH_AT, servers/common/crashPoints.ts), and so are range writes; a store is killed
 * while its body arrives.
 */

const CONTENT = 'the content\n'

interface Crashed {
  c: ProcessCluster
  /** Holds /a (and the file); started with DFS_CRASH_AT. */
  source: ServerProcess
  /** Holds /b. */
  other: ServerProcess
  client: DfsClient
}

async function crashCluster (t: Test, crashAt: string): Promise<Crashed> {
  const c = await startProcessCluster(t, { trees: [{ 'b/old.txt': 'old\n' }] })
  const source = await c.addFileServer({ 'a/f.txt': CONTENT }, { DFS_CRASH_AT: crashAt })
  return { c, source, other: c.files[0], client: c.client({ timeoutMs: 2000 }) }
}

async function existing (client: DfsClient, paths: string[]): Promise<string[]> {
  const found: string[] = []
  for (const p of paths) {
    client.forget(p)
    try {
      await client.statFresh(p)
      found.push(p)
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err
    }
  }
  return found
}

/** Waits until a restarted server serves the file again. */
async function servedAgain (client: DfsClient, file: string): Promise<void> {
  await waitFor('the server to serve the file again', async () => {
    try {
      return await client.statFresh(file)
    } catch {
      return false
    }
  }, 15_000, 100)
}

/**
 * A change to `file` made while its server kills itself at `crashAt` (a crash point of a
 * write behind a redo intent): after the restart it is there at one version up, and the
 * client heard so, from the answer that left before the crash (`answeredAt`) or from its
 * retry, if it got one; no intent is left. The caller checks the bytes.
 */
async function finishedAtStart (t: Test, server: ServerProcess, client: DfsClient, file: string, change: Promise<FileMeta | null>,
  before: FileMeta, crash: { at: string, answeredAt: string }): Promise<void> {
  change.catch(() => {})
  await waitFor('the server to kill itself', async () => !server.alive(), 15_000, 20)
  await server.restart()
  const stored = await change.catch(() => undefined)
  if (crash.at === crash.answeredAt) t.equal(stored?.version, before.version + 1, 'the answer came before the crash')
  else if (stored !== undefined) t.equal(stored?.version, before.version + 1, 'the retry is told the change is applied')
  await servedAgain(client, file)
  client.forget(file)
  t.equal((await client.statFresh(file)).version, before.version + 1, 'one version up')
  t.same(fs.readdirSync(path.join(server.root as string, '.dfs', 'ranges')), [], 'no intent left')
}

/** Whether a server's root holds the dfs path on its disk. */
function onDisk (server: ServerProcess, dfsPath: string): boolean {
  return fs.existsSync(path.join(server.root as string, dfsPath))
}

/**
 * Renames `from` to `to` through a server that kills itself at `crashAt`; restarts it, and
 * the other server too (so it reports whatever its disk holds), and answers which names
 * the cluster then has.
 */
async function renameThroughCrash (t: Test, crashAt: string, from: string, to: string): Promise<{ names: string[], x: Crashed }> {
  const x = await crashCluster(t, crashAt)
  await t.rejects(x.client.rename(from, to), 'the rename fails: its server died')
  await waitFor('the source server to be dead', async () => !x.source.alive(), 5000, 20)
  await x.source.restart()
  await waitFor('the source server to end the rename at its start', async () => /cut short by a crash: (finished|undone)/.test(x.source.output()), 15_000, 50)
  const reports = (): number => x.c.directory.output().split(' reported ').length - 1
  const before = reports()
  await x.other.restart()
  await waitFor('the other server to report its files again', async () => reports() > before, 15_000, 50)
  return { names: await existing(x.client, [from, to]), x }
}

t.test('a cross-server rename killed after the copy, before the switch, is undone: the file only at its old name', async (t) => {
  const { names, x } = await renameThroughCrash(t, 'rename:copied', '/a/f.txt', '/b/f.txt')
  t.same(names, ['/a/f.txt'], 'one name: the old one')
  t.equal((await x.client.readFile('/a/f.txt')).toString(), CONTENT)
  t.notOk(onDisk(x.other, 'b/f.txt'), 'no copy left on the target server\'s disk')
})

t.test('a cross-server rename killed after the switch, before the old name goes, is finished: the file only at its new name', async (t) => {
  const { names, x } = await renameThroughCrash(t, 'rename:switched', '/a/f.txt', '/b/f.txt')
  t.same(names, ['/b/f.txt'], 'one name: the new one')
  t.equal((await x.client.readFile('/b/f.txt')).toString(), CONTENT)
  t.notOk(onDisk(x.source, 'a/f.txt'), 'the old bytes are gone from the source server\'s disk')
})

t.test('a cross-server rename over an existing file killed after the copy is finished (the old bytes at the target are gone already)', async (t) => {
  const { names, x } = await renameThroughCrash(t, 'rename:copied', '/a/f.txt', '/b/old.txt')
  t.same(names, ['/b/old.txt'], 'one name: the new one')
  t.equal((await x.client.readFile('/b/old.txt')).toString(), CONTENT)
  t.notOk(onDisk(x.source, 'a/f.txt'))
})

t.test('a rename within one server killed after the copy is undone', async (t) => {
  const { names, x } = await renameThroughCrash(t, 'rename:copied', '/a/f.txt', '/a/g.txt')
  t.same(names, ['/a/f.txt'], 'one name: the old one')
  t.notOk(onDisk(x.source, 'a/g.txt'), 'no second link left on the disk')
})

// A small whole store (PUT /content) is made in place behind the same redo intent as a range
// write (FileStore.overwriteInPlace), and answered once the intent is durable: killed at each
// step, and once its answer has left, the start finishes it, all of it.
for (const crashAt of ['range:recorded', 'range:written', 'range:synced', 'overwrite:answered']) {
  t.test(`a small store killed at ${crashAt} is finished at the start, all of it`, async (t) => {
    const c = await startProcessCluster(t, { trees: [] })
    const server = await c.addFileServer({ 'a/f.txt': CONTENT }, { DFS_CRASH_AT: crashAt })
    const client = c.client({ timeoutMs: 2000 })
    const before = await client.statFresh('/a/f.txt')
    const NEW = 'new\n' // shorter than CONTENT: the start cuts the file to the new size too
    await finishedAtStart(t, server, client, '/a/f.txt', client.writeFile('/a/f.txt', Buffer.from(NEW)), before, { at: crashAt, answeredAt: 'overwrite:answered' })
    t.equal((await client.readFile('/a/f.txt')).toString(), NEW, 'every new byte, and the new size')
  })
}

t.test('a store killed while its body arrives leaves the file as before', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'a/f.txt': CONTENT }] })
  const server = c.files[0]
  const client = c.client({ timeoutMs: 2000 })
  const before = await client.statFresh('/a/f.txt')
  // A body that sends 1 MiB and then nothing: the server is killed while it waits for more.
  let sent = false
  const body = new Readable({
    read () {
      if (!sent) this.push(Buffer.alloc(1024 * 1024, 'x'))
      sent = true
    }
  })
  const store = client.writeFile('/a/f.txt', body)
  store.catch(() => {})
  const uploads = path.join(server.root as string, '.dfs', 'tmp')
  await waitFor('the body to be arriving on the server\'s disk', async () => {
    return fs.readdirSync(uploads).some((name) => fs.statSync(path.join(uploads, name)).size >= 64 * 1024)
  }, 15_000, 20)
  await server.kill()
  await t.rejects(store, 'the store fails')
  body.destroy()
  await server.restart()
  await servedAgain(client, '/a/f.txt')
  const after = await client.statFresh('/a/f.txt')
  t.equal(after.version, before.version, 'the version as before')
  t.equal((await client.readFile('/a/f.txt')).toString(), CONTENT, 'the bytes as before')
  t.same(uploadsLeft(server.root as string), [], 'no upload left behind')
})

// A range write (PATCH /content) killed with its intent on disk, with its bytes written but
// not synced, once all is synced but before its answer, and once its answer has left (the
// store answers before its fsyncs are done): every time the start finishes it, so the file
// has all the new bytes at one version up, and the client's retry of the same change is
// told it is applied rather than refused as built on an old version.
for (const crashAt of ['range:recorded', 'range:written', 'range:synced', 'range:answered']) {
  t.test(`a range write killed at ${crashAt} is finished at the start, all of it`, async (t) => {
    const c = await startProcessCluster(t, { trees: [] })
    const server = await c.addFileServer({ 'a/db': 'old bytes, old bytes\n' }, { DFS_CRASH_AT: crashAt })
    const client = c.client({ timeoutMs: 2000 })
    const before = await client.statFresh('/a/db')
    const held = await client.lock('/a/db')
    t.teardown(async () => await held.release().catch(() => {}))
    const write = client.storeRanges('/a/db', [{ offset: 0, data: Buffer.from('NEW') }, { offset: 11, data: Buffer.from('NEW') }], 24, held, before.version)
    await finishedAtStart(t, server, client, '/a/db', write, before, { at: crashAt, answeredAt: 'range:answered' })
    t.equal((await client.readFile('/a/db')).toString('hex'), Buffer.from('NEW bytes, NEW bytes\n\0\0\0').toString('hex'), 'every new byte, and the new size')
  })
}
