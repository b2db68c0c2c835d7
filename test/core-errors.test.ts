import fs from 'node:fs'
import net from 'node:net'
import { once } from 'node:events'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { BadPathError, BadRequestError, NameTooLongError, NotFoundError, ServerUnavailableError } from '../src/shared/errors'
import { DirectoryRoutes, FileRoutes, Headers, LockRoutes, PROTOCOL_VERSION } from '../src/shared/protocol'
import { startFileServer } from '../servers/file/server'
import { startTestCluster } from './helpers/cluster'
import type { RawAnswer } from './helpers/wire'
import { rawAs } from './helpers/wire'
import { waitFor } from './helpers/waitFor'
import { LockApi } from '../src/shared/api'
import { Transport } from '../src/shared/transport'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

/** An error answer as docs/protocol.md promises it: JSON, a code, a message, no stack trace. */
function checkErrorAnswer (t: Test, answer: RawAnswer, status: number, codes: string[], what: string): void {
  t.equal(answer.status, status, `${what}: HTTP ${status}`)
  t.match(String(answer.headers['content-type']), /^application\/json/, `${what}: a JSON body`)
  t.ok(codes.includes(answer.body?.error?.code), `${what}: code ${String(answer.body?.error?.code)} is one of ${codes.join(', ')}`)
  t.type(answer.body?.error?.message, 'string', `${what}: a message`)
  t.notMatch(JSON.stringify(answer.body), /\n\s+at |\.js:\d+/, `${what}: no stack trace`)
}

t.test('an unknown path is NotFoundError for the client and a JSON 404 from the servers', async (t) => {
  const cluster = await startTestCluster(t, [{ 'here.txt': 'x\n' }])
  const { rawGet } = rawAs(cluster.credentials.server)
  const client = cluster.client()
  await t.rejects(client.readFile('/nope.txt'), NotFoundError)
  await t.rejects(client.stat('/nope.txt'), NotFoundError)
  await t.rejects(client.list('/nope'), NotFoundError)
  await t.rejects(client.append('/nope.txt', 'x'), NotFoundError)

  const lookup = await rawGet(cluster.directory.url, DirectoryRoutes.lookup, { path: '/nope.txt' })
  checkErrorAnswer(t, lookup, 404, ['NOT_FOUND'], 'directory /lookup')
  t.match(lookup.body.error.message, '/nope.txt', 'the message names the path')
  checkErrorAnswer(t, await rawGet(cluster.fileServers[0].url, FileRoutes.stat, { path: '/nope.txt' }), 404, ['NOT_FOUND'], 'file /stat')
  checkErrorAnswer(t, await rawGet(cluster.fileServers[0].url, FileRoutes.content, { path: '/nope.txt' }), 404, ['NOT_FOUND'], 'file /content')
  checkErrorAnswer(t, await rawGet(cluster.directory.url, '/no/such/route'), 404, ['NOT_FOUND'], 'an unknown route')
})

const badPaths: Array<[string, string, string[]]> = [
  ['..', '/notes/../../etc/passwd', ['BAD_PATH']],
  ['a NUL byte', '/notes/a.txt\0.jpg', ['BAD_PATH']],
  ['a name over 255 bytes', '/notes/' + 'é'.repeat(128), ['NAME_TOO_LONG']],
  ['no path at all', '', ['BAD_PATH']]
]

t.test('bad paths are a JSON 400 from every server and never reach the disk', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/a.txt': 'a\n' }])
  const { raw, rawGet, rawPost } = rawAs(cluster.credentials.server)
  const { directory, lock } = cluster
  const file = cluster.fileServers[0]
  for (const [why, bad, codes] of badPaths) {
    t.test(why, async (t) => {
      checkErrorAnswer(t, await rawGet(directory.url, DirectoryRoutes.lookup, { path: bad }), 400, codes, 'directory /lookup')
      checkErrorAnswer(t, await rawGet(directory.url, DirectoryRoutes.list, { path: bad }), 400, codes, 'directory /list')
      checkErrorAnswer(t, await rawGet(file.url, FileRoutes.stat, { path: bad }), 400, codes, 'file /stat')
      checkErrorAnswer(t, await rawGet(file.url, FileRoutes.content, { path: bad }), 400, codes, 'file /content')
      checkErrorAnswer(t, await rawGet(file.url, FileRoutes.list, { path: bad }), 400, codes, 'file /list')
      checkErrorAnswer(t, await raw(file.url, { method: 'POST', url: FileRoutes.append, params: { path: bad }, data: Buffer.from('x'), headers: { 'Content-Type': 'application/octet-stream' } }), 400, codes, 'file /append')
      checkErrorAnswer(t, await rawPost(lock.url, LockRoutes.acquire, { path: bad, owner: 'me' }), 400, codes, 'lock /locks/acquire')
      checkErrorAnswer(t, await rawPost(lock.url, LockRoutes.keys, { paths: [bad] }), 400, codes, 'lock /keys')
    })
  }
  const client = cluster.client()
  await t.rejects(client.readFile('/notes/../../etc/passwd'), BadPathError, 'the client refuses .. itself')
  await t.rejects(client.readFile('/notes/a\0b'), BadPathError, 'and NUL')
  await t.rejects(client.readFile('/' + 'x'.repeat(256)), NameTooLongError, 'and over-long names')
  t.equal((await client.readFile('/notes/./a.txt')).toString(), 'a\n', 'a harmless . is fine')
})

t.test('other malformed requests are a JSON 400 too', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }])
  const { raw, rawGet, rawPost } = rawAs(cluster.credentials.server)
  checkErrorAnswer(t, await raw(cluster.lock.url, { method: 'POST', url: LockRoutes.acquire, data: '{"path": ', headers: { 'Content-Type': 'application/json' } }), 400, ['BAD_REQUEST'], 'broken JSON')
  checkErrorAnswer(t, await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/a.txt' }), 400, ['BAD_REQUEST'], 'no owner')
  checkErrorAnswer(t, await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/a.txt', owner: 'me', ttlMs: -5 }), 400, ['BAD_REQUEST'], 'a negative lease')
  checkErrorAnswer(t, await rawPost(cluster.directory.url, DirectoryRoutes.register, { url: 'ftp://example' }), 400, ['BAD_REQUEST'], 'a file server URL that is not http')
  checkErrorAnswer(t, await rawGet(cluster.fileServers[0].url, FileRoutes.content, { path: '/.dfs/versions.log' }), 400, ['BAD_PATH'], 'the server\'s own state folder')
})

t.test('a symlink inside a root that points outside it is served as a link, never followed', async (t) => {
  const cluster = await startTestCluster(t, [{ 'inside.txt': 'fine\n', 'sub/kept.txt': 'kept\n' }])
  const { rawGet } = rawAs(cluster.credentials.server)
  const outside = path.join(cluster.workDir, 'outside')
  fs.mkdirSync(outside)
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'TOP SECRET\n')
  const root = cluster.roots[0]
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'link.txt'))
  fs.symlinkSync(outside, path.join(root, 'sub', 'escape'))
  fs.symlinkSync(path.join(root, 'inside.txt'), path.join(root, 'alias.txt')) // inside, but still a symlink
  const file = cluster.fileServers[0]

  // Nothing below a link is reachable, and a link's content is never what it points to.
  for (const route of [FileRoutes.content, FileRoutes.stat, FileRoutes.list]) {
    const answer = await rawGet(file.url, route, { path: '/sub/escape/secret.txt' })
    checkErrorAnswer(t, answer, 404, ['NOT_FOUND'], `${route} below a link`)
    t.notMatch(JSON.stringify(answer.body), 'TOP SECRET')
  }
  for (const target of ['/link.txt', '/sub/escape', '/alias.txt']) {
    const content = await rawGet(file.url, FileRoutes.content, { path: target })
    checkErrorAnswer(t, content, 400, ['BAD_REQUEST'], `content of ${target} is refused: it is a link`)
    t.notMatch(JSON.stringify(content.body), 'TOP SECRET')
    const stat = await rawGet(file.url, FileRoutes.stat, { path: target })
    t.equal(stat.body.kind, 'symlink', `${target} is described as a link`)
    t.notMatch(JSON.stringify(stat.body), 'TOP SECRET')
  }
  checkErrorAnswer(t, await rawGet(file.url, FileRoutes.list, { path: '/sub/escape' }), 409, ['NOT_DIRECTORY'], 'a link to a folder is not listed as one')
  const listing = await rawGet(file.url, FileRoutes.list, { path: '/sub' })
  t.same(listing.body.entries.map((e: { name: string }) => e.name).sort(), ['escape', 'kept.txt'], 'links are listed as links')

  // A file server started on a root holding such links does not report them.
  const other = path.join(cluster.workDir, 'root-with-links')
  fs.mkdirSync(other)
  fs.writeFileSync(path.join(other, 'real.txt'), 'real\n')
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(other, 'smuggled.txt'))
  const joined = await startFileServer({ root: other, port: 0, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key } })
  t.teardown(joined.close)
  t.equal((await rawGet(cluster.directory.url, DirectoryRoutes.lookup, { path: '/real.txt' })).status, 200)
  t.equal((await rawGet(cluster.directory.url, DirectoryRoutes.lookup, { path: '/smuggled.txt' })).body.kind, 'file', 'a link is reported, mapped as a file (one holder)')
  checkErrorAnswer(t, await rawGet(joined.url, FileRoutes.content, { path: '/smuggled.txt' }), 400, ['BAD_REQUEST'], 'and its content is never served')
  await t.rejects(cluster.client().readFile('/smuggled.txt'), BadRequestError, 'the client cannot read through it either')
  t.equal(await cluster.client().readlink('/smuggled.txt'), path.join(outside, 'secret.txt'), 'readlink gives the target as it is')
})

t.test('a file server that is down is named in the error, and the rest keeps working', async (t) => {
  const cluster = await startTestCluster(t, [{ 'one/a.txt': 'a\n' }, { 'two/b.txt': 'b\n' }])
  const client = cluster.client()
  t.equal((await client.readFile('/two/b.txt')).toString(), 'b\n')
  const down = cluster.fileServers[1]
  await down.close()

  const err = await client.readFile('/two/b.txt').then(() => null, (e: unknown) => e)
  t.type(err, ServerUnavailableError, 'even a cached file needs its server to vouch for it')
  t.match((err as Error).message, `file server ${down.machineId} at 127.0.0.1:${down.port} is not answering`)
  t.equal((err as ServerUnavailableError).errno, 'EIO')
  await t.rejects(cluster.client().readFile('/two/b.txt'), { name: 'ServerUnavailableError', message: new RegExp(`file server ${down.machineId} at 127\\.0\\.0\\.1:${down.port} is not answering`) })
  await t.rejects(client.append('/two/b.txt', 'x\n'), ServerUnavailableError)

  t.equal((await client.readFile('/one/a.txt')).toString(), 'a\n', 'files on the other server still read')
  t.same((await client.list('/')).map((e) => e.name), ['one', 'two'], 'a folder on the down server still lists')
})

t.test('a large upload the server refuses before reading it is read on and dropped: the client, still sending, reads the answer (409), and the connection serves the next request', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/f.bin': 'x' }])
  const server = cluster.fileServers[0]
  const lockApi = new LockApi(new Transport('lock server', cluster.lock.url, 2000, cluster.credentials.caller))
  // A lease given back: the server refuses the store before it reads the body.
  const token = leaseCredentialOf(await lockApi.acquire({ path: '/data/f.bin', owner: 'test' }))
  await lockApi.release('/data/f.bin', token)
  const size = 12 * 1024 * 1024
  const socket = net.connect(server.port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  let received = ''
  socket.on('data', (data: Buffer) => { received += data.toString('latin1') })
  const failures: Error[] = []
  socket.on('error', (err) => failures.push(err))
  const head = (lines: string[]): string => lines.join('\r\n') + '\r\n\r\n'
  socket.write(head([
    `PUT ${FileRoutes.content}?path=${encodeURIComponent('/data/f.bin')} HTTP/1.1`, 'Host: dfs', `Authorization: Bearer ${cluster.credentials.write}`,
    `${Headers.protocol}: ${PROTOCOL_VERSION}`, `${Headers.lockToken}: ${token}`, 'Content-Type: application/octet-stream', `Content-Length: ${size}`
  ]))
  await waitFor('the refusal', async () => /LEASE_INVALID/.test(received), 5000, 10)
  t.match(received, /^HTTP\/1\.1 409 /, 'answered 409 before the body was sent')
  // The whole body, sent after the answer, 1 MiB at a time: the server reads it on.
  const chunk = Buffer.alloc(1024 * 1024, 7)
  for (let sent = 0; sent < size && !socket.destroyed; sent += chunk.length) {
    if (!socket.write(chunk)) await Promise.race([once(socket, 'drain'), once(socket, 'close')])
  }
  received = ''
  socket.write(head(['GET /health HTTP/1.1', 'Host: dfs']))
  await waitFor('the next answer on the same connection', async () => /"service":"file"/.test(received) || failures.length > 0 || socket.destroyed, 5000, 10)
  t.same(failures.map((err) => err.message), [], 'no write failed: the connection was not cut')
  t.notOk(socket.destroyed, 'nor closed')
  t.match(received, /^HTTP\/1\.1 200 /, 'and it serves the next request')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'data/f.bin'), 'utf8'), 'x', 'the file is as it was')
})
