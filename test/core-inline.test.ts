import t from 'tap'
import type { Test } from 'tap'
import { BytesReader } from '../src/client/copyReader'
import type { CopyReader } from '../src/client/copyReader'
import type { DfsClient } from '../src/client/dfsClient'
import type { Download } from '../src/client/localCache'
import { FileRoutes, MAX_INLINE_BYTES } from '../src/shared/protocol'
import { callbackClient, startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { fileApiOf, rawAs, statsOf } from './helpers/wire'
import { waitFor } from './helpers/waitFor'

/*
 * GET /stat?inline=N: a small file's bytes come with its stat, so a client with no copy of
 * it (the mount, when the kernel stats a file before opening it) opens it with no request
 * of its own while it holds the file's callback.
 */

const small = 'x'.repeat(100)
const tree = { 'cold/a.txt': small, 'cold/b.txt': 'bee\n', 'cold/big.bin': 'y'.repeat(20_000), 'warm/c.txt': 'sea\n' }

/** Requests that reached the file server for content: transfers (also inline ones) and 304s. */
async function contentRequests (cluster: TestCluster): Promise<number> {
  const stats = await statsOf(cluster.fileServers[0])
  return stats.contentTransfers + stats.notModified
}

/** A client holding callbacks whose event channel to the file server is up (warmed on a file of its own). */
async function warmClient (t: Test, cluster: TestCluster): Promise<DfsClient> {
  return await callbackClient(t, cluster, '/warm/c.txt')
}

t.test('GET /stat?inline=N answers a file of at most N bytes with its bytes, a bigger one without', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const api = fileApiOf(cluster.fileServers[0])
  const answer = await api.statWithCallback('/cold/a.txt', 1000)
  t.equal(answer.content?.toString(), small, 'the bytes')
  t.match(answer.meta, { path: '/cold/a.txt', size: 100, version: 1 })
  t.notOk('content' in answer.meta, 'the meta is a plain FileMeta')
  t.equal((await api.statWithCallback('/cold/a.txt', 99)).content, undefined, 'one byte too big')
  t.equal((await api.statWithCallback('/cold/a.txt')).content, undefined, 'not asked for')
  const bad = await rawAs(cluster.credentials.read).rawGet(cluster.fileServers[0].url, FileRoutes.stat, { path: '/cold/a.txt', inline: MAX_INLINE_BYTES + 1 })
  t.equal(bad.status, 400, 'more than MAX_INLINE_BYTES is refused')
  t.equal(bad.body.error.code, 'BAD_REQUEST')
})

t.test('a client with no copy gets a small file with its stat, and the open after it costs no request', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const client = await warmClient(t, cluster)
  const before = await contentRequests(cluster)
  t.equal((await client.statFresh('/cold/a.txt')).size, 100)
  t.equal(await contentRequests(cluster), before + 1, 'the stat brought the bytes')
  t.equal((await client.readFile('/cold/a.txt')).toString(), small)
  t.equal(await contentRequests(cluster), before + 1, 'the open made no request')

  t.equal((await client.statFresh('/cold/big.bin')).size, 20_000)
  t.equal(await contentRequests(cluster), before + 1, 'a file over the limit comes without its bytes')
  t.equal((await client.readFile('/cold/big.bin')).length, 20_000)
  t.equal(await contentRequests(cluster), before + 2, 'and is fetched on open')

  const again = await contentRequests(cluster)
  await client.statFresh('/cold/a.txt')
  t.equal(await contentRequests(cluster), again, 'a file with a copy here comes without its bytes')
})

t.test('a change after the inline stat is seen by the next open (the callback breaks first)', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const client = await warmClient(t, cluster)
  const writer = cluster.client()
  await client.statFresh('/cold/b.txt')
  await writer.append('/cold/b.txt', 'more\n')
  t.equal((await client.readFile('/cold/b.txt')).toString(), 'bee\nmore\n')
})

/** Everything an open gives, read as the mount reads it: once a copy still arriving has all its bytes. */
async function readAll ({ reader, download }: { reader: CopyReader, download: Download | null }): Promise<string> {
  await download?.waitFor(Infinity)
  const buffer = Buffer.alloc(1 << 16)
  const { bytesRead } = await reader.read(buffer, 0, buffer.length, 0)
  await reader.close()
  return buffer.subarray(0, bytesRead).toString()
}

t.test('the open after an inline stat reads the bytes from memory, no copy opened, and only at the version they are', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const client = await warmClient(t, cluster)
  const writer = cluster.client()
  await client.statFresh('/cold/b.txt')
  const opened = await client.openForReading('/cold/b.txt')
  t.ok(opened.reader instanceof BytesReader, 'read from the bytes that came with the stat')
  t.equal(await readAll(opened), 'bee\n')

  // Changed by another client: the callback breaks, and the remembered bytes are of another version.
  await writer.append('/cold/b.txt', 'more\n')
  const beforeChanged = await contentRequests(cluster)
  const after = await client.openForReading('/cold/b.txt')
  t.equal(await contentRequests(cluster), beforeChanged + 1, 'not the remembered bytes: the server is asked')
  t.equal(await readAll(after), 'bee\nmore\n', 'the new version')
  t.equal(after.meta.size, 9)

  // No callback at all (a client without them): never from memory.
  const plain = cluster.client()
  t.teardown(() => plain.close())
  await plain.statFresh('/cold/a.txt')
  const beforeUncalled = await contentRequests(cluster)
  const uncalled = await plain.openForReading('/cold/a.txt')
  t.equal(await readAll(uncalled), small)
  await plain.openForReading('/cold/a.txt')
  t.equal(await contentRequests(cluster), beforeUncalled + 2, 'with no callback to vouch, the server is asked at each open')
})

t.test('a small file opened with no stat before (its attributes came with a listing) is read into memory, not into the cache', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const client = await warmClient(t, cluster)
  const writer = cluster.client()
  const before = await contentRequests(cluster)
  const opened = await client.openForReading('/cold/a.txt')
  t.ok(opened.reader instanceof BytesReader, 'its bytes in memory')
  t.equal(opened.download, null, 'nothing still arriving')
  t.equal(await readAll(opened), small)
  t.equal(await client.cache.get('/cold/a.txt'), null, 'no copy written to the cache folder')
  t.equal(await contentRequests(cluster), before + 1, 'one request')
  t.equal(await readAll(await client.openForReading('/cold/a.txt')), small, 'the next open reads the same bytes')
  t.equal(await contentRequests(cluster), before + 1, 'with no request, under the callback')

  // Changed by another client: the next open asks and reads the new version.
  await writer.append('/cold/a.txt', 'z')
  t.equal(await readAll(await client.openForReading('/cold/a.txt')), small + 'z', 'the new version')
  t.equal(await contentRequests(cluster), before + 2)

  // A file over the limit still becomes a copy in the cache as it arrives.
  const big = await client.openForReading('/cold/big.bin')
  t.equal((await readAll(big)).length, 20_000)
  t.not(await client.cache.get('/cold/big.bin'), null, 'a larger file is copied to the cache')

  // An empty file is a small file too.
  await writer.writeFile('/cold/empty.txt', '')
  t.equal(await readAll(await client.openForReading('/cold/empty.txt')), '', 'an empty file reads empty')
})

t.test('with no callback, bytes held in memory are revalidated as a copy is: a 304, no content moved', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const plain = cluster.client()
  t.teardown(() => plain.close())
  const writer = cluster.client()
  t.equal(await readAll(await plain.openForReading('/cold/a.txt')), small)
  t.equal(await plain.cache.get('/cold/a.txt'), null, 'held in memory, no copy on disk')
  const before = await statsOf(cluster.fileServers[0])
  t.equal(await readAll(await plain.openForReading('/cold/a.txt')), small, 'the next open reads the same bytes')
  t.equal((await plain.readFile('/cold/a.txt')).toString(), small, 'as does a reader that needs a copy on disk')
  const after = await statsOf(cluster.fileServers[0])
  t.equal(after.notModified, before.notModified + 2, 'each open asked the server (no callback vouches)')
  t.equal(after.contentTransfers, before.contentTransfers, 'and no content moved')

  await writer.append('/cold/a.txt', 'z')
  t.equal(await readAll(await plain.openForReading('/cold/a.txt')), small + 'z', 'a change is seen at the next open')
})

t.test('a small file this client creates stays in memory, not in the cache; its bytes are read right', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const client = await warmClient(t, cluster)
  const { meta } = await client.createWithContent('/cold/new.txt', Buffer.from('made\n'), { exclusive: true, keepWriting: true })
  t.equal(meta.size, 5)
  t.equal(await client.cache.get('/cold/new.txt'), null, 'no copy written to the cache folder')
  const opened = await client.openForReading('/cold/new.txt')
  t.equal(await readAll(opened), 'made\n', 'an open reads the bytes made')
  t.equal((await client.readFile('/cold/new.txt')).toString(), 'made\n', 'and so does a reader that needs a copy on disk')
  const big = 'z'.repeat(20_000)
  await client.createWithContent('/cold/big-new.bin', Buffer.from(big), { exclusive: true })
  await waitFor('the copy of a large one', async () => (await client.cache.get('/cold/big-new.bin')) !== null)
  t.pass('a larger one is copied to the cache, as before')
})

t.test('GET /content answers a small file (sent whole) as a large one (streamed): status, length, validators, bytes; HEAD without a body', async (t) => {
  const smallBytes = 'a'.repeat(64 * 1024)
  const largeBytes = 'b'.repeat(64 * 1024 + 1)
  const cluster = await startTestCluster(t, [{ 'f/small.txt': smallBytes, 'f/large.txt': largeBytes, 'f/empty.txt': '', 'f/sub/x.txt': 'x' }])
  const { rawGet, raw } = rawAs(cluster.credentials.read)
  const url = cluster.fileServers[0].url
  for (const [path, bytes] of [['/f/small.txt', smallBytes], ['/f/large.txt', largeBytes], ['/f/empty.txt', '']]) {
    const got = await rawGet(url, FileRoutes.content, { path }, { responseType: 'arraybuffer' })
    t.equal(got.status, 200, path)
    t.equal(Buffer.from(got.body as ArrayBuffer).toString(), bytes, `${path}: its bytes`)
    t.equal(got.headers['content-length'], String(bytes.length), `${path}: its length`)
    t.ok(typeof got.headers.etag === 'string', `${path}: a validator`)
    const head = await raw(url, { method: 'HEAD', url: FileRoutes.content, params: { path } })
    t.equal(head.status, 200, `HEAD ${path}`)
    t.equal(head.headers['content-length'], String(bytes.length), `HEAD ${path}: its length`)
    t.equal(head.headers.etag, got.headers.etag, `HEAD ${path}: the same validator`)
    const again = await rawGet(url, FileRoutes.content, { path }, { headers: { 'If-None-Match': got.headers.etag as string } })
    t.equal(again.status, 304, `${path}: current copy`)
  }
  const folder = await rawGet(url, FileRoutes.content, { path: '/f/sub' })
  t.equal(folder.status, 409, 'a folder has no content')
  t.equal(folder.body.error.code, 'IS_DIRECTORY')
})
