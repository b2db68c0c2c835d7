import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { FileStore } from '../servers/file/fileStore'
import { CHANGES_KEPT_PER_CLIENT, CLIENTS_KEPT_PER_FILE, RecentChanges } from '../servers/file/recentChanges'

/* Change ids on record per file and client (servers/file/recentChanges.ts). */

const line = (text: string): Readable => Readable.from([Buffer.from(text + '\n')])

t.test('a retry that waited out a restart while another client appended 100 times is not applied again', async (t) => {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-recent-'))
  t.teardown(async () => await fsp.rm(root, { recursive: true, force: true }))
  let store = await FileStore.open(root)
  await fsp.writeFile(path.join(root, 'log'), '')
  // Client A's append lands, and its answer is lost (the server restarts).
  await store.append('/log', line('A-1'), undefined, 'clientA-1')
  await store.close()
  store = await FileStore.open(root)
  // Client B appends on while A waits to try again.
  for (let i = 1; i <= 100; i++) await store.append('/log', line(`B-${i}`), undefined, `clientB-${i.toString(36)}`)
  // A's retry: the same change, the same id.
  await store.append('/log', line('A-1'), undefined, 'clientA-1')
  // And once more after another restart (the ids as the log's compaction wrote them).
  await store.close()
  store = await FileStore.open(root)
  t.teardown(async () => await store.close())
  await store.append('/log', line('A-1'), undefined, 'clientA-1')
  const lines = (await fsp.readFile(path.join(root, 'log'), 'utf8')).split('\n').filter((l) => l !== '')
  t.equal(lines.filter((l) => l === 'A-1').length, 1, 'A\'s line once')
  t.equal(lines.length, 101, 'and B\'s hundred')
})

t.test('each client keeps its last ids, and the clients that changed the file last are kept', async (t) => {
  const changes = new RecentChanges()
  for (let i = 1; i <= CHANGES_KEPT_PER_CLIENT + 1; i++) changes.remember('/f', `a-${i}`)
  t.notOk(changes.applied('/f', 'a-1'), 'a client\'s oldest id goes once it made more changes than kept')
  t.ok(changes.applied('/f', 'a-2'))
  t.ok(changes.applied('/f', `a-${CHANGES_KEPT_PER_CLIENT + 1}`))
  t.notOk(changes.applied('/g', 'a-2'), 'ids are per file')
  // As many other clients as are kept: a, which changed the file longest ago, is forgotten; b, which changed it again, is not.
  changes.remember('/f', 'b-1')
  for (let c = 0; c < CLIENTS_KEPT_PER_FILE - 2; c++) changes.remember('/f', `c${c}-1`)
  changes.remember('/f', 'b-2')
  t.ok(changes.applied('/f', 'a-2'), `${CLIENTS_KEPT_PER_FILE} clients kept`)
  changes.remember('/f', 'one-more-1')
  t.notOk(changes.applied('/f', 'a-2'), 'one more: the least recent client goes')
  t.ok(changes.applied('/f', 'b-1'), 'a client that changed the file since stays')
  // What compaction writes rebuilds the same record.
  const rebuilt = new RecentChanges()
  for (const id of changes.idsOf('/f') ?? []) rebuilt.remember('/f', id)
  t.same(rebuilt.idsOf('/f'), changes.idsOf('/f'))
  changes.forget('/f', 'b-2')
  t.notOk(changes.applied('/f', 'b-2'), 'forget takes one id back')
  t.ok(changes.applied('/f', 'b-1'))
  changes.drop('/f')
  t.equal(changes.idsOf('/f'), undefined, 'drop forgets the file')
  changes.remember('/f', 'plain')
  t.ok(changes.applied('/f', 'plain'), 'an id without a dash is a client of its own')
})
