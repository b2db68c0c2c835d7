import diagnostics from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'
import type { Test } from 'tap'
import t from 'tap'
import { AdvisoryRoutes } from '../src/shared/advisoryLockProtocol'
import { fcntlWaiter, holdLock, tryLocks, waitingForLock } from './helpers/advisoryLocks'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'
import type { TestMount } from './helpers/mount'
import { waitFor } from './helpers/waitFor'

/*
 * Advisory locks delegated to the one mount that uses a file's locks: it answers them itself,
 * with no request, until another mount asks about the file and the lock server recalls them.
 * The cluster runs in this process, so the lock server's requests are counted where it
 * receives them; each mount is a daemon of its own, and the locks are taken by programs
 * (python3's fcntl module, flock(1), sqlite3) in child processes.
 */

/**
 * Counts the advisory requests that decide something (lock, test, hand-back, status) the lock
 * server of this process receives; renewals are background. The answer resets the count.
 */
function countAdvisoryRequests (t: Test): () => number {
  let count = 0
  const onRequest = (message: unknown): void => {
    const { request } = message as { request: IncomingMessage }
    const route = (request.url ?? '').split('?')[0]
    if (route.startsWith(AdvisoryRoutes.status) && route !== AdvisoryRoutes.renew) count++
  }
  diagnostics.subscribe('http.server.request.start', onRequest)
  t.teardown(() => diagnostics.unsubscribe('http.server.request.start', onRequest))
  return () => {
    const seen = count
    count = 0
    return seen
  }
}

/**
 * Requests a long loop may still make: if the mount's channel to the lock server is lost (its
 * renewals stalled for the callback lease on a very busy machine), the mount hands the path
 * back and asks for it again with its next lock. Without delegation the loops make 180 and more.
 */
const LOST_CHANNEL_REQUESTS = 2

/** python3 that takes and gives back fcntl locks on `file` `rounds` times over (as sqlite does per transaction). */
async function lockLoop (file: string, rounds: number): Promise<void> {
  const script = `import fcntl\nf = open(${JSON.stringify(file)}, 'r+')\nfor i in range(${rounds}):\n    fcntl.lockf(f, fcntl.LOCK_SH, 1, 100)\n    fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)\n    fcntl.lockf(f, fcntl.LOCK_UN, 10, 0)\n    fcntl.lockf(f, fcntl.LOCK_UN, 1, 100)\nf.close()\n`
  const result = await run('python3', ['-c', script], { timeoutMs: 60_000 })
  if (result.code !== 0) throw new Error(`the lock loop failed: ${outcome(result)}`)
}

/**
 * Runs lock loops on the mount until one makes no advisory request: the mount's callback
 * channel to the lock server opens in the background, and the first lock after that asks for
 * the delegation. Fails if that never happens.
 */
async function untilDelegated (mount: TestMount, file: string, taken: () => number): Promise<void> {
  await waitFor(`mount ${mount.mountpoint} answering the locks on ${file} itself`, async () => {
    taken()
    await lockLoop(mount.at(file), 1)
    return taken() === 0
  }, 20_000, 50)
}

async function twoMounts (t: Test, opts: { leaseMs?: number } = {}): Promise<{ a: TestMount, b: TestMount, taken: () => number }> {
  const cluster = await startTestCluster(t, [{ 'shared/data.bin': 'x'.repeat(100), 'db/.keep': '' }], opts)
  const taken = countAdvisoryRequests(t)
  return { a: await mountCluster(t, cluster), b: await mountCluster(t, cluster), taken }
}

t.test('a mount alone on a file answers its fcntl locks itself: a lock loop and sqlite transactions make no advisory request', async (t) => {
  const cluster = await startTestCluster(t, [{ 'shared/data.bin': 'x'.repeat(100), 'db/.keep': '' }])
  const taken = countAdvisoryRequests(t)
  const mount = await mountCluster(t, cluster)
  await untilDelegated(mount, '/shared/data.bin', taken)
  await lockLoop(mount.at('/shared/data.bin'), 50)
  t.ok(taken() <= LOST_CHANNEL_REQUESTS, '200 fcntl lock calls by a new process, after the delegation: no advisory request')

  const db = mount.at('/db/loop.db')
  const create = await run('sqlite3', ['-batch', db, 'create table items (id integer primary key, n integer);'], { timeoutMs: 60_000 })
  t.equal(create.code, 0, `sqlite3 makes the database (${outcome(create)})`)
  const transactions = Array.from({ length: 20 }, (_, i) => `begin; insert into items (n) values (${i}); commit;`).join('\n')
  await waitFor('the database\'s locks delegated to the mount', async () => {
    taken()
    const one = await run('sqlite3', ['-batch', db, 'select count(*) from items;'], { timeoutMs: 60_000 })
    if (one.code !== 0) throw new Error(`sqlite3 failed: ${outcome(one)}`)
    return taken() === 0
  }, 20_000, 50)
  const loop = await run('sqlite3', ['-batch', db, `${transactions}\nselect count(*) from items;`], { timeoutMs: 60_000 })
  t.equal(loop.code, 0, `20 transactions in one sqlite3 (${outcome(loop)})`)
  t.equal(loop.stdout.trim(), '20')
  t.ok(taken() <= LOST_CHANNEL_REQUESTS, 'sqlite\'s fcntl locks over 20 transactions: no advisory request')
})

t.test('locks taken under a delegation on mount A keep mount B out: flock -n fails, F_GETLK names the lock, a blocking flock waits', async (t) => {
  const { a, b, taken } = await twoMounts(t)
  await untilDelegated(a, '/shared/data.bin', taken)
  const holder = holdLock(t, a.at('/shared/data.bin'), 'fcntl.flock(f, fcntl.LOCK_EX)\nfcntl.lockf(f, fcntl.LOCK_EX, 10, 0)')
  await holder.holding
  const onA = await run('flock', ['-n', a.at('/shared/data.bin'), 'true'])
  t.equal(onA.code, 1, `another open file on A is refused the flock (${outcome(onA)})`)
  t.equal(taken(), 0, 'A took its locks, and refused its own flock -n, with no advisory request')

  const tryB = await run('flock', ['-n', b.at('/shared/data.bin'), 'true'])
  t.equal(tryB.code, 1, `flock -n through mount B fails while A holds the lock (${outcome(tryB)})`)
  t.ok(taken() >= 2, 'B asked the lock server, which recalled the delegation from A (the hand-back is a request)')
  const getlk = "r = fcntl.fcntl(f, fcntl.F_GETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 5, 0)); ty, wh, st, ln, pid = struct.unpack('hhqqi', r); assert (ty, st, ln) == (fcntl.F_WRLCK, 0, 10), (ty, st, ln)"
  t.same(await tryLocks(b.at('/shared/data.bin'), [
    { name: 'getlk', code: getlk },
    { name: 'overlap', code: 'fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB, 5, 5)' },
    { name: 'disjoint', code: 'fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 10)' }
  ]), ['getlk:granted', 'overlap:EAGAIN', 'disjoint:granted'], 'B\'s F_GETLK sees A\'s byte range, and only those bytes are refused')

  // A blocking flock on B waits; what it prints is written only just before A lets go.
  const waiter = await waitingForLock(t, (flag) => ['flock', b.at('/shared/data.bin'), 'cat', flag])
  waiter.say('A gave the lock back\n')
  t.equal(await holder.release(), 0, 'the holder on A closes its file')
  t.equal(await waiter.exited, 0, 'the blocking flock on B gets the lock')
  t.equal(waiter.output(), 'A gave the lock back\n', 'only after A gave it back')
})

t.test('two programs of one mount under a delegation: a blocking lock waits in the mount for the other\'s unlock', async (t) => {
  const { a, taken } = await twoMounts(t)
  await untilDelegated(a, '/shared/data.bin', taken)
  const holder = holdLock(t, a.at('/shared/data.bin'), 'fcntl.lockf(f, fcntl.LOCK_EX, 0, 0)')
  await holder.holding
  const waiter = await waitingForLock(t, (flag) => ['python3', '-c', fcntlWaiter(a.at('/shared/data.bin'), flag)])
  waiter.say('the first gave the lock back\n')
  t.equal(await holder.release(), 0, 'the first program closes its file')
  t.equal(await waiter.exited, 0, `the second program's F_SETLKW returns (${waiter.output()})`)
  t.equal(waiter.output(), 'the first gave the lock back\n', 'only after the first closed')
  t.equal(taken(), 0, 'all of it with no advisory request')
})

t.test('a mount killed while it holds a delegated lock: the other mount gets the lock once its session runs out', async (t) => {
  const { a, b, taken } = await twoMounts(t, { leaseMs: 1500 })
  await untilDelegated(a, '/shared/data.bin', taken)
  const holder = holdLock(t, a.at('/shared/data.bin'), 'fcntl.flock(f, fcntl.LOCK_EX)')
  await holder.holding
  const onA = await run('flock', ['-n', a.at('/shared/data.bin'), 'true'])
  t.equal(onA.code, 1, `the lock is held: another open file on A is refused (${outcome(onA)})`)
  t.equal(taken(), 0, 'and it lives in mount A only: no advisory request')
  a.daemon.kill('SIGKILL')
  await a.exited
  const after = await run('flock', ['-w', '30', b.at('/shared/data.bin'), 'true'], { timeoutMs: 40_000 })
  t.equal(after.code, 0, `once A's session ran out, a waiting flock through B gets the lock (${outcome(after)})`)
  process.kill(holder.pid, 'SIGKILL')
})
