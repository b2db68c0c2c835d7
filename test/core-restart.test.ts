import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { DfsClient } from '../src/client/dfsClient'
import { startDirectoryServer } from '../servers/directory/server'
import { startFileServer } from '../servers/file/server'
import { startLockServer } from '../servers/lock/server'
import type { RunningServer } from '../servers/common/http'

// The directory and lock servers keep their state in memory; file servers notice a restart
// by its new boot id and join again, so the cluster heals without restarting them.
t.test('a restarted directory or lock server gets the files and keys back', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-restart-'))
  fs.mkdirSync(path.join(work, 'root', 'notes'), { recursive: true })
  fs.writeFileSync(path.join(work, 'root', 'notes', 'a.txt'), 'one\n')
  const running: RunningServer[] = []
  t.teardown(async () => {
    for (const server of running.reverse()) await server.close().catch(() => {})
    fs.rmSync(work, { recursive: true, force: true })
  })
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
