import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { startProcessCluster } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'

/*
 * A mount reads its --token-file again when the file is replaced: a renewed or rotated
 * token takes effect without a remount. Here a read-only token is swapped for a read-write
 * one under a running mount, and writes start to go through.
 */

t.test('a replaced token file takes effect on a running mount', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'a\n' }] })
  const tokenFile = path.join(cluster.workDir, 'secrets', 'token')
  fs.writeFileSync(tokenFile, cluster.credentials.read + '\n', { mode: 0o600 })
  const mount = await cluster.mount()
  t.equal(await fsp.readFile(mount.at('/notes/a.txt'), 'utf8'), 'a\n', 'the read-only token reads')
  await t.rejects(fsp.appendFile(mount.at('/notes/a.txt'), 'refused\n'), { code: 'EACCES' }, 'and may not write')

  // Replaced the way an operator would: a new file renamed over the old one.
  fs.writeFileSync(tokenFile + '.new', cluster.credentials.write + '\n', { mode: 0o600 })
  fs.renameSync(tokenFile + '.new', tokenFile)
  await waitFor('a write under the new token', async () => {
    try {
      await fsp.appendFile(mount.at('/notes/a.txt'), 'written\n')
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err
      return false
    }
  }, 10_000, 200)
  t.equal(await fsp.readFile(mount.at('/notes/a.txt'), 'utf8'), 'a\nwritten\n', 'the new token writes, with no remount')
  await mount.unmount()
})
