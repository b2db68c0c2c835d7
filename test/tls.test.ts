import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { trustCertificateAuthority } from '../src/shared/transport'
import { dfsBin, dfsMountBin, outcome, runCli } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import { makeTlsFiles } from './helpers/tlsFiles'

/*
 * A cluster whose servers speak https only, with certificates of a CA of its own: servers
 * call each other, and the CLI and a real mount work, given that CA with --ca; a client
 * without it is refused in one line.
 */

t.test('a TLS cluster: servers, dfs and a mount over https with --ca; without it, one line', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-tls-'))
  t.teardown(async () => await fsp.rm(dir, { recursive: true, force: true }))
  const tls = makeTlsFiles(dir)
  const cluster = await startProcessCluster(t, {
    trees: [{ 'notes/a.txt': 'alpha\n' }],
    serverArgs: ['--tls-cert', tls.cert, '--tls-key', tls.key, '--ca', tls.ca]
  })
  for (const server of [cluster.directory, cluster.lock, ...cluster.files]) t.match(server.url, /^https:\/\//, `${server.name} listens on https`)
  const tokenFile = path.join(cluster.workDir, 'secrets', 'token')
  const where = ['--directory', cluster.directory.url, '--lock', cluster.lock.url, '--token-file', tokenFile, '--cache-dir', path.join(dir, 'cli-cache')]

  const cat = await runCli(dfsBin, ['cat', '/notes/a.txt', '--ca', tls.ca, ...where])
  t.equal(cat.code, 0, `dfs cat over https: ${outcome(cat)}`)
  t.equal(cat.stdout, 'alpha\n')
  const append = await runCli(dfsBin, ['append', '/notes/a.txt', 'beta', ...where], { env: { ...process.env, DFS_CA: tls.ca } })
  t.equal(append.code, 0, `dfs append with DFS_CA: ${outcome(append)}`)

  for (const [what, extra] of [['no CA', []], ['another CA', ['--ca', tls.otherCa]]] as const) {
    const refused = await runCli(dfsBin, ['cat', '/notes/a.txt', ...extra, ...where])
    t.not(refused.code, 0, `with ${what}: refused (${outcome(refused)})`)
    t.equal(refused.stderr.trim().split('\n').length, 1, `with ${what}: one line`)
    t.match(refused.stderr, /certificate .*not trust/, `with ${what}: it says the certificate is not trusted`)
    t.notMatch(refused.stderr, /\n\s+at /, `with ${what}: no stack trace`)
    t.equal(refused.stdout, '', 'and prints no content')
  }
  const badCa = await runCli(dfsBin, ['cat', '/notes/a.txt', '--ca', path.join(dir, 'missing.pem'), ...where])
  t.not(badCa.code, 0)
  t.match(badCa.stderr.trim(), /^[^\n]*cannot read the CA certificate .*missing\.pem/, `a missing --ca file is one line: ${outcome(badCa)}`)

  await fsp.mkdir(path.join(dir, 'nowhere'))
  const unmounted = await runCli(dfsMountBin, [path.join(dir, 'nowhere'), '--foreground', ...where])
  t.not(unmounted.code, 0, `dfs-mount without the CA does not mount: ${outcome(unmounted)}`)
  t.match(unmounted.stderr, /not trust/, 'it says why')
  t.equal(unmounted.stderr.trim().split('\n').length, 1, 'in one line')
  t.notMatch(unmounted.stderr, /\n\s+at /, 'no stack trace')

  const mount = await cluster.mount(['--ca', tls.ca])
  t.equal(await fsp.readFile(mount.at('/notes/a.txt'), 'utf8'), 'alpha\nbeta\n', 'the mount reads over https')
  await fsp.appendFile(mount.at('/notes/a.txt'), 'gamma\n')
  await fsp.writeFile(mount.at('/notes/new.txt'), 'made on the mount\n')
  const seen = await runCli(dfsBin, ['cat', '/notes/new.txt', '--ca', tls.ca, ...where])
  t.equal(seen.stdout, 'made on the mount\n', 'a file written on the mount is there for dfs')

  // The test process itself, with the CA, talks to the same servers.
  trustCertificateAuthority(fs.readFileSync(tls.ca))
  const client = cluster.client()
  t.equal((await client.readFile('/notes/a.txt')).toString(), 'alpha\nbeta\ngamma\n', 'a DfsClient that trusts the CA reads the appends')
  await mount.unmount()
})
