import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { statsOf } from './helpers/wire'

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
