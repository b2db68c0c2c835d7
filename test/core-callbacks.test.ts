import t from 'tap'
import type { Test } from 'tap'
import { startFileServer } from '../servers/file/server'
import { CallbackRegistry } from '../src/client/callbacks'
import type { DfsClient } from '../src/client/dfsClient'
import { FileApi } from '../src/shared/api'
import { monotonicMs } from '../src/shared/clock'
import { Transport } from '../src/shared/transport'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { callerFor } from './helpers/credentials'
import { statsOf } from './helpers/wire'
import { waitFor } from './helpers/waitFor'

/*
 * Callbacks: a file server promises a client to tell it before a file changes. While the
 * promise holds, the client opens and stats the file with no request; a change anywhere
 * breaks the promise before the writer is answered, so close-to-open stays exact.
 */

const tree = { 'notes/a.txt': 'one\n', 'notes/b.txt': 'bee\n' }

/** A client that holds callbacks, closed at the end of the test. */
function callbackClient (t: Test, cluster: TestCluster): DfsClient {
  const client = cluster.client({ callbacks: true })
  t.teardown(() => client.close())
  return client
}

/** Reads until a callback is promised (the channel opens in the background at the first request). */
async function readUntilPromised (client: DfsClient, path: string): Promise<string> {
  let text = ''
  await waitFor(`a callback on ${path}`, async () => {
    text = (await client.readFile(path)).toString()
    return client.callbackCount > 0
  }, 5000, 20)
  return text
}

/** Requests that reached the file server for content (transfers and 304s) and stats. */
async function contentRequests (cluster: TestCluster): Promise<number> {
  const stats = await statsOf(cluster.fileServers[0])
  return stats.contentTransfers + stats.notModified
}

t.test('a promised file opens and stats with no request; another client\'s append breaks the promise first', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const reader = callbackClient(t, cluster)
  const writer = cluster.client()
  t.equal(await readUntilPromised(reader, '/notes/a.txt'), 'one\n')

  const before = await contentRequests(cluster)
  for (let i = 0; i < 20; i++) {
    t.equal((await reader.readFile('/notes/a.txt')).toString(), 'one\n')
    t.equal((await reader.stat('/notes/a.txt')).size, 4)
  }
  t.equal(await contentRequests(cluster), before, '20 opens and stats of the promised file reached no server')

  await writer.append('/notes/a.txt', 'two\n')
  t.equal(reader.callbackCount, 0, 'the promise was broken before the append was answered')
  t.equal((await reader.readFile('/notes/a.txt')).toString(), 'one\ntwo\n', 'the next open sees the append')
  t.equal((await reader.stat('/notes/a.txt')).size, 8)
})

t.test('close-to-open under load: 1000 appends by one client, each seen by the other\'s next open', async (t) => {
  const cluster = await startTestCluster(t, [{ 'log.txt': '' }])
  const reader = callbackClient(t, cluster)
  const writer = cluster.client()
  await readUntilPromised(reader, '/log.txt')
  let stale = 0
  let expected = ''
  for (let i = 0; i < 1000; i++) {
    const line = `line ${i}\n`
    await writer.append('/log.txt', line)
    expected += line
    // As the mount does: an open, then the read of the whole file from the copy it found current.
    const text = (await reader.readFile('/log.txt')).toString()
    if (text !== expected) stale++
  }
  t.equal(stale, 0, 'no open after a returned append saw old bytes')
  t.ok(reader.callbackCount <= 1, 'at most the one file is promised')
})

/** A registry of its own on a clock the test moves ahead (skew), with its channel to the first file server up. */
async function registryOnSkewedClock (t: Test, cluster: TestCluster): Promise<{ registry: CallbackRegistry, api: FileApi, now: () => number, skew: (ms: number) => void }> {
  let skewMs = 0
  const now = (): number => monotonicMs() + skewMs
  const registry = new CallbackRegistry(() => {}, now)
  t.teardown(() => registry.close())
  const server = cluster.fileServers[0]
  const api = new FileApi(new Transport('file server under test', server.url, 5000, { ...callerFor(server), clientId: registry.clientId }))
  await waitFor('the callback channel', async () => registry.ready(api), 5000, 20)
  return { registry, api, now, skew: (ms) => { skewMs += ms } }
}

t.test('a lease that lapses on the client (a late renewal) vouches for nothing meanwhile, and counts again once renewed unless a break came', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  // The registry's clock jumps ahead: its lease runs out here while the server still counts it.
  const { registry, api, now, skew } = await registryOnSkewedClock(t, cluster)
  for (const path of ['/notes/a.txt', '/notes/b.txt']) {
    const askedAt = now()
    const answer = await api.statWithCallback(path)
    t.ok(answer.callback, `${path} is promised`)
    registry.granted(api, path, answer.meta, askedAt)
  }
  t.equal(registry.current('/notes/a.txt')?.size, 4)

  skew(10_000)
  t.equal(registry.current('/notes/a.txt'), undefined, 'a lapsed lease vouches for nothing')
  const writer = cluster.client()
  await writer.append('/notes/b.txt', 'two\n')
  await waitFor('a renewal after the lapse', async () => registry.current('/notes/a.txt') !== undefined, 5000, 20)
  t.equal(registry.current('/notes/a.txt')?.size, 4, 'the untouched file is promised again, with no new stat')
  t.equal(registry.current('/notes/b.txt'), undefined, 'the file another client changed meanwhile is not')
  t.notOk(registry.holds('/notes/b.txt'), 'its promise ended with the break')
})

t.test('the holder\'s own change keeps its promise with the answer: its next stat and open need no request', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const client = callbackClient(t, cluster)
  await readUntilPromised(client, '/notes/b.txt')
  const appended = await client.append('/notes/b.txt', 'more\n')
  t.equal(client.callbackCount, 1, 'the server does not break the writer\'s callback, and the writer keeps it')
  const before = await statsOf(cluster.fileServers[0])
  t.same(await client.statCurrent('/notes/b.txt'), appended, 'the promise vouches for the append\'s answer')
  t.equal((await client.readFile('/notes/b.txt')).toString(), 'bee\nmore\n')
  const after = await statsOf(cluster.fileServers[0])
  t.equal(after.contentTransfers, before.contentTransfers, 'the cached copy was brought forward by the append: no content moved')
  t.equal(after.notModified, before.notModified, 'and the open asked nothing')
  // Another client's change still breaks it.
  await cluster.client().append('/notes/b.txt', 'theirs\n')
  t.equal((await client.readFile('/notes/b.txt')).toString(), 'bee\nmore\ntheirs\n', 'another client\'s append is seen at the next open')
})

t.test('the holder\'s own changes in quick succession keep its promise: a change and the next request in one millisecond keep their order', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const registry = new CallbackRegistry(() => {}, monotonicMs)
  t.teardown(() => registry.close())
  const server = cluster.fileServers[0]
  const api = new FileApi(new Transport('file server under test', server.url, 5000, { ...callerFor(server), clientId: registry.clientId }))
  await waitFor('the callback channel', async () => registry.ready(api), 5000, 20)
  const askedAt = monotonicMs()
  const answer = await api.statWithCallback('/notes/a.txt')
  registry.granted(api, '/notes/a.txt', answer.meta, askedAt)
  // As a shell's `echo $i > file` in a loop: each store leaves right after the last answer
  // was taken, often in the same millisecond (a whole-millisecond clock lost the promise so).
  let kept = 0
  for (let i = 1; i <= 200; i++) {
    const sentAt = monotonicMs()
    if (registry.changedByMe('/notes/a.txt', sentAt, { ...answer.meta, version: answer.meta.version + i })) kept++
  }
  t.equal(kept, 200, 'every change kept the promise')
  t.equal(registry.current('/notes/a.txt')?.version, answer.meta.version + 200, 'which vouches for the last answer')
})

t.test('changes are remembered a minute for grants in flight, then forgotten, also past a thousand of them and for a path changed again', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const { registry, api, skew } = await registryOnSkewedClock(t, cluster)
  const { meta } = await api.statWithCallback('/notes/a.txt')
  const start = monotonicMs()
  // More than a thousand changes (the point past which old ones are dropped), a.txt's first.
  registry.changedHere('/notes/a.txt')
  for (let i = 0; i < 1500; i++) registry.changedHere(`/made/f-${i}`)
  skew(59_000)
  registry.changedHere('/notes/a.txt')
  skew(2_000)
  registry.changedHere('/made/last')
  // The clock's jump lapsed the channel's lease as the registry counts it: wait for a renewal.
  await waitFor('a renewal after the jump', async () => registry.ready(api), 5000, 20)
  // The server would not promise these paths; what counts here is whether the registry takes a grant.
  registry.granted(api, '/notes/a.txt', meta, start + 58_000)
  t.equal(registry.current('/notes/a.txt'), undefined, 'a path changed again a second ago still refuses a grant asked for before that')
  registry.granted(api, '/made/f-1', { ...meta, path: '/made/f-1' }, start)
  t.not(registry.current('/made/f-1'), undefined, 'a change more than a minute old is forgotten: a grant asked for after it is taken')
})

t.test('unlink, truncate, utimes and a whole-file store each break the promises of other clients', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const reader = callbackClient(t, cluster)
  const writer = cluster.client()
  const changes: Array<[string, () => Promise<unknown>, string | null]> = [
    ['truncate', async () => await writer.truncate('/notes/a.txt', 2), 'on'],
    ['utimes', async () => await writer.utimes('/notes/a.txt', Date.parse('2001-01-01T00:00:00Z')), 'on'],
    ['store', async () => await writer.writeFile('/notes/a.txt', 'new\n'), 'new\n'],
    ['unlink', async () => await writer.unlink('/notes/a.txt'), null]
  ]
  for (const [what, change, after] of changes) {
    await readUntilPromised(reader, '/notes/a.txt')
    await change()
    t.equal(reader.callbackCount, 0, `${what} broke the promise before it was answered`)
    if (after === null) await t.rejects(reader.readFile('/notes/a.txt'), `after ${what} the file is gone for the reader too`)
    else t.equal((await reader.readFile('/notes/a.txt')).toString(), after, `after ${what} the reader sees it`)
  }
  const mtime = (await reader.stat('/notes/b.txt')).mtimeMs
  t.ok(mtime > 0)
})

t.test('a rename by another client tells the holders where the file went, before it is answered; a folder\'s rename, each file\'s new path', async (t) => {
  const cluster = await startTestCluster(t, [{ ...tree, 'notes/deep/c.txt': 'sea\n' }])
  const holder = callbackClient(t, cluster)
  const renamer = cluster.client()
  const heard: Array<[string, string]> = []
  holder.onRenamedElsewhere((from, to) => { heard.push([from, to]) })
  await readUntilPromised(holder, '/notes/a.txt')
  await renamer.rename('/notes/a.txt', '/notes/a2.txt')
  t.same(heard, [['/notes/a.txt', '/notes/a2.txt']], 'the file\'s new path, heard before the rename was answered')

  await holder.readFile('/notes/deep/c.txt')
  heard.length = 0
  await renamer.rename('/notes/deep', '/notes/shallow')
  t.same(heard, [['/notes/deep/c.txt', '/notes/shallow/c.txt']], 'the folder\'s file at its new path')

  heard.length = 0
  await holder.readFile('/notes/b.txt')
  await holder.rename('/notes/b.txt', '/notes/b2.txt')
  await renamer.unlink('/notes/a2.txt')
  t.same(heard, [], 'not for its own rename, nor for an unlink')
})

t.test('a restarted file server voids every promise: its clients revalidate again', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const reader = callbackClient(t, cluster)
  await readUntilPromised(reader, '/notes/a.txt')
  const [server] = cluster.fileServers
  await server.close()
  await waitFor('the promise to end with the channel', async () => reader.callbackCount === 0, 5000, 20)
  const restarted = await startFileServer({ root: cluster.roots[0], port: server.port, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key } })
  t.teardown(async () => await restarted.close())
  t.equal((await reader.readFile('/notes/a.txt')).toString(), 'one\n', 'reads go on')
  await readUntilPromised(reader, '/notes/a.txt')
  t.pass('and promises are made again once the channel is back')
})

/*
 * What the mount lets the kernel keep rests on these two (operations.ts, kernelKeepsFor): how
 * long a promise vouches for a file at the least, and word at once when it stops vouching,
 * before a break is acknowledged (so before the change it breaks for is answered).
 */
t.test('a promise vouches for a while, less than its lease; its end is heard before the change that ended it is answered', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const holder = callbackClient(t, cluster)
  const writer = cluster.client()
  const ended: string[] = []
  holder.onVouchEnded((path) => { ended.push(path) })
  t.equal(holder.attributesVouchedForMs('/notes/a.txt'), 0, 'nothing vouched for before a promise')
  await readUntilPromised(holder, '/notes/a.txt')
  const vouched = holder.attributesVouchedForMs('/notes/a.txt')
  t.ok(vouched > 0 && vouched < 3000, `vouched for ${vouched} ms, within the 3 s lease`)
  t.equal(holder.attributesVouchedForMs('/notes/b.txt'), 0, 'not for a file it holds no promise on')

  await writer.append('/notes/a.txt', 'two\n')
  t.same(ended, ['/notes/a.txt'], 'heard of the end before the other client\'s append was answered')
  t.equal(holder.attributesVouchedForMs('/notes/a.txt'), 0, 'and it vouches for nothing since')

  ended.length = 0
  await readUntilPromised(holder, '/notes/a.txt')
  await holder.append('/notes/a.txt', 'three\n')
  t.ok(ended.includes('/notes/a.txt'), 'its own change is heard of too: the attributes it vouched for changed')

  ended.length = 0
  await readUntilPromised(holder, '/notes/b.txt')
  await cluster.fileServers[0].close()
  await waitFor('the promises to end with the channel', async () => holder.callbackCount === 0, 5000, 20)
  t.ok(ended.includes('/notes/b.txt'), 'a server that went away ends what it promised, and that is heard of')
})
