import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { startProcessCluster } from './helpers/processCluster'
import type { ProcessCluster } from './helpers/processCluster'
import { outcome, run } from './helpers/mount'
import { quoted, succeeded } from './helpers/mountOps'
import { waitFor } from './helpers/waitFor'

/*
 * A mount reads its token file again when the file is replaced: a renewed or rotated
 * token takes effect without a remount. Here a read-only token is swapped for a read-write
 * one under a running mount, and writes start to go through: for a --token-file, and for
 * the default ~/.config/dfs/token (with a HOME of the test's own, never the developer's).
 */

/** Mounts with a read-only token in `tokenFile`, replaces it with a write token, and waits for a write to go through. */
async function swapUnderMount (t: Test, cluster: ProcessCluster, tokenFile: string, mountOpts: Parameters<ProcessCluster['mount']>[1] = {}): Promise<void> {
  fs.mkdirSync(path.dirname(tokenFile), { recursive: true })
  fs.writeFileSync(tokenFile, cluster.credentials.read + '\n', { mode: 0o600 })
  const mount = await cluster.mount([], mountOpts)
  t.equal(await fsp.readFile(mount.at('/notes/a.txt'), 'utf8'), 'a\n', 'the read-only token reads')
  await t.rejects(fsp.appendFile(mount.at('/notes/a.txt'), 'refused\n'), { code: 'EACCES' }, 'and may not write')
  // Refused at open, where a shell sees it: a refusal at close, which shells ignore, would
  // let `echo >>` exit 0 with its line lost.
  const shell = await run('bash', ['-c', `echo refused >> ${quoted(mount.at('/notes/a.txt'))}`])
  t.not(shell.code, 0, 'echo >> fails')
  t.match(shell.stderr, /Permission denied/, `and says why: ${outcome(shell)}`)

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
}

t.test('a replaced --token-file takes effect on a running mount', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'a\n' }] })
  await swapUnderMount(t, cluster, path.join(cluster.workDir, 'secrets', 'token'))
})

t.test('so does a replaced token in the default place, ~/.config/dfs/token', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'a\n' }] })
  const home = path.join(cluster.workDir, 'home')
  // No --token-file and no XDG_CONFIG_HOME: the mount looks in $HOME/.config/dfs/token.
  const env = { HOME: home, XDG_CONFIG_HOME: undefined }
  await swapUnderMount(t, cluster, path.join(home, '.config', 'dfs', 'token'), { env, tokenFile: false })
})

t.test('an expired token: an open for writing fails (EACCES) where the shell sees it, until the token file is replaced', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'a\n' }] })
  // The file the cluster's mounts read their token from.
  const tokenFile = path.join(cluster.workDir, 'secrets', 'token')
  // Expires 2 s from now: long enough to mount with it.
  const short = cluster.credentials.key.clientToken('short', { ttlMs: 2000 })
  fs.writeFileSync(tokenFile, short.token + '\n', { mode: 0o600 })
  const mount = await cluster.mount()
  const file = mount.at('/notes/a.txt')
  const stored = path.join(cluster.files[0].root ?? '', 'notes/a.txt')
  // Read while the token is good: the mount then holds the file's callback, and opens it
  // later with no request that the expired token would have failed.
  succeeded(t, await run('cat', [file]), 'a read before the expiry')
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, short.claims.exp * 1000 - Date.now()) + 200))
  const shell = await run('bash', ['-c', `echo late >> ${quoted(file)}`])
  t.not(shell.code, 0, 'echo >> fails once the token has expired')
  t.match(shell.stderr, /Permission denied/, `and says why: ${outcome(shell)}`)
  t.equal(fs.readFileSync(stored, 'utf8'), 'a\n', 'nothing was stored, and nothing half')
  // A new file asks nothing of a server before its close: the open must refuse it itself.
  const create = await run('bash', ['-c', `echo new > ${quoted(mount.at('/notes/new.txt'))}`])
  t.not(create.code, 0, 'echo > of a new file fails too')
  t.match(create.stderr, /Permission denied/, `and says why: ${outcome(create)}`)

  fs.writeFileSync(tokenFile + '.new', cluster.credentials.write + '\n', { mode: 0o600 })
  fs.renameSync(tokenFile + '.new', tokenFile)
  await waitFor('a write under the new token', async () => (await run('bash', ['-c', `echo renewed >> ${quoted(file)}`])).code === 0, 10_000, 250)
  t.equal(fs.readFileSync(stored, 'utf8'), 'a\nrenewed\n', 'a renewed token writes, with no remount')
  await mount.unmount()
})
