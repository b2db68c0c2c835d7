import diagnostics from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { leaseCredentialOf } from '../src/shared/leaseCredential'
import { encodeRanges } from '../src/shared/rangeFrames'
import { FileRoutes, Headers, LockRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { fileApiOf, rawAs } from './helpers/wire'

/*
 * The lease of a range write (PATCH /content): checked once, inside the file's write lock,
 * for a small body; a writer without the live lease is refused whatever the body's size,
 * and the file is left as it was.
 */

const tree = { 'db/f': 'abcdefgh' }

/** GET /locks/check requests the lock server receives while `task` runs. */
async function lockChecksDuring (task: () => Promise<unknown>): Promise<number> {
  let checks = 0
  const onRequest = (message: unknown): void => {
    const { request } = message as { request: IncomingMessage }
    if (request.method === 'GET' && (request.url ?? '').split('?')[0] === LockRoutes.check) checks++
  }
  diagnostics.subscribe('http.server.request.start', onRequest)
  try {
    await task()
  } finally {
    diagnostics.unsubscribe('http.server.request.start', onRequest)
  }
  return checks
}

t.test('a small range write costs one lease check; without the live lease it is refused, small or large', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const server = cluster.fileServers[0]
  const api = fileApiOf(server)
  const client = cluster.client()
  const before = await client.statFresh('/db/f')
  const held = await client.lock('/db/f')
  const token = leaseCredentialOf(held.lease)
  const body = encodeRanges([{ offset: 0, data: Buffer.from('XY') }])
  let version = before.version
  const checks = await lockChecksDuring(async () => { version = (await api.writeRanges('/db/f', body, { size: 8, fromVersion: version, token })).version })
  t.equal(checks, 1, 'one question to the lock server')
  t.equal(version, before.version + 1)

  const { raw } = rawAs(cluster.credentials.write)
  const patch = async (data: Buffer, headers: Record<string, string>): Promise<{ status: number, body: any }> =>
    await raw(server.url, { method: 'PATCH', url: FileRoutes.content, params: { path: '/db/f', size: 8, fromVersion: version }, data, headers: { 'Content-Type': 'application/octet-stream', ...headers } })
  const large = encodeRanges([{ offset: 0, data: Buffer.alloc(2 * 1024 * 1024, 'z') }])
  for (const [what, data] of [['small', body], ['large', large]] as const) {
    const answer = await patch(data, {})
    t.equal(answer.status, 409, `${what}, no lease: refused`)
    t.equal(answer.body.error.code, 'LEASE_INVALID')
  }
  await held.release()
  // Another writer takes the key: the first one's lease is superseded.
  const other = await cluster.client().lock('/db/f')
  t.teardown(async () => await other.release().catch(() => {}))
  for (const [what, data] of [['small', body], ['large', large]] as const) {
    const answer = await patch(data, { [Headers.lockToken]: token })
    t.equal(answer.status, 409, `${what}, a released lease: refused`)
    t.equal(answer.body.error.code, 'LEASE_INVALID')
  }
  client.forget('/db/f')
  t.equal((await client.statFresh('/db/f')).version, before.version + 1, 'no version more')
  t.equal((await client.readFile('/db/f')).toString(), 'XYcdefgh', 'the bytes of the one write with its lease')
})
