import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startFileServer } from '../servers/file/server'
import { LockedError } from '../src/shared/errors'
import { startTestCluster } from './helpers/cluster'
import { fileApiOf, rawAs, statsOf } from './helpers/wire'
import { WorkingCopy } from '../src/client/workingCopy'
import type { HeldLock } from '../src/client/lockClient'
import { FileRoutes, Headers } from '../src/shared/protocol'
import { LockApi } from '../src/shared/api'
import { Transport } from '../src/shared/transport'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

/*
 * Appends need no lock, and every change carries an id the file server remembers: a retry
 * after a lost answer, even across a restart of the server, is applied once.
 */

const tree = { 'logs/app.log': 'start\n' }

t.test('an append retried with the same change id is applied once, also after the file server restarted', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const [server] = cluster.fileServers
  const disk = path.join(cluster.roots[0], 'logs/app.log')
  const api = fileApiOf(server)
  const first = await api.append('/logs/app.log', Buffer.from('one\n'), { changeId: 'change-1' })
  t.equal(first.version, 2)
  const again = await api.append('/logs/app.log', Buffer.from('one\n'), { changeId: 'change-1' })
  t.equal(again.version, 2, 'the retry is recognised: no new version')
  t.equal(fs.readFileSync(disk, 'utf8'), 'start\none\n', 'and no second copy of the bytes')
  t.equal((await api.append('/logs/app.log', Buffer.from('two\n'), { changeId: 'change-2' })).version, 3, 'another id is another change')

  // The answer to change-3 is "lost" with the server: the retry goes to its next incarnation.
  await api.append('/logs/app.log', Buffer.from('three\n'), { changeId: 'change-3' })
  await server.close()
  const restarted = await startFileServer({ root: cluster.roots[0], port: server.port, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key } })
  t.teardown(async () => await restarted.close())
  const retried = await fileApiOf(restarted).append('/logs/app.log', Buffer.from('three\n'), { changeId: 'change-3' })
  t.equal(retried.version, 4, 'the restarted server remembers the change from its log')
  t.equal(fs.readFileSync(disk, 'utf8'), 'start\none\ntwo\nthree\n')
})

t.test('a store retried with the same change id does not undo what came after it', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const client = cluster.client()
  const api = fileApiOf(cluster.fileServers[0])
  const held = await client.lock('/logs/app.log')
  const stored = await api.store('/logs/app.log', Buffer.from('replaced\n'), leaseCredentialOf(held.lease), 'store-1')
  t.equal(stored.version, 2)
  await api.append('/logs/app.log', Buffer.from('later\n'), { token: leaseCredentialOf(held.lease) })
  const retried = await api.store('/logs/app.log', Buffer.from('replaced\n'), leaseCredentialOf(held.lease), 'store-1')
  t.equal(retried.version, 3, 'the retry answers the file as it is')
  await held.release()
  t.equal((await client.readFile('/logs/app.log')).toString(), 'replaced\nlater\n', 'the later append is still there')
})

t.test('a bad change id is a 400', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const { raw } = rawAs(cluster.credentials.server)
  const answer = await raw(cluster.fileServers[0].url, {
    method: 'POST', url: FileRoutes.append, params: { path: '/logs/app.log' }, data: Buffer.from('x'),
    headers: { 'Content-Type': 'application/octet-stream', [Headers.changeId]: 'no spaces please' }
  })
  t.equal(answer.status, 400)
  t.match(answer.body.error.message, /x-dfs-change-id must be/)
})

t.test('an append without a lock is one request; while a writer holds the key and has fetched the file, it waits for the lock', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const writer = cluster.client()
  const appender = cluster.client({ lockTimeoutMs: 5000 })
  const api = fileApiOf(cluster.fileServers[0])

  t.equal((await appender.append('/logs/app.log', 'free\n')).version, 2, 'nobody holds the key: appended at once')

  // The writer starts a working copy: the lock, then a fetch under it (as the mount does).
  const held = await writer.lock('/logs/app.log')
  await writer.fetch('/logs/app.log', { lease: held })
  await t.rejects(api.append('/logs/app.log', Buffer.from('sneaky\n')), LockedError, 'an unlocked append is refused while the key is held')

  const waiting = appender.append('/logs/app.log', 'waited\n')
  await new Promise((resolve) => setTimeout(resolve, 300))
  const { stored } = await writer.storeWorkingCopy('/logs/app.log', await writeLocal(cluster.workDir, 'rewritten\n'), held, 2)
  t.equal(stored?.version, 3)
  await held.release()
  const appended = await waiting
  t.equal(appended.version, 4, 'the append landed after the store, under the lock')
  t.equal((await writer.readFile('/logs/app.log')).toString(), 'rewritten\nwaited\n', 'nothing was lost')

  // The key is free again: the next append needs no lock (the file server asks the lock
  // server once, learns it was released, and lets appends through again).
  t.equal((await api.append('/logs/app.log', Buffer.from('free again\n'))).version, 5)
})

t.test('a store whose lease was lost meanwhile is stored under a new one if the file did not move, else kept as a conflict copy', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const logged: string[] = []
  const writer = cluster.client({ log: (line) => logged.push(line) })
  const other = cluster.client()
  const lockApi = new LockApi(new Transport('lock server', cluster.lock.url, 2000, cluster.credentials.caller))

  // The lease is lost behind the writer's back (as when it ran out during an outage).
  let held = await writer.lock('/logs/app.log')
  await lockApi.release('/logs/app.log', leaseCredentialOf(held.lease))
  const unchanged = await writer.storeWorkingCopy('/logs/app.log', await writeLocal(cluster.workDir, 'mine\n'), held, 1)
  t.equal(unchanged.stored?.version, 2, 'nobody changed the file: stored under a new lease')
  t.not(unchanged.held.lease.token, held.lease.token, 'the caller now holds the new lease')
  await unchanged.held.release()
  t.equal((await other.readFile('/logs/app.log')).toString(), 'mine\n')

  held = await writer.lock('/logs/app.log')
  await lockApi.release('/logs/app.log', leaseCredentialOf(held.lease))
  await other.append('/logs/app.log', 'theirs\n')
  const moved = await writer.storeWorkingCopy('/logs/app.log', await writeLocal(cluster.workDir, 'mine again\n'), held, 2)
  await moved.held.release()
  t.equal(moved.stored, null, 'the file moved on: not stored over it')
  t.equal((await other.readFile('/logs/app.log')).toString(), 'mine\ntheirs\n', 'their change is kept')
  const names = (await other.list('/logs')).map((e) => e.name)
  const conflict = names.find((name) => name.startsWith('app.log.conflict-'))
  t.ok(conflict, `a conflict copy beside the file: ${names.join(', ')}`)
  t.equal((await other.readFile(`/logs/${String(conflict)}`)).toString(), 'mine again\n', 'holding what would have been lost')
  t.match(logged.join('\n'), /kept as \/logs\/app\.log\.conflict-/, 'and the mount log says so')
})

async function writeLocal (dir: string, content: string): Promise<string> {
  const file = path.join(dir, `local-${Date.now()}`)
  await fs.promises.writeFile(file, content)
  return file
}

t.test('a partial working copy (a large file not cached here) whose lease was lost meanwhile fetches the rest without it and is stored under a new one', async (t) => {
  const MiB = 1024 * 1024
  const cluster = await startTestCluster(t, [{ 'data/.keep': '' }])
  const model = Buffer.alloc(12 * MiB)
  for (let i = 0; i + 4 <= model.length; i += 4) model.writeUInt32LE(i, i)
  await cluster.client().writeFile('/data/big.bin', model)
  const writer = cluster.client()
  const lockApi = new LockApi(new Transport('lock server', cluster.lock.url, 2000, cluster.credentials.caller))
  const before = await statsOf(cluster.fileServers[0])
  const copy = await WorkingCopy.start(writer, '/data/big.bin', writer.workDir, false)
  t.teardown(async () => await copy.close(writer, { keep: false }))
  t.equal((await statsOf(cluster.fileServers[0])).contentTransfers, before.contentTransfers, 'partial: no transfer of the file at its start')
  // Cut to 2 MiB and written at 3 MiB: 1 MiB changed of 3, so a range store, which the lost
  // lease turns into a whole store, which needs the first 2 MiB here.
  await copy.truncate(2 * MiB)
  await copy.write(Buffer.from('end'), 3 * MiB)
  await lockApi.release('/data/big.bin', leaseCredentialOf((copy.lease as HeldLock).lease))
  await copy.store(writer)
  const expected = Buffer.concat([model.subarray(0, 2 * MiB), Buffer.alloc(MiB), Buffer.from('end')])
  t.ok(fs.readFileSync(path.join(cluster.roots[0], 'data/big.bin')).equals(expected), 'stored whole, every byte right')
})
