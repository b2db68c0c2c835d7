import t from 'tap'
import { ServerUnavailableError } from '../src/shared/errors'
import { outcome, run } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'

/*
 * Proves the process-level harness (helpers/processCluster.ts): each fault it offers really
 * happens to a separate OS process, and the cluster is whole again after a restart.
 */

t.test('a file server killed with SIGKILL and restarted on its port serves the same file', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'one\n' }] })
  const [file] = cluster.files
  const client = cluster.client()
  // Written through dfs, so the restart must find what the killed process acknowledged.
  t.equal((await client.append('/notes/a.txt', 'two\n')).version, 2)

  const pid = file.pid
  await file.kill()
  t.notOk(file.alive(), 'the file server is gone')
  // A client with no cached copy has nowhere to read from while the server is down.
  await t.rejects(cluster.client().readFile('/notes/a.txt'), ServerUnavailableError, 'nothing answers on its port')

  await file.restart()
  t.not(file.pid, pid, 'a new process')
  t.equal(new URL(file.url).port, String(file.port), 'on the same port')
  t.equal((await client.readFile('/notes/a.txt')).toString(), 'one\ntwo\n', 'the old client reads it')
  t.equal((await cluster.client().readFile('/notes/a.txt')).toString(), 'one\ntwo\n', 'a new client reads it')
  t.equal((await client.stat('/notes/a.txt')).version, 2, 'the version survived the crash')
})

t.test('a stopped lock server: appends go on without it, a locked write fails within its timeout; after SIGCONT locked writes work', async (t) => {
  // A short default lease, so that a lease nobody holds any more (see below) runs out soon.
  const leaseMs = 3000
  const cluster = await startProcessCluster(t, { trees: [{ 'log.txt': '' }], lockArgs: ['--lease-ms', String(leaseMs)] })
  const timeoutMs = 1000
  const lockTimeoutMs = 1000
  const client = cluster.client({ timeoutMs, lockTimeoutMs })
  t.equal((await client.append('/log.txt', 'a\n')).version, 2)

  await cluster.lock.stop()
  // An append needs no lock: the file server puts appends in order itself.
  t.equal((await client.append('/log.txt', 'b\n')).version, 3, 'an append works with the lock server stopped')
  const started = Date.now()
  // The acquire request may wait on the server for up to lockTimeoutMs, and then gets the
  // usual timeoutMs to answer (src/client/lockClient.ts): that, plus slack for 2 busy CPUs.
  const bound = lockTimeoutMs + timeoutMs + 1500
  const error = await client.truncate('/log.txt', 2).then(() => null, (err: unknown) => err)
  const took = Date.now() - started
  t.type(error, ServerUnavailableError, 'a truncate (it needs the lock) fails as "not answering"')
  t.match((error as Error | null)?.message, /lock server/, 'and says which server')
  t.ok(took < bound, `within ${bound} ms (took ${took} ms)`)

  await cluster.lock.cont()
  await cluster.lock.waitHealthy()
  // The abandoned acquire is still in the lock server's socket buffer, followed by the
  // client's hang-up, and runs the moment the server does. The server lets its event loop
  // read what the socket holds before it grants (servers/lock/server.ts, `gone`), sees the
  // hang-up, and grants nothing: the key stays free for the next writer.
  const status = await (await fetch(`${cluster.lock.url}/locks?path=${encodeURIComponent('/log.txt')}`, { headers: { Authorization: `Bearer ${cluster.credentials.read}` } })).json() as { held: boolean, owner?: string }
  t.equal(status.held, false, `the abandoned acquire leaves the key free (held by ${String(status.owner)})`)
  const first = await client.truncate('/log.txt', 2).then(() => null, (err: unknown) => err)
  t.equal(first, null, 'the first locked write after SIGCONT works')

  // Whatever the first attempt met, locked writes work again by the time that lease has run out.
  const meta = first === null
    ? await client.stat('/log.txt')
    : await waitFor('a truncate after SIGCONT', async () => await client.truncate('/log.txt', 2).catch(() => undefined), leaseMs + 5000, 100)
  t.equal(meta.version, 4, 'the failed truncate changed nothing; this one is the next version')
  t.equal((await client.readFile('/log.txt')).toString(), 'a\n')
})

t.test('a mount killed with SIGKILL is cleaned up and a restarted mount reads the file', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'docs/readme.txt': 'hello from dfs\n' }] })
  const mount = await cluster.mount()
  const readme = mount.at('/docs/readme.txt')
  // Every access to the mount runs in a child process with a timeout: a hung FUSE request
  // then fails this test instead of freezing the test process.
  let cat = await run('cat', [readme])
  t.equal(cat.stdout, 'hello from dfs\n', outcome(cat))

  const pid = mount.pid
  await mount.kill()
  t.notOk(mount.alive(), 'the daemon is gone')
  const { isMounted } = await import('../src/fuse/mount')
  t.notOk(await isMounted(mount.mountpoint), 'nothing is left mounted')
  const ls = await run('ls', ['-A', mount.mountpoint])
  t.equal(ls.code, 0, `the mount point is a plain folder again: ${outcome(ls)}`)
  t.equal(ls.stdout, '', 'and an empty one')

  await mount.restart()
  t.not(mount.pid, pid, 'a new daemon')
  cat = await run('cat', [readme])
  t.equal(cat.stdout, 'hello from dfs\n', outcome(cat))
})

/*
 * What servers/file/membership.ts promises: the directory server keeps everything in
 * memory, and a file server that sees a new boot id on its /health (or the lock server's)
 * joins again (every 2 s as dfs-serve runs it), so the cluster heals without restarting the
 * file servers. The lock server keeps its keys in its state folder: writes work at once.
 */
t.test('restarted directory and lock servers get their registrations and keys back', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'a.txt': 'a\n' }, { 'b.txt': 'b\n' }] })
  const client = cluster.client({ timeoutMs: 1000, lockTimeoutMs: 1000 })
  const before = await cluster.directory.waitHealthy()
  t.equal(before.servers, 2)

  await cluster.directory.restart()
  const empty = await cluster.directory.waitHealthy()
  t.not(empty.bootId, before.bootId, 'a new boot id')
  const healed = await waitFor('both file servers to join again', async () => {
    const health = await cluster.directory.waitHealthy()
    return health.servers === 2 && health.files === 2 && health
  }, 10_000, 100)
  t.equal(healed.files, 2, 'their files are in the map again')

  const lockBoot = (await cluster.lock.waitHealthy()).bootId
  await cluster.lock.restart()
  t.not((await cluster.lock.waitHealthy()).bootId, lockBoot, 'the lock server has a new boot id')
  // No waiting for the file servers to rejoin: the key came back from the state folder.
  t.equal((await client.truncate('/b.txt', 1)).version, 2, 'a locked write right after the restart')
  t.equal((await client.append('/b.txt', 'c\n')).version, 3)
  t.equal((await client.readFile('/b.txt')).toString(), 'bc\n')
})
