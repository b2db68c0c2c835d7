import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { BusyError, NotEmptyError } from '../src/shared/errors'
import { outcome, sh } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'

/*
 * A folder whose files writers hold locks on is not renamed: their stores at close name
 * the files by path and would find them gone. BUSY (EBUSY) instead; once they are done the
 * rename works. rmdir needs an empty folder, and only files have lock keys.
 */

t.test('a folder rename is refused with BUSY while a file inside is locked, and works once it is released', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'docs/deep/a.txt': 'a\n', 'docs/b.txt': 'b\n' }] })
  const writer = c.client()
  const other = c.client()
  const held = await writer.lock('/docs/deep/a.txt')
  const refused = await other.rename('/docs', '/papers').then(() => null, (err: unknown) => err)
  t.type(refused, BusyError, 'BUSY')
  t.match((refused as BusyError).message, /\/docs\/deep\/a\.txt/, 'naming the locked file')
  t.same((await other.list('/docs')).map((e) => e.name), ['b.txt', 'deep'], 'nothing moved')
  await held.release()
  await other.rename('/docs', '/papers')
  t.equal((await other.readFile('/papers/deep/a.txt')).toString(), 'a\n', 'renamed once the lock is released')
  await t.rejects(other.rmdir('/papers'), NotEmptyError, 'rmdir of a folder with files is NOT_EMPTY, locked or not')
})

t.test('through a mount: mv of a folder while a program writes a file in it fails with EBUSY; the write lands', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'docs/a.txt': 'a\n' }] })
  const mount = await c.mount()
  // A write that is not an append makes a working copy, open until the close: the mount
  // refuses to rename it (or a folder above it) meanwhile. (Its lock may go back before the
  // close, once the change is stored: it is not what refuses the mv.)
  const writing = sh(`exec 3<>'${mount.at('/docs/a.txt')}' && printf 'A' >&3 && touch '${c.workDir}/written' && while [ ! -e '${c.workDir}/go' ]; do sleep 0.02; done; exec 3>&-; echo closed`, { timeoutMs: 30_000 })
  const client = c.client()
  await waitFor('the writer to write', async () => fs.existsSync(path.join(c.workDir, 'written')), 15_000, 50)
  const mv = await sh(`mv '${mount.at('/docs')}' '${mount.at('/papers')}'`, { timeoutMs: 30_000 })
  t.not(mv.code, 0, 'mv fails')
  t.match(mv.stderr, /Device or resource busy/, outcome(mv))
  await sh(`touch '${c.workDir}/go'`)
  const done = await writing
  t.equal(done.stdout, 'closed\n', outcome(done))
  t.equal((await client.readFile('/docs/a.txt')).toString(), 'A\n', 'the write landed at its path')
})
