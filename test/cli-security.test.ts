import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { ClusterKey, newClaims, signToken, verifyToken } from '../servers/common/tokens'
import { isMounted } from '../src/fuse/mount'
import { startTestCluster } from './helpers/cluster'
import { dfsMountBin, mountPlace, outcome, runCli } from './helpers/mount'
import { cleanEnv, runNode, startNode, stopNode } from './helpers/processes'
import { rawGet } from './helpers/wire'

/* dfs-serve's key handling, dfs-serve token, and what dfs says without a token. */

function tempDir (t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-cli-security-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('a server makes its cluster key (mode 0600) at the first start, refuses one others can read, and runs open only with --insecure', async (t) => {
  const dir = tempDir(t)
  const keyFile = path.join(dir, 'config', 'cluster.key')
  const lock = await startNode(['bin/dfs-serve', 'lock', '--port', '0', '--state-dir', path.join(dir, 'lock'), '--cluster-key', keyFile], /listening on (http:\S+)/)
  t.teardown(async () => { await stopNode(lock, 'SIGKILL') })
  t.equal(fs.statSync(keyFile).mode & 0o777, 0o600, 'the key file is for its user only')
  const url = (/listening on (http:\S+)/.exec(lock.line) as RegExpExecArray)[1]
  t.equal((await rawGet(url, '/locks', { path: '/a' })).status, 401, 'and the server checks credentials')

  fs.chmodSync(keyFile, 0o644)
  const refused = await runNode(['bin/dfs-serve', 'directory', '--port', '0', '--state-dir', path.join(dir, 'dir'), '--cluster-key', keyFile])
  t.not(refused.code, 0, 'a key others can read is refused')
  t.match(refused.stderr, /^dfs-serve: cluster key .* can be read by others \(mode 644\): chmod 600 .*\n$/)

  const open = await startNode(['bin/dfs-serve', 'directory', '--port', '0', '--state-dir', path.join(dir, 'open'), '--insecure'], /listening on (http:\S+)/, 15_000,
    { ...cleanEnv(), XDG_CONFIG_HOME: path.join(dir, 'nowhere') })
  t.teardown(async () => { await stopNode(open, 'SIGKILL') })
  const openUrl = (/listening on (http:\S+)/.exec(open.line) as RegExpExecArray)[1]
  t.equal((await rawGet(openUrl, '/servers')).status, 200, '--insecure serves anyone')
  t.notOk(fs.existsSync(path.join(dir, 'nowhere')), 'and makes no key')
})

t.test('dfs-serve token prints a token of the cluster key; the token is never taken from the command line', async (t) => {
  const dir = tempDir(t)
  const keyFile = path.join(dir, 'cluster.key')
  const missing = await runNode(['bin/dfs-serve', 'token', '--cluster-key', keyFile])
  t.not(missing.code, 0)
  t.match(missing.stderr, /^dfs-serve: no cluster key at .*: start a server first/, 'no key: one line, and no key made')
  t.notOk(fs.existsSync(keyFile))

  const { key } = ClusterKey.loadOrCreate(keyFile)
  const made = await runNode(['bin/dfs-serve', 'token', '--cluster-key', keyFile, '--name', 'backup', '--read-only', '--ttl', '12h'])
  t.equal(made.code, 0, made.stderr)
  const claims = verifyToken(key.clientKey, made.stdout.trim())
  t.match(claims, { sub: 'backup', role: 'read' }, 'a read-only token of that name')
  t.ok(claims.exp - claims.iat === 12 * 3600, 'valid for 12 hours')
  t.match(made.stderr, new RegExp(`token ${claims.jti} for backup \\(read-only\\)`), 'its id, to revoke it, on stderr')

  const badTtl = await runNode(['bin/dfs-serve', 'token', '--cluster-key', keyFile, '--ttl', 'forever'])
  t.match(badTtl.stderr, /^dfs-serve: --ttl must be a duration/)
  const asArgument = await runNode(['bin/dfs', 'ls', '/', '--token', 'x'])
  t.not(asArgument.code, 0, 'dfs takes no --token argument (ps would show it)')
})

t.test('dfs without a token, or with a bad one, says so in one line', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }])
  const args = ['bin/dfs', 'cat', '/a.txt', '--directory', cluster.directory.url, '--lock', cluster.lock.url, '--cache-dir', path.join(cluster.workDir, 'cli-cache')]
  const env = { ...cleanEnv(), XDG_CONFIG_HOME: path.join(cluster.workDir, 'no-config') }
  const none = await runNode(args, { env })
  t.not(none.code, 0)
  t.match(none.stderr, /^dfs: a credential is needed[^\n]*\n$/, `one line (${none.stderr})`)
  const foreign = await runNode(args, { env: { ...env, DFS_TOKEN: ClusterKey.generate().clientToken('x', { ttlMs: 60_000 }).token } })
  t.match(foreign.stderr, /^dfs: the credential is not signed by this cluster's key[^\n]*\n$/)
  const missingFile = await runNode([...args, '--token-file', path.join(cluster.workDir, 'nope')], { env })
  t.match(missingFile.stderr, /^dfs: cannot read the token file .*nope: ENOENT\n$/)
  const good = await runNode(args, { env: { ...env, DFS_TOKEN: cluster.credentials.read } })
  t.equal(good.stdout, 'a\n', 'a read-only token reads')
})

t.test('dfs-mount without a valid token refuses to mount, in one line', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }])
  const place = await mountPlace(t)
  const args = [place.mountpoint, '--directory', cluster.directory.url, '--lock', cluster.lock.url, '--cache-dir', place.cacheDir]
  const env = { ...place.env, XDG_CONFIG_HOME: path.join(place.base, 'no-config') }
  const none = await runCli(dfsMountBin, args, { env })
  t.not(none.code, 0, outcome(none))
  t.match(none.stderr, /^dfs-mount: a credential is needed[^\n]*\n$/, 'no token: one line')
  const expired = await runCli(dfsMountBin, [...args, '--foreground'], { env: { ...env, DFS_TOKEN: signToken(cluster.credentials.key.clientKey, 'client', newClaims('old', 'write', 1000, Date.now() - 60_000)) } })
  t.match(expired.stderr, /^dfs-mount: the credential of old expired at /, 'an expired token: one line, also in the foreground')
  t.notOk(await isMounted(place.mountpoint), 'nothing was mounted')
})
