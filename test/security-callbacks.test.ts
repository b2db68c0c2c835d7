import t from 'tap'
import type { DfsClient } from '../src/client/dfsClient'
import { FileRoutes, Headers } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { raw, rawGet, rawPost } from './helpers/wire'
import { waitFor } from './helpers/waitFor'

/*
 * A client's event channel and callbacks belong to the credential subject that made its
 * client id known: another subject who learns the id (GET /clients lists them) can neither
 * read its breaks, renew or acknowledge for it, nor spare it a break by naming it as the
 * writer of a change.
 */

const DAY_MS = 86_400_000

t.test('a client id is bound to its subject: another token cannot use, read or silence its callbacks', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/a.txt': 'one\n' }])
  const file = cluster.fileServers[0]
  const mallory = cluster.credentials.key.clientToken('mallory', { ttlMs: DAY_MS }).token
  const alice: DfsClient = cluster.client({ callbacks: true })
  t.teardown(() => alice.close())
  await waitFor('a callback promised to alice', async () => {
    await alice.readFile('/notes/a.txt')
    return alice.callbackCount > 0
  }, 5000, 20)
  const listed = await rawGet(file.url, '/clients', {}, { token: mallory })
  t.equal(listed.status, 200)
  const [clientId] = listed.body.clients as string[]
  t.type(clientId, 'string', 'any reader can learn the client id')

  const events = await raw(file.url, { method: 'GET', url: FileRoutes.events, params: { client: clientId }, token: mallory })
  t.equal(events.status, 403, 'another subject may not open its event channel')
  t.equal(events.body?.error?.code, 'FORBIDDEN')
  const renew = await rawPost(file.url, FileRoutes.renewCallbacks, { client: clientId }, { token: mallory })
  t.equal(renew.status, 403, 'nor renew its lease')
  const ack = await rawPost(file.url, FileRoutes.acknowledgeBreak, { client: clientId, seq: 1 }, { token: mallory })
  t.equal(ack.status, 403, 'nor acknowledge its breaks')
  const stat = await rawGet(file.url, FileRoutes.stat, { path: '/notes/a.txt' }, { token: mallory, headers: { [Headers.callback]: 'want', [Headers.clientId]: clientId } })
  t.equal(stat.status, 200, 'a stat under its id is answered')
  t.not(stat.headers[Headers.callback], 'granted', 'but promises no callback to the id')

  // A change sent under alice's client id must still break alice's callback before it is answered.
  const append = await raw(file.url, {
    method: 'POST', url: FileRoutes.append, params: { path: '/notes/a.txt' }, data: Buffer.from('mallory\n'),
    headers: { 'Content-Type': 'application/octet-stream', [Headers.clientId]: clientId }, token: mallory
  })
  t.equal(append.status, 200, 'mallory may write the file (a write token)')
  t.equal(alice.callbackCount, 0, 'alice\'s callback was broken all the same')
  t.equal((await alice.readFile('/notes/a.txt')).toString(), 'one\nmallory\n', 'and her next open sees the change')

  // Alice herself still renews and keeps her callbacks.
  await waitFor('a callback promised to alice again', async () => {
    await alice.readFile('/notes/a.txt')
    return alice.callbackCount > 0
  }, 5000, 20)
  const own = await rawPost(file.url, FileRoutes.renewCallbacks, { client: clientId }, { token: cluster.credentials.write })
  t.equal(own.status, 200, 'the subject that owns the id renews it')
  t.equal(own.body.known, true)
})
