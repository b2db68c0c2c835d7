import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { DfsClient } from '../src/client/dfsClient'
import { FileApi } from '../src/shared/api'
import { Transport } from '../src/shared/transport'
import { startDirectoryServer } from '../servers/directory/server'
import { startFileServer } from '../servers/file/server'
import { startLockServer } from '../servers/lock/server'
import type { RunningServer } from '../servers/common/http'
import type { Test } from 'tap'

/** A temp folder and the servers a test starts (pushed to `running`): closed, latest first, and removed at its end. */
function scratch (t: Test, prefix: string): { work: string, running: RunningServer[] } {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const running: RunningServer[] = []
  t.teardown(async () => {
    for (const server of [...running].reverse()) await server.close().catch(() => {})
    fs.rmSync(work, { recursive: true, force: true })
  })
  return { work, running }
}

// The directory and lock servers keep their state in memory; file servers notice a restart
// by its new boot id and join again, so the cluster heals without restarting them.
t.test('a restarted directory or lock server gets the files and keys back', async (t) => {
  const { work, running } = scratch(t, 'dfs-restart-')
  fs.mkdirSync(path.join(work, 'root', 'notes'), { recursive: true })
  fs.writeFileSync(path.join(work, 'root', 'notes', 'a.txt'), 'one\n')
  let directory = await startDirectoryServer({ port: 0 })
  let lock = await startLockServer({ port: 0 })
  running.push(directory, lock)
  running.push(await startFileServer({ root: path.join(work, 'root'), port: 0, directoryUrl: directory.url, lockUrl: lock.url, heartbeatMs: 100 }))
  const client = new DfsClient({ directoryUrl: directory.url, lockUrl: lock.url, cacheDir: path.join(work, 'cache'), timeoutMs: 2000 })
  t.equal((await client.append('/notes/a.txt', 'two\n')).version, 2)

  await directory.close()
  await lock.close()
  directory = await startDirectoryServer({ port: directory.port })
  lock = await startLockServer({ port: lock.port })
  running.push(directory, lock)

  const deadline = Date.now() + 10_000
  let appended: number | null = null
  while (appended === null) {
    try {
      appended = (await client.append('/notes/a.txt', 'three\n')).version
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  t.equal(appended, 3, 'the version went on from where it was')
  t.equal((await client.readFile('/notes/a.txt')).toString(), 'one\ntwo\nthree\n')
})

// A joining file server reports all its names, and the directory replaces what it held of
// it with the report: a name made or removed between the scan and the report would be lost
// or come back. Names change only once the report is in (meanwhile: 503, and clients retry).
t.test('names made while a file server restarts and reports its files are all in the namespace afterwards', async (t) => {
  const { work, running } = scratch(t, 'dfs-rejoin-')
  const root = path.join(work, 'root')
  // Enough files that the scan and the report take a while.
  fs.mkdirSync(path.join(root, 'many'), { recursive: true })
  for (let i = 0; i < 5000; i++) fs.writeFileSync(path.join(root, 'many', `f-${i}`), '')
  fs.mkdirSync(path.join(root, 'made'))
  const directory = await startDirectoryServer({ port: 0 })
  const lock = await startLockServer({ port: 0 })
  const start = async (port: number): Promise<RunningServer> => await startFileServer({ root, port, directoryUrl: directory.url, lockUrl: lock.url, heartbeatMs: 100 })
  let files = await start(0)
  running.push(directory, lock)
  const client = new DfsClient({ directoryUrl: directory.url, lockUrl: lock.url, cacheDir: path.join(work, 'cache'), timeoutMs: 2000, retryWritesForMs: 20_000 })
  t.teardown(() => client.close())

  // Creates (as a mount's close sends them: retried, with a change id), one after another,
  // until the restarted server has answered a few.
  let restarted = false
  let afterRestart = 0
  const made: string[] = []
  const creating = (async () => {
    for (let i = 0; afterRestart < 20; i++) {
      await client.createWithContent(`/made/n-${i}`, Buffer.from('x'), { exclusive: true })
      made.push(`/made/n-${i}`)
      if (restarted) afterRestart++
    }
  })()
  await new Promise((resolve) => setTimeout(resolve, 50))
  await files.close()
  // As after a crash: nothing of the old process runs on (its handlers in flight finish first).
  await new Promise((resolve) => setTimeout(resolve, 300))
  files = await start(files.port)
  running.push(files)
  restarted = true
  await creating

  const fresh = new DfsClient({ directoryUrl: directory.url, lockUrl: lock.url, cacheDir: path.join(work, 'cache-2'), timeoutMs: 2000 })
  t.teardown(() => fresh.close())
  const missing: string[] = []
  for (const name of made) if (!(await fresh.statFresh(name).then(() => true, () => false))) missing.push(name)
  t.same(missing, [], `every one of the ${made.length} files made is in the namespace`)
})

t.test('while a file server reports its files, a change of a name is 503 UNAVAILABLE, and a client\'s retry lands once the report is in', async (t) => {
  const { work, running } = scratch(t, 'dfs-reporting-')
  fs.mkdirSync(path.join(work, 'root', 'made'), { recursive: true })
  const directory = await startDirectoryServer({ port: 0 })
  const lock = await startLockServer({ port: 0 })
  running.push(directory, lock)
  const files = await startFileServer({ root: path.join(work, 'root'), port: 0, directoryUrl: directory.url, lockUrl: lock.url })
  running.push(files)
  const client = new DfsClient({ directoryUrl: directory.url, lockUrl: lock.url, cacheDir: path.join(work, 'cache'), timeoutMs: 2000, retryWritesForMs: 20_000 })
  t.teardown(() => client.close())
  // As ClusterMembership marks a join's scan and report.
  files.app.locals.reporting = true
  const api = new FileApi(new Transport('file server', files.url, 2000))
  await t.rejects(api.createWithContent('/made/during.txt', Buffer.from('x'), {}), { code: 'UNAVAILABLE', status: 503 }, 'a create is refused meanwhile')
  await t.rejects(api.create('/made/folder', 'dir'), { code: 'UNAVAILABLE' }, 'so is a mkdir')
  const retried = client.createWithContent('/made/retried.txt', Buffer.from('later\n'), { exclusive: true })
  await new Promise((resolve) => setTimeout(resolve, 300))
  files.app.locals.reporting = false
  t.equal((await retried).meta.size, 6, 'the client\'s retry lands once the report is in')
  t.equal((await client.readFile('/made/retried.txt')).toString(), 'later\n')
})
