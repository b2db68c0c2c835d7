import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { DirectoryApi, LockApi } from '../src/shared/api'
import { PayloadTooLargeError, ProtocolMismatchError } from '../src/shared/errors'
import { DirectoryRoutes, FileRoutes, Headers, LockRoutes, PROTOCOL_VERSION } from '../src/shared/protocol'
import { Transport } from '../src/shared/transport'
import { startTestCluster } from './helpers/cluster'
import { fileApiOf, rawAs } from './helpers/wire'

t.test('every server states its protocol version on /health and on every answer', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a' }])
  const { rawGet } = rawAs(cluster.credentials.server)
  for (const [url, route, service] of [
    [cluster.directory.url, DirectoryRoutes.health, 'directory'],
    [cluster.lock.url, LockRoutes.health, 'lock'],
    [cluster.fileServers[0].url, FileRoutes.health, 'file']
  ] as const) {
    const health = await rawGet(url, route)
    t.equal(health.status, 200)
    t.equal(health.body.service, service)
    t.equal(health.body.protocol, PROTOCOL_VERSION, `${service} /health names protocol ${PROTOCOL_VERSION}`)
    t.equal(health.headers[Headers.protocol], String(PROTOCOL_VERSION), `${service} answers carry ${Headers.protocol}`)
  }
  const missing = await rawGet(cluster.fileServers[0].url, FileRoutes.stat, { path: '/nope' })
  t.equal(missing.headers[Headers.protocol], String(PROTOCOL_VERSION), 'error answers carry it too')
})

t.test('a caller that speaks another protocol version is refused with a clear 400', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a' }])
  const { raw } = rawAs(cluster.credentials.server)
  const answer = await raw(cluster.fileServers[0].url, { method: 'GET', url: FileRoutes.stat, params: { path: '/a.txt' }, headers: { [Headers.protocol]: '99' } })
  t.equal(answer.status, 400)
  t.equal(answer.body.error.code, 'PROTOCOL_MISMATCH')
  t.match(answer.body.error.message, `protocol ${PROTOCOL_VERSION}, the caller 99`)
  const same = await raw(cluster.fileServers[0].url, { method: 'GET', url: FileRoutes.stat, params: { path: '/a.txt' }, headers: { [Headers.protocol]: String(PROTOCOL_VERSION) } })
  t.equal(same.status, 200, 'the same version is served')
})

t.test('a client that meets a server of another protocol version refuses it by name', async (t) => {
  // A stand-in for a dfs server of a later release: it answers everything with version 99.
  const future = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', [Headers.protocol]: '99' })
    res.end(JSON.stringify({ service: 'directory', protocol: 99 }))
  })
  await new Promise<void>((resolve) => future.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { future.close() })
  const url = `http://127.0.0.1:${(future.address() as AddressInfo).port}`
  const directory = new DirectoryApi(new Transport('directory server', url, 2000))
  const err = await directory.health().then(() => null, (e: unknown) => e)
  t.type(err, ProtocolMismatchError)
  t.match((err as Error).message, new RegExp(`directory server at 127\\.0\\.0\\.1:\\d+ speaks dfs protocol 99, this program speaks ${PROTOCOL_VERSION}`))
})

t.test('bad input is a 4xx that names the field, never a 500', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a' }])
  const { raw, rawPost } = rawAs(cluster.credentials.server)
  const lock = cluster.lock.url
  const cases: Array<[string, Promise<{ status: number, body: any }>, number, RegExp]> = [
    ['acquire without owner', rawPost(lock, LockRoutes.acquire, { path: '/a.txt' }), 400, /owner is missing/],
    ['acquire with a text ttl', rawPost(lock, LockRoutes.acquire, { path: '/a.txt', owner: 'me', ttlMs: 'long' }), 400, /ttlMs must be a whole number/],
    ['acquire with a list as body', rawPost(lock, LockRoutes.acquire, [1, 2]), 400, /must be a JSON object/],
    ['keys without a list', rawPost(lock, LockRoutes.keys, { paths: '/a.txt' }), 400, /paths must be a list/],
    ['renew with a number for a credential', rawPost(lock, LockRoutes.renew, { path: '/a.txt', credential: 1.5 }), 400, /credential must be a string/],
    ['rename switch without from', rawPost(cluster.directory.url, DirectoryRoutes.rename, { kind: 'file', to: '/b' }), 400, /from is missing/],
    ['register with no URL', rawPost(cluster.directory.url, DirectoryRoutes.register, { url: 42 }), 400, /url must be a string/],
    ['report for a machine id that is not a number', raw(cluster.directory.url, { method: 'PUT', url: DirectoryRoutes.reportFiles('x'), data: { files: [] } }), 400, /not a machine id/],
    ['chmod with a file type bit', rawPost(cluster.fileServers[0].url, FileRoutes.chmod, {}, { params: { path: '/a.txt', mode: 0o100644 } }), 400, /mode must be a whole number from 0 to 4095/],
    ['create of an unknown kind', rawPost(cluster.fileServers[0].url, FileRoutes.create, {}, { params: { path: '/b', kind: 'pipe' } }), 400, /kind must be 'file' or 'dir'/]
  ]
  for (const [what, answer, status, message] of cases) {
    const { status: got, body } = await answer
    t.equal(got, status, `${what}: ${status}`)
    t.match(JSON.stringify(body?.error ?? {}), message, `${what}: the message says why`)
  }
})

t.test('a JSON body over the limit is a 413 with a clear error, and the server goes on', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a' }])
  const { raw } = rawAs(cluster.credentials.server)
  const huge = JSON.stringify({ paths: ['/' + 'x'.repeat(17 * 1024 * 1024)] })
  const answer = await raw(cluster.lock.url, { method: 'POST', url: LockRoutes.keys, data: huge, headers: { 'Content-Type': 'application/json' }, maxBodyLength: Infinity, token: cluster.credentials.server })
  t.equal(answer.status, 413)
  t.equal(answer.body.error.code, 'TOO_LARGE')
  const lockApi = new LockApi(new Transport('lock server', cluster.lock.url, 5000, { credential: () => cluster.credentials.server }))
  const err = await lockApi.createKeys(['/' + 'y'.repeat(17 * 1024 * 1024)]).then(() => null, (e: unknown) => e)
  t.type(err, PayloadTooLargeError, 'the typed client rebuilds the typed error')
  t.equal((await lockApi.health()).service, 'lock', 'the server still answers')
  t.equal((await fileApiOf(cluster.fileServers[0]).stat('/a.txt')).size, 1)
})
