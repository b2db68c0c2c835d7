import fsp from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import t from 'tap'
import { FileRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { rawAs } from './helpers/wire'

/**
 * An append's body arrives in pieces and is written as it comes. Until the append is done
 * (data and version on disk), a stat or a listing must show the file as it was: a size that
 * counts half an append, under the old version, is what a reader's kernel takes as the end
 * of the file, and it then reads a line cut in two (the fault suite saw that once).
 */
t.test('a stat or listing during an append shows the file as before it, then as after it', async (t) => {
  const cluster = await startTestCluster(t, [{ 'logs/log.txt': 'one\n' }])
  const file = cluster.fileServers[0]
  const { rawGet } = rawAs(cluster.credentials.write)
  const before = (await rawGet(file.url, FileRoutes.stat, { path: '/logs/log.txt' })).body

  const url = new URL(`${FileRoutes.append}?path=${encodeURIComponent('/logs/log.txt')}`, file.url)
  const request = http.request(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${cluster.credentials.write}`, 'Content-Type': 'application/octet-stream', 'Content-Length': String('two\nthree\n'.length) }
  })
  const answered = new Promise<{ status: number, body: string }>((resolve, reject) => {
    request.on('response', (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => { body += chunk.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    request.on('error', reject)
  })
  request.flushHeaders()
  request.write('two\nthr')
  // The first piece reaches the server's disk while the rest has not been sent.
  let onDisk = ''
  for (let i = 0; i < 100 && onDisk !== 'one\ntwo\nthr'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    onDisk = await fsp.readFile(path.join(cluster.roots[0], 'logs/log.txt'), 'utf8')
  }
  t.equal(onDisk, 'one\ntwo\nthr', 'the first piece of the append is on the disk')

  const during = (await rawGet(file.url, FileRoutes.stat, { path: '/logs/log.txt' })).body
  t.equal(during.size, before.size, 'a stat during the append shows the size before it')
  t.equal(during.version, before.version, '... and the version before it')
  const listed = (await rawGet(file.url, FileRoutes.list, { path: '/logs' })).body.entries
  t.same(listed.map((e: { name: string, size: number, version: number }) => [e.name, e.size, e.version]), [['log.txt', before.size, before.version]], 'a listing during the append too')

  request.end('ee\n')
  const answer = await answered
  t.equal(answer.status, 200, `the append is answered (${answer.body})`)
  const after = (await rawGet(file.url, FileRoutes.stat, { path: '/logs/log.txt' })).body
  t.equal(after.size, 'one\ntwo\nthree\n'.length, 'after it, the stat shows the whole append')
  t.equal(after.version, before.version + 1, '... under the next version')
})
