import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { fileApiOf } from './helpers/wire'

/*
 * A file server refuses a file with two names unless it made the second name itself (a hard
 * link may lead outside its root), and remembers the files it gave one (FileStore's
 * ownLinks). It forgets each once the file has one name again: a long-running server that
 * makes millions of files must not remember one entry for each.
 */

t.test('creates, stores, renames and unlinks leave nothing vouched for once each is done', async (t) => {
  const cluster = await startTestCluster(t, [{ 'keep/.keep': '' }])
  const [server] = cluster.fileServers
  const api = fileApiOf(server)
  const client = cluster.client()
  t.teardown(() => client.close())
  for (let i = 0; i < 50; i++) await api.createWithContent(`/keep/new-${i}`, Buffer.from(`file ${i}\n`))
  t.equal(server.store.vouchedLinks, 0, 'a create links its upload into place, then removes the upload\'s name')
  for (let i = 0; i < 10; i++) await client.writeFile(`/keep/new-${i}`, `replaced ${i}\n`)
  t.equal(server.store.vouchedLinks, 0, 'a store renames its upload over the file')
  for (let i = 0; i < 20; i++) await client.rename(`/keep/new-${i}`, `/keep/moved-${i}`)
  t.equal(server.store.vouchedLinks, 0, 'a rename links the new name, then removes the old one')
  for (let i = 20; i < 30; i++) await client.unlink(`/keep/new-${i}`)
  t.equal(server.store.vouchedLinks, 0)

  // What the set is for still holds: a file renamed here is served under its new name, and
  // a hard link made behind the server's back is not.
  t.equal((await client.readFile('/keep/moved-3')).toString(), 'replaced 3\n')
  fs.linkSync(path.join(cluster.roots[0], 'keep/new-40'), path.join(cluster.roots[0], 'keep/linked-40'))
  const fresh = cluster.client()
  t.teardown(() => fresh.close())
  await t.rejects(fresh.readFile('/keep/new-40'), { name: 'NotFoundError', message: /hard links are not served/ }, 'a file with a name the server did not make is refused')
})
