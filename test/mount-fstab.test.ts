import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { isMounted } from '../src/fuse/mount'
import { liftOwnOptions, mountTarget } from '../src/cli/mountHelperArgs'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { clusterArgs, daemonPidOf, dfsBin, dfsMountBin, dfsUmountBin, hasExited, mountPlace, outcome, run, runCli } from './helpers/mount'
import type { MountPlace } from './helpers/mount'
import { closedPort } from './helpers/ports'
import { repoRoot } from './helpers/processes'
import { waitFor } from './helpers/waitFor'

/*
 * dfs-mount as mount(8) runs it for an fstab line of type fuse.dfs-mount: mount.fuse3 runs
 * `dfs-mount URL MOUNTPOINT -o LIST`, the directory server's URL as the source and every
 * setting inside the one -o list. mount(8) itself resets PATH to the system's folders, so
 * the test runs mount.fuse3 (what mount(8) hands the line to) with the repository's bin/
 * first on PATH instead of installing anything into /usr/local/bin.
 */

const MOUNT_FUSE3 = ['/sbin/mount.fuse3', '/usr/sbin/mount.fuse3'].find((file) => fs.existsSync(file))

/** The settings clusterArgs gives as --options, as one fstab -o list. */
function fstabOptions (cluster: TestCluster, place: MountPlace): string {
  const args = clusterArgs(cluster, place)
  const valueOf = (name: string): string => args[args.indexOf(name) + 1]
  return `lock=${cluster.lock.url},token_file=${valueOf('--token-file')},cache_dir=${place.cacheDir}`
}

async function assertServes (t: Test, place: MountPlace): Promise<void> {
  t.ok(await isMounted(place.mountpoint), 'mounted when the command returns')
  const read = await run('cat', [path.join(place.mountpoint, 'docs/a.txt')])
  t.equal(read.stdout, 'alpha\n', outcome(read))
  const append = await run('/bin/sh', ['-c', `echo beta >> ${path.join(place.mountpoint, 'docs/a.txt')}`])
  t.equal(append.code, 0, outcome(append))
  t.equal((await run('cat', [path.join(place.mountpoint, 'docs/a.txt')])).stdout, 'alpha\nbeta\n')
}

t.test('-o items that name dfs-mount options become those options; the rest stay mount options', async (t) => {
  const own = new Set(['lock', 'token-file', 'cache-dir', 'soft', 'directory', 'foreground', 'o'])
  const switches = new Set(['soft', 'foreground'])
  t.same(liftOwnOptions(['http://d:7070', '/mnt', '-o', 'rw,lock=http://l:7071,token_file=/t,allow_other,soft,dev,suid'], own, switches),
    ['http://d:7070', '/mnt', '-o', 'rw,allow_other,dev,suid', '--lock', 'http://l:7071', '--token-file', '/t', '--soft'])
  t.same(liftOwnOptions(['/mnt', '-ocache-dir=/c', '-o', 'ro'], own, switches), ['/mnt', '-o', 'ro', '--cache-dir', '/c'], '-oLIST and dashes too; an emptied list goes')
  t.same(liftOwnOptions(['/mnt', '-o', 'foreground,o=x'], own, switches), ['/mnt', '-o', 'foreground,o=x'], 'how to run the command is not a mount option: left for mountFlags to refuse')
  t.throws(() => liftOwnOptions(['/mnt', '-o', 'soft=1'], own, switches), /-o soft takes no value/)
  t.throws(() => liftOwnOptions(['/mnt', '-o', 'lock'], own, switches), /-o lock needs a value: lock=/)
  t.throws(() => liftOwnOptions(['/mnt', '-o', 'token_file='], own, switches), /-o token-file needs a value: token_file=/)

  t.same(mountTarget(['/mnt'], 'http://d', false), { directoryUrl: 'http://d', mountpoint: '/mnt' })
  t.same(mountTarget(['https://d:7070', '/mnt'], 'http://127.0.0.1:7070', false), { directoryUrl: 'https://d:7070', mountpoint: '/mnt' })
  t.same(mountTarget(['http://d', '/mnt'], 'http://d', true), { directoryUrl: 'http://d', mountpoint: '/mnt' }, 'the same URL twice is no contradiction')
  t.throws(() => mountTarget(['http://d', '/mnt'], 'http://e', true), /given twice/)
  t.throws(() => mountTarget(['/a', '/b'], 'http://d', false), /\/a is not a directory server URL/)
  t.throws(() => mountTarget(['http://d', '/a', '/b'], 'http://d', false), /name one mount point/)
})

t.test('dfs-mount URL MOUNTPOINT -o settings: mounts as an fstab line asks; dfs-umount unmounts', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const mounted = await runCli(dfsMountBin, [cluster.directory.url, place.mountpoint, '-o', `rw,${fstabOptions(cluster, place)},dev,suid`], { env: place.env })
  t.equal(mounted.code, 0, outcome(mounted))
  await assertServes(t, place)
  t.ok(fs.existsSync(path.join(place.cacheDir)), 'the cache folder named in -o is the one used')
  const unmounted = await runCli(dfsUmountBin, [place.mountpoint], { env: place.env })
  t.equal(unmounted.code, 0, outcome(unmounted))
  t.ok(await waitFor('the daemon to exit', async () => hasExited(daemonPidOf(mounted.stdout)), 10_000), 'the daemon has exited')
})

t.test('dfs-mount with a source that is no URL, or two directory servers: one line, nothing mounted', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const cases: Array<{ args: string[], says: RegExp }> = [
    { args: ['dir.example:7070', place.mountpoint, '-o', fstabOptions(cluster, place)], says: /^dfs-mount: dir\.example:7070 is not a directory server URL/ },
    { args: [cluster.directory.url, place.mountpoint, '--directory', 'http://127.0.0.1:1', '-o', fstabOptions(cluster, place)], says: /^dfs-mount: the directory server is given twice/ },
    { args: [cluster.directory.url, place.mountpoint, '-o', `${fstabOptions(cluster, place)},soft=yes`], says: /^dfs-mount: -o soft takes no value/ }
  ]
  for (const { args, says } of cases) {
    const result = await runCli(dfsMountBin, args, { env: place.env })
    t.not(result.code, 0, outcome(result))
    t.equal(result.stderr.trimEnd().split('\n').length, 1, `one line: ${result.stderr.trim()}`)
    t.match(result.stderr, says)
    t.notOk(await isMounted(place.mountpoint), 'nothing mounted')
  }
})

const noMountHelper = MOUNT_FUSE3 === undefined || process.getuid?.() !== 0 ? 'needs mount.fuse3 (Debian\'s fuse3) and root, as mount(8) runs it' : false
t.test('through mount.fuse3, as mount(8) runs an fstab line of type fuse.dfs-mount; umount unmounts', { skip: noMountHelper }, async (t) => {
  if (MOUNT_FUSE3 === undefined) return
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const env = { ...place.env, PATH: `${path.join(repoRoot, 'bin')}:${place.env.PATH ?? '/usr/bin:/bin'}` }
  // fstab's own words (_netdev, nofail) are mount(8)'s; mount.fuse3 adds dev,suid for root.
  const mounted = await run(MOUNT_FUSE3, [cluster.directory.url, place.mountpoint, '-t', 'dfs-mount', '-o', `_netdev,nofail,${fstabOptions(cluster, place)}`], { env, timeoutMs: 30_000 })
  t.equal(mounted.code, 0, outcome(mounted))
  await assertServes(t, place)
  const unmounted = await run('umount', [place.mountpoint])
  t.equal(unmounted.code, 0, outcome(unmounted))
  t.notOk(await isMounted(place.mountpoint), 'no longer mounted')
  t.ok(await waitFor('the daemon to exit', async () => hasExited(daemonPidOf(mounted.stdout)), 10_000), 'the daemon noticed and exited')
})

t.test('an fstab line without lock=: the mount and the dfs command use the lock server the directory server names', { timeout: 60_000 }, async (t) => {
  // The cluster's lock server listens on a port of its own, not the default one: a client
  // that fell back to the default would find nobody there.
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const withoutLock = fstabOptions(cluster, place).split(',').filter((item) => !item.startsWith('lock=')).join(',')
  const mounted = await runCli(dfsMountBin, [cluster.directory.url, place.mountpoint, '-o', withoutLock], { env: place.env })
  t.equal(mounted.code, 0, outcome(mounted))
  t.teardown(async () => { await runCli(dfsUmountBin, [place.mountpoint], { env: place.env }) })
  await assertServes(t, place)
  // flock is held on the lock server: only a mount that reaches it takes the lock.
  const file = path.join(place.mountpoint, 'docs/a.txt')
  const locked = await run('flock', ['-n', file, '-c', 'echo locked'], { timeoutMs: 20_000 })
  t.equal(locked.stdout, 'locked\n', outcome(locked))
  const log = fs.readFileSync(/\(daemon pid \d+, log (.*)\)/.exec(mounted.stdout)?.[1] ?? '', 'utf8')
  t.match(log, `lock server at ${cluster.lock.url}, as the directory server names it`)

  const tokenFile = withoutLock.split(',').find((item) => item.startsWith('token_file='))?.slice('token_file='.length) ?? ''
  const written = await runCli(dfsBin, ['--directory', cluster.directory.url, '--token-file', tokenFile, '--cache-dir', path.join(place.base, 'cli-cache'), 'write', '/docs/b.txt', 'bravo'], { env: place.env, timeoutMs: 20_000 })
  t.equal(written.code, 0, outcome(written))
  t.equal((await run('cat', [path.join(place.mountpoint, 'docs/b.txt')])).stdout, 'bravo\n')
})

/** From now on, connections to 127.0.0.1:`port` reach `target` (host:port): a directory server that comes up. */
async function forwardFrom (t: Test, port: number, target: URL): Promise<void> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    const upstream = net.connect(Number(target.port), target.hostname)
    for (const s of [socket, upstream]) {
      sockets.add(s)
      s.on('error', () => { socket.destroy(); upstream.destroy() })
    }
    socket.pipe(upstream).pipe(socket)
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
}

t.test('-o bg: a directory server that does not answer yet makes dfs-mount return at once; the mount follows once it answers', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const port = await closedPort()
  const later = `http://127.0.0.1:${port}`
  const mounted = await runCli(dfsMountBin, [later, place.mountpoint, '-o', `bg,${fstabOptions(cluster, place)}`], { env: place.env })
  t.equal(mounted.code, 0, outcome(mounted))
  t.match(mounted.stdout, /directory server at .* is not answering \(ECONNREFUSED\): dfs-mount goes on trying in the background/)
  t.notOk(await isMounted(place.mountpoint), 'not mounted yet')
  t.teardown(async () => { if (!hasExited(daemonPidOf(mounted.stdout))) process.kill(daemonPidOf(mounted.stdout), 'SIGTERM') })
  await forwardFrom(t, port, new URL(cluster.directory.url))
  t.ok(await waitFor('the mount', async () => await isMounted(place.mountpoint), 20_000), 'mounted once the directory server answers')
  await assertServes(t, place)
  const unmounted = await runCli(dfsUmountBin, [place.mountpoint], { env: place.env })
  t.equal(unmounted.code, 0, outcome(unmounted))

  // A daemon still waiting is stopped by dfs-umount: nothing mounts later.
  const waiting = await runCli(dfsMountBin, [`http://127.0.0.1:${await closedPort()}`, place.mountpoint, '-o', `bg,${fstabOptions(cluster, place)}`], { env: place.env })
  t.equal(waiting.code, 0, outcome(waiting))
  const stopped = await runCli(dfsUmountBin, [place.mountpoint], { env: place.env })
  t.equal(stopped.code, 0, outcome(stopped))
  t.match(stopped.stdout, /stopped the dfs-mount daemon \(pid \d+\) that was waiting/)
  t.ok(await waitFor('the waiting daemon to exit', async () => hasExited(daemonPidOf(waiting.stdout)), 10_000), 'the waiting daemon is gone')

  const without = await runCli(dfsMountBin, [later.replace(String(port), String(await closedPort())), place.mountpoint, '-o', fstabOptions(cluster, place)], { env: place.env })
  t.not(without.code, 0, 'without bg, the same is one line and a failure')
  t.match(without.stderr, /^dfs-mount: directory server .* is not answering/)
})

