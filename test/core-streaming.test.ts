import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import http from 'node:http'
import { etagOf, FileRoutes, Headers, PROTOCOL_VERSION } from '../src/shared/protocol'
import { recentProblems } from '../servers/common/problems'
import { rawAs, statsOf } from './helpers/wire'

const MiB = 1024 * 1024

/** Pseudo-random bytes, chunk by chunk, so neither the test nor the code under test can guess them. */
function* randomChunks (mebibytes: number): Generator<Buffer> {
  for (let i = 0; i < mebibytes; i++) yield crypto.randomBytes(MiB)
}

async function sha256Of (stream: Readable): Promise<string> {
  const hash = crypto.createHash('sha256')
  await pipeline(stream, hash)
  return hash.digest('hex')
}

t.test('a 64 MiB file streams through the client whole and intact', async (t) => {
  const cluster = await startTestCluster(t, [{ 'big/blob.bin': '' }])
  const onDisk = path.join(cluster.roots[0], 'big', 'blob.bin')
  const written = crypto.createHash('sha256')
  const fd = fs.openSync(onDisk, 'w')
  for (const chunk of randomChunks(64)) {
    fs.writeSync(fd, chunk)
    written.update(chunk)
  }
  fs.closeSync(fd)
  const expected = written.digest('hex')
  const server = cluster.fileServers[0]

  const reader = cluster.client()
  const whole = await reader.readFile('/big/blob.bin')
  t.equal(whole.length, 64 * MiB)
  t.equal(crypto.createHash('sha256').update(whole).digest('hex'), expected, 'readFile gives the same bytes')
  const afterFetch = await statsOf(server)
  t.equal(afterFetch.contentTransfers, 1)
  t.equal(afterFetch.contentBytes, 64 * MiB, 'the file crossed the wire once')

  t.equal(await sha256Of(await reader.createReadStream('/big/blob.bin')), expected, 'createReadStream from the cached copy')
  const afterHit = await statsOf(server)
  t.equal(afterHit.contentBytes, afterFetch.contentBytes, 'the cached copy was not fetched again')
  t.equal(afterHit.notModified, afterFetch.notModified + 1)

  t.equal(await sha256Of(await cluster.client().createReadStream('/big/blob.bin')), expected, 'createReadStream on an empty cache')
  t.equal((await statsOf(server)).contentBytes, 128 * MiB)

  // An append given as a stream goes up as one.
  const total = crypto.createHash('sha256').update(whole)
  const tail = [...randomChunks(8)]
  for (const chunk of tail) total.update(chunk)
  const meta = await reader.append('/big/blob.bin', Readable.from(tail))
  t.equal(meta.size, 72 * MiB)
  t.equal(meta.version, 2)
  const expectedTotal = total.digest('hex')
  t.equal(await sha256Of(await reader.createReadStream('/big/blob.bin')), expectedTotal, 'the writer reads its streamed append')
  t.equal(await sha256Of(fs.createReadStream(onDisk)), expectedTotal, 'and it is on the server\'s disk')
})

t.test('GET /content with a Range answers those bytes of the version If-Match names, and refuses another version or a bad range', async (t) => {
  const bytes = crypto.randomBytes(3 * MiB)
  const cluster = await startTestCluster(t, [{ 'big/r.bin': '' }])
  fs.writeFileSync(path.join(cluster.roots[0], 'big', 'r.bin'), bytes)
  const server = cluster.fileServers[0]
  const client = cluster.client()
  const meta = await client.stat('/big/r.bin')
  const { rawGet } = rawAs(cluster.credentials.read)
  const ranged = async (range: string, ifMatch = etagOf(meta)): Promise<{ status: number, body: unknown, headers: Record<string, unknown> }> =>
    await rawGet(server.url, FileRoutes.content, { path: '/big/r.bin' }, { responseType: 'arraybuffer', headers: { Range: range, 'If-Match': ifMatch } })

  const middle = await ranged(`bytes=${2 * MiB}-${2 * MiB + 99}`)
  t.equal(middle.status, 206)
  t.same(Buffer.from(middle.body as ArrayBuffer), bytes.subarray(2 * MiB, 2 * MiB + 100), 'the 100 bytes asked for')
  t.equal(middle.headers['content-range'], `bytes ${2 * MiB}-${2 * MiB + 99}/${3 * MiB}`)
  t.equal(middle.headers.etag, etagOf(meta), 'with the version\'s validator')
  const end = await ranged(`bytes=${3 * MiB - 10}-${3 * MiB + 1000}`)
  t.same(Buffer.from(end.body as ArrayBuffer), bytes.subarray(3 * MiB - 10), 'a range past the end: the bytes up to it')
  t.equal((await ranged(`bytes=${4 * MiB}-${4 * MiB + 9}`)).headers['content-length'], '0', 'past the end: none')
  const before = await statsOf(server)
  t.equal(before.rangeReads, 3, 'counted as range reads')
  t.equal(before.contentTransfers, 0, 'not as transfers of the file')

  for (const bad of ['bytes=5-', 'bytes=9-3', `bytes=0-${2 * MiB}`, 'lines=1-2']) {
    const answer = await ranged(bad)
    t.equal(answer.status, 400, `${bad}: 400`)
  }
  await client.append('/big/r.bin', 'more')
  const moved = await ranged('bytes=0-9')
  t.equal(moved.status, 409, 'another version: 409')
  t.equal(JSON.parse(Buffer.from(moved.body as ArrayBuffer).toString()).error.code, 'CONFLICT')

  await t.rejects(client.readRange('/big/r.bin', meta, 0, 10), { code: 'CONFLICT' }, 'the client core refuses a version gone')
  const current = await client.stat('/big/r.bin')
  t.same(await client.readRange('/big/r.bin', current, 3 * MiB, 100), Buffer.from('more'), 'and the bytes of the current one')
})

t.test('a client that hangs up midway through a download is no fault of the server: nothing logged as an error, nothing for dfs status', async (t) => {
  const lines: string[] = []
  const cluster = await startTestCluster(t, [{ 'big/h.bin': '' }], { log: (line: string) => { lines.push(line) } })
  fs.writeFileSync(path.join(cluster.roots[0], 'big', 'h.bin'), crypto.randomBytes(32 * MiB))
  const url = new URL(FileRoutes.content + '?path=' + encodeURIComponent('/big/h.bin'), cluster.fileServers[0].url)
  const headers = { Authorization: `Bearer ${cluster.credentials.read}`, [Headers.protocol]: String(PROTOCOL_VERSION) }
  const hungUp = await new Promise<number>((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      res.once('data', () => {
        req.destroy()
        resolve(res.statusCode ?? 0)
      })
    })
    req.on('error', (err) => { if (!req.destroyed) reject(err) })
  })
  t.equal(hungUp, 200, 'the download had started')
  // The server finds the connection gone at its next write.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(lines.filter((line) => /error/i.test(line)), [], 'no error logged')
  t.same(recentProblems().filter((problem) => /premature/i.test(problem.message)), [], 'and no problem noted for dfs status')
})

t.test('two opens of a large file not cached here fetch it once: the second reads the copy the first is fetching', async (t) => {
  const cluster = await startTestCluster(t, [{ 'big/shared.bin': '' }])
  const bytes = crypto.randomBytes(24 * MiB)
  fs.writeFileSync(path.join(cluster.roots[0], 'big', 'shared.bin'), bytes)
  const client = cluster.client()
  t.teardown(() => client.close())
  await client.stat('/big/shared.bin')
  const before = await statsOf(cluster.fileServers[0])
  const first = await client.openForReading('/big/shared.bin')
  const second = await client.openForReading('/big/shared.bin')
  t.ok(first.download !== null && second.download === first.download, 'the second open reads the first one\'s download')
  /** The whole copy through one open's reader, waiting for its bytes as the mount's reads do. */
  const readAll = async (opened: typeof first): Promise<Buffer> => {
    const out = Buffer.alloc(bytes.length)
    for (let at = 0; at < out.length; at += MiB) {
      await opened.download?.waitFor(at + MiB)
      const { bytesRead } = await opened.reader.read(out, at, Math.min(MiB, out.length - at), at)
      if (bytesRead === 0) throw new Error(`nothing at ${at}`)
    }
    await opened.reader.close()
    return out
  }
  const [a, b] = await Promise.all([readAll(first), readAll(second)])
  t.ok(a.equals(bytes) && b.equals(bytes), 'both read the whole file, intact')
  const after = await statsOf(cluster.fileServers[0])
  t.equal(after.contentTransfers - before.contentTransfers, 1, 'the file server sent it once')
  t.equal(after.notModified - before.notModified, 1, 'the second open was answered 304')
  const third = await client.openForReading('/big/shared.bin')
  t.equal(third.download, null, 'once in place, the copy is the cached one')
  await third.reader.close()
})
