import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { LockedError, NotFoundError } from '../src/shared/errors'
import { leaseCredentialOf } from '../src/shared/leaseCredential'
import { startTestCluster } from './helpers/cluster'
import { ServerRequests } from './helpers/serverRequests'
import { fileApiOf } from './helpers/wire'

/*
 * An unlink sent with no lease (an rm of a file nobody here writes) asks the lock server to
 * remove the file's key if it is free beside the removal itself, not before it. A key that
 * another writer holds refuses the unlink, and then the file, its bytes and its name in the
 * directory are all as they were.
 */

const tree = { 'logs/app.log': 'start\n', 'logs/old.log': 'old\n' }

t.test('an unlink with no lease of a file another writer holds is refused, and undone everywhere', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const [server] = cluster.fileServers
  const writer = cluster.client()
  t.teardown(() => writer.close())
  const held = await writer.lock('/logs/app.log')
  await t.rejects(fileApiOf(server).unlink('/logs/app.log', undefined), LockedError, 'refused: a writer holds the key')

  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'logs/app.log'), 'utf8'), 'start\n', 'the file is back at its name on the disk')
  t.same(fs.readdirSync(path.join(cluster.roots[0], 'logs')).sort(), ['app.log', 'old.log'], 'and nothing else was left in its folder')
  const fresh = cluster.client()
  t.teardown(() => fresh.close())
  t.equal((await fresh.stat('/logs/app.log')).size, 6, 'the directory still maps its name')
  t.equal((await fresh.readFile('/logs/app.log')).toString(), 'start\n')
  await fileApiOf(server).append('/logs/app.log', Buffer.from('still mine\n'), { token: leaseCredentialOf(held.lease) })
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'logs/app.log'), 'utf8'), 'start\nstill mine\n', 'the writer\'s lease still holds')

  // Once the writer lets go, the same unlink goes through.
  await held.release()
  await fileApiOf(server).unlink('/logs/app.log', undefined)
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'logs/app.log')), 'gone from the disk')
  const later = cluster.client()
  t.teardown(() => later.close())
  await t.rejects(later.stat('/logs/app.log'), NotFoundError, 'and from the directory')
})

t.test('an unlink with no lease of a free file removes its key, its name and the file, one request to each server', async (t) => {
  const cluster = await startTestCluster(t, [tree])
  const [server] = cluster.fileServers
  // The key exists: someone wrote the file under a lease, then let go.
  const writer = cluster.client()
  t.teardown(() => writer.close())
  await (await writer.lock('/logs/old.log')).release({ keep: false })
  const lockRequests = new ServerRequests(cluster.lock.url)
  const directoryRequests = new ServerRequests(cluster.directory.url)
  t.teardown(() => { lockRequests.stop(); directoryRequests.stop() })
  const answer = await fileApiOf(server).unlink('/logs/old.log', undefined)
  t.match(answer, { removed: true, keyRemoved: true })
  t.equal(lockRequests.since(0)['DELETE /keys'], 1, 'the lock server was asked once')
  t.equal(directoryRequests.since(0)[`DELETE /servers/${server.machineId}/entries`], 1, 'the directory once')
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'logs/old.log')), 'gone from the disk')
  const later = cluster.client()
  t.teardown(() => later.close())
  await t.rejects(later.stat('/logs/old.log'), NotFoundError, 'and from the directory')
})
