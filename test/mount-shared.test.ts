import fsp from 'node:fs/promises'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { dfsMountBin, mountCluster, mountPlace, outcome, run, runCli } from './helpers/mount'
import type { TestMount } from './helpers/mount'
import { fuseConfAllowsOther, parseMountFlags } from '../src/cli/mountFlags'

/*
 * Shared mounts: -o allow_other lets other local users in, and the kernel checks the mode
 * bits each file shows against them (default_permissions, which allow_other implies).
 * The tests run as root; the other user is `nobody`, each of its tries a child process
 * started through setpriv with nobody's uid, gid and no other groups.
 */

const OTHER_USER = ['--reuid=nobody', '--regid=nogroup', '--clear-groups']

/** What `nobody` gets for one shell command on the mount: 'ok', or the error it printed. */
async function asNobody (script: string): Promise<string> {
  const result = await run('setpriv', [...OTHER_USER, '/bin/sh', '-c', script], { timeoutMs: 20_000 })
  return result.code === 0 ? 'ok' : result.stderr.trim()
}

/** A mount whose place other users may walk through (mkdtemp makes it 0700). */
async function sharedMount (t: Parameters<typeof mountCluster>[0], extra: string[]): Promise<TestMount> {
  const cluster = await startTestCluster(t, [{ 'docs/open.txt': 'for everyone\n', 'docs/private.txt': 'owner only\n' }])
  const mount = await mountCluster(t, cluster, extra)
  await fsp.chmod(mount.base, 0o755)
  const chmod = await run('chmod', ['0600', mount.at('/docs/private.txt')])
  t.equal(chmod.code, 0, outcome(chmod))
  const modes = await run('stat', ['-c', '%a %u', mount.at('/docs/open.txt'), mount.at('/docs/private.txt')])
  t.equal(modes.stdout, '644 0\n600 0\n', 'the files show their modes and the mounting user (root) as owner')
  return mount
}

if (process.getuid?.() !== 0) {
  t.pass('shared mounts: these tests switch to another user and need root; skipped')
} else {
  t.test('with allow_other, another user gets what the mode bits allow it', async (t) => {
    const mount = await sharedMount(t, ['-o', 'allow_other'])
    t.equal(await asNobody(`cat ${mount.at('/docs/open.txt')}`), 'ok', 'reads a 0644 file')
    t.match(await asNobody(`cat ${mount.at('/docs/private.txt')}`), /Permission denied/, 'cannot read a 0600 file')
    t.match(await asNobody(`echo more >> ${mount.at('/docs/open.txt')}`), /Permission denied/, 'cannot append to a 0644 file')
    t.match(await asNobody(`echo new > ${mount.at('/docs/open.txt')}`), /Permission denied/, 'cannot overwrite a 0644 file')
    t.match(await asNobody(`touch ${mount.at('/docs/new.txt')}`), /Permission denied/, 'cannot create in a 0755 folder of another owner')
    const content = await run('cat', [mount.at('/docs/open.txt')])
    t.equal(content.stdout, 'for everyone\n', 'the file is unchanged')
    t.match(mount.output(), /mounted/)
  })

  t.test('without allow_other, another user gets nothing at all', async (t) => {
    const mount = await sharedMount(t, [])
    t.match(await asNobody(`cat ${mount.at('/docs/open.txt')}`), /Permission denied/, 'cannot read a 0644 file')
    t.match(await asNobody(`ls ${mount.mountpoint}`), /Permission denied/, 'cannot even list the mount')
  })

  t.test('allow_other for a user whose /etc/fuse.conf lacks user_allow_other: one line saying so', async (t) => {
    const fuseConf = await fsp.readFile('/etc/fuse.conf', 'utf8').catch(() => null)
    if (fuseConfAllowsOther(fuseConf)) {
      t.pass('this machine allows user_allow_other: nothing to refuse')
      return
    }
    const place = await mountPlace(t)
    await fsp.chmod(place.base, 0o755)
    const result = await run('setpriv', [...OTHER_USER, process.execPath, dfsMountBin, place.mountpoint, '-o', 'allow_other'], { env: place.env, timeoutMs: 30_000 })
    t.not(result.code, 0)
    // Only the first line is dfs-mount's: tap's process hooks, inherited, complain after it that nobody may not write here.
    t.match(result.stderr.split('\n')[0], /^dfs-mount: -o allow_other needs a line user_allow_other in \/etc\/fuse.conf/, outcome(result))
  })

  t.test('-o uid=,gid= choose the owner shown, and -o ro refuses every change', async (t) => {
    const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }])
    const mount = await mountCluster(t, cluster, ['-o', 'ro', '-o', 'uid=65534,gid=65534,noatime,_netdev'])
    const owner = await run('stat', ['-c', '%u:%g', mount.at('/a.txt')])
    t.equal(owner.stdout, '65534:65534\n')
    const write = await run('/bin/sh', ['-c', `echo b >> ${mount.at('/a.txt')}`])
    t.match(write.stderr, /Read-only file system/, outcome(write))
    const content = await run('cat', [mount.at('/a.txt')])
    t.equal(content.stdout, 'a\n')
  })
}

t.test('options dfs cannot honour are refused in one line before anything starts', async (t) => {
  const place = await mountPlace(t)
  for (const [option, message] of [
    ['kernel_cache', /-o kernel_cache is not supported: dfs needs auto_cache/],
    ['allow_other,allow_root', /contradict/],
    ['uid=x', /-o uid=x: not a valid uid/],
    ['frobnicate', /-o frobnicate: unknown mount option/]
  ] as const) {
    const result = await runCli(dfsMountBin, [place.mountpoint, '-o', option], { env: place.env })
    t.not(result.code, 0, option)
    t.match(result.stderr, message, outcome(result))
    t.equal(result.stderr.trim().split('\n').length, 1, 'one line')
  }
})

t.test('the -o list: allow_other brings default_permissions; fuse.conf is read as fusermount reads it', async (t) => {
  t.same(parseMountFlags(['allow_other']).kernel, ['allow_other', 'default_permissions'])
  t.same(parseMountFlags(['ro,rw=1'.replace(',rw=1', ''), 'umask=022,uid=7']), { kernel: ['ro', 'umask=022'], allowOther: false, uid: 7 })
  t.same(parseMountFlags(['_netdev,x-systemd.automount,x-systemd.mount-timeout=30s,comment=systemd.automount,nofail']).kernel, [], 'fstab\'s and systemd\'s own words are left out')
  t.equal(fuseConfAllowsOther('# user_allow_other\nmount_max = 10\n'), false)
  t.equal(fuseConfAllowsOther('mount_max = 10\n  user_allow_other  \n'), true)
  t.equal(fuseConfAllowsOther(null), false)
})
