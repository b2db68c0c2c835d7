import net from 'node:net'
import type { AddressInfo } from 'node:net'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { isMounted } from '../src/fuse/mount'
import { startTestCluster } from './helpers/cluster'
import type { Finished } from './helpers/processes'
import { waitFor } from './helpers/waitFor'
import { clusterArgs, daemonPidOf, dfsMountBin, dfsUmountBin, hasExited, mountCluster, mountPlace, outcome, run, runCli } from './helpers/mount'
import { closedPort } from './helpers/ports'

/** A CLI failure as a user should see it: one line on stderr naming the command, no stack, non-zero exit. */
function assertOneLineError (t: Test, result: Finished, command: string, says: RegExp): void {
  t.not(result.code, 0, `${command} exits non-zero (${outcome(result)})`)
  t.equal(result.signal, null, `${command} ended by itself`)
  const lines = result.stderr.trimEnd().split('\n')
  t.equal(lines.length, 1, `one line on stderr: ${result.stderr.trim()}`)
  t.match(lines[0], new RegExp(`^${command}: `), 'the line names the command')
  t.match(lines[0], says)
  t.notMatch(result.stderr, /\n\s+at /, 'no stack trace')
}

/** A TCP server that takes connections and never answers: a hung directory server. */
async function silentServer (t: Test): Promise<string> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => { sockets.add(socket) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('dfs-mount mounts in the background and returns once ready; dfs-umount unmounts and the daemon ends', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const mounted = await runCli(dfsMountBin, [place.mountpoint, ...clusterArgs(cluster, place)], { env: place.env })
  t.equal(mounted.code, 0, outcome(mounted))
  t.ok(await isMounted(place.mountpoint), 'mounted when dfs-mount returns')
  const pid = daemonPidOf(mounted.stdout)
  t.ok(pid > 0, `dfs-mount names the daemon's pid: ${mounted.stdout.trim()}`)
  t.equal((await run('cat', [path.join(place.mountpoint, 'docs', 'a.txt')])).stdout, 'alpha\n')

  const unmounted = await runCli(dfsUmountBin, [place.mountpoint], { env: place.env })
  t.equal(unmounted.code, 0, outcome(unmounted))
  t.notOk(await isMounted(place.mountpoint), 'no longer mounted')
  t.ok(await waitFor('the daemon to exit', async () => hasExited(pid), 10_000), 'the daemon has exited')

  const again = await runCli(dfsUmountBin, [place.mountpoint], { env: place.env })
  assertOneLineError(t, again, 'dfs-umount', /is not mounted/)
})

t.test('a mount point reached through a symbolic link (/home -> /var/home, or the name itself) stays mounted, and dfs-umount finds it by the same path', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  fs.symlinkSync(place.base, path.join(place.base, 'parent-link'))
  fs.symlinkSync(place.mountpoint, path.join(place.base, 'name-link'))
  for (const viaLink of [path.join(place.base, 'parent-link', 'mnt'), path.join(place.base, 'name-link')]) {
    const mounted = await runCli(dfsMountBin, [viaLink, ...clusterArgs(cluster, place)], { env: place.env })
    t.equal(mounted.code, 0, outcome(mounted))
    const pid = daemonPidOf(mounted.stdout)
    // The daemon checks every 2 s that its mount is still there: it took one through a link for gone.
    await new Promise((resolve) => setTimeout(resolve, 4500))
    t.ok(await isMounted(place.mountpoint), `mounted at ${viaLink}: still mounted after the daemon checked twice`)
    t.equal((await run('cat', [path.join(viaLink, 'docs', 'a.txt')])).stdout, 'alpha\n', 'and serving through the link')
    const unmounted = await runCli(dfsUmountBin, [viaLink], { env: place.env })
    t.equal(unmounted.code, 0, outcome(unmounted))
    t.notOk(await isMounted(place.mountpoint), 'dfs-umount through the link unmounted it')
    t.ok(await waitFor('the daemon to exit', async () => hasExited(pid), 10_000), 'the daemon has exited')
  }
})

t.test('dfs-mount on a missing mount point: one-line error, nothing mounted', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const missing = path.join(place.base, 'no-such-folder')
  for (const mode of [[], ['--foreground']]) {
    const result = await runCli(dfsMountBin, [missing, ...clusterArgs(cluster, place), ...mode], { env: place.env })
    assertOneLineError(t, result, 'dfs-mount', /does not exist/)
  }
  t.notOk(fs.existsSync(missing), 'the mount point was not created behind the user\'s back')
  t.notOk(await isMounted(missing))
})

t.test('dfs-mount with its cache inside the mount point: one-line error, nothing mounted', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const args = clusterArgs(cluster, place)
  const cacheAt = args.indexOf('--cache-dir') + 1
  for (const inside of [place.mountpoint, path.join(place.mountpoint, 'cache')]) {
    args[cacheAt] = inside
    for (const mode of [[], ['--foreground']]) {
      const result = await runCli(dfsMountBin, [place.mountpoint, ...args, ...mode], { env: place.env })
      assertOneLineError(t, result, 'dfs-mount', /--cache-dir .* is inside the mount point/)
      t.notOk(await isMounted(place.mountpoint), 'nothing mounted')
    }
  }
})

t.test('dfs-mount on a point that is already mounted: one-line error, the first mount keeps serving', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'alpha\n' }])
  const mount = await mountCluster(t, cluster)
  const result = await runCli(dfsMountBin, [mount.mountpoint, ...clusterArgs(cluster, mount)], { env: mount.env })
  assertOneLineError(t, result, 'dfs-mount', /already mounted/)
  t.ok(mount.alive(), 'the first daemon is still up')
  t.equal((await run('cat', [mount.at('/a.txt')])).stdout, 'alpha\n', 'and still serves')
})

t.test('dfs-mount with a directory server that refuses or never answers: one-line error, nothing mounted', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const refusing = `http://127.0.0.1:${await closedPort()}`
  const silent = await silentServer(t)
  const cases: Array<{ url: string, mode: string[], says: RegExp }> = [
    { url: refusing, mode: [], says: /directory server .* is not answering \(ECONNREFUSED\)/ },
    { url: refusing, mode: ['--foreground'], says: /directory server .* is not answering \(ECONNREFUSED\)/ },
    { url: silent, mode: [], says: /directory server .* is not answering \(no answer within \d+ ms\)/ }
  ]
  for (const { url, mode, says } of cases) {
    const result = await runCli(dfsMountBin, [place.mountpoint, '--directory', url, '--lock', cluster.lock.url, '--cache-dir', place.cacheDir, ...mode], { env: place.env })
    assertOneLineError(t, result, 'dfs-mount', says)
    t.notOk(await isMounted(place.mountpoint), 'nothing mounted')
  }
})

t.test('dfs-mount with a lock server that does not answer: one-line error naming where its URL came from, nothing mounted', async (t) => {
  // Mounted, every write and lock would wait for it for ever (a hard mount), with no word.
  const cluster = await startTestCluster(t, [{ 'a.txt': 'alpha\n' }])
  const place = await mountPlace(t)
  const refusing = `http://127.0.0.1:${await closedPort()}`
  const args = clusterArgs(cluster, place)
  args.splice(args.indexOf('--lock'), 2, '--lock', refusing)
  for (const mode of [[], ['--foreground']]) {
    const result = await runCli(dfsMountBin, [place.mountpoint, ...args, ...mode], { env: place.env })
    assertOneLineError(t, result, 'dfs-mount', new RegExp(`lock server at ${refusing.slice('http://'.length)} is not answering \\(ECONNREFUSED\\); that is the lock server given with --lock`))
    t.notOk(await isMounted(place.mountpoint), 'nothing mounted')
  }
})

t.test('a stale mount (daemon killed) is refused by dfs-mount and removed by dfs-umount', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'alpha\n' }])
  const mount = await mountCluster(t, cluster)
  const stateDir = path.join(mount.env.XDG_STATE_HOME as string, 'dfs', 'mounts')
  const stateFiles = (): string[] => fs.readdirSync(stateDir).filter((name) => name.endsWith('.json'))
  t.equal(stateFiles().length, 1, 'the daemon recorded its pid')

  mount.daemon.kill('SIGKILL')
  await mount.exited
  t.ok(await isMounted(mount.mountpoint), 'the kernel still lists the mount: it is stale')
  const ls = await run('ls', [mount.mountpoint])
  t.not(ls.code, 0)
  t.match(ls.stderr, /Transport endpoint is not connected/, 'a stale mount answers ENOTCONN')

  const remount = await runCli(dfsMountBin, [mount.mountpoint, ...clusterArgs(cluster, mount)], { env: mount.env })
  assertOneLineError(t, remount, 'dfs-mount', /stale mount: run dfs-umount/)

  const unmounted = await runCli(dfsUmountBin, [mount.mountpoint], { env: mount.env })
  t.equal(unmounted.code, 0, outcome(unmounted))
  t.notOk(await isMounted(mount.mountpoint), 'the stale mount is gone')
  t.same(stateFiles(), [], 'and so is the dead daemon\'s state file')
  const empty = await run('ls', ['-A', mount.mountpoint])
  t.equal(empty.code, 0, 'the mount point is a plain folder again')
  t.equal(empty.stdout, '')
})
