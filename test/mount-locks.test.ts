import { spawn } from 'node:child_process'
import type { Test } from 'tap'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'
import type { TestMount } from './helpers/mount'
import { blockedOnMount, fcntlWaiter, holdLock, tryLocks, waitingForLock } from './helpers/advisoryLocks'
import { cleanEnv } from './helpers/processes'

/*
 * fcntl and flock locks through two mounts of one cluster: each mount is its own daemon
 * process, as two machines would be, and every lock is taken by a program (flock(1), python3's
 * fcntl module) in a child process, so the locks go through the kernel and the binding.
 */

async function twoMounts (t: Test, opts: { leaseMs?: number } = {}): Promise<{ a: TestMount, b: TestMount }> {
  const cluster = await startTestCluster(t, [{ 'shared/guard': 'guard\n', 'shared/data.bin': 'x'.repeat(100) }], opts)
  return { a: await mountCluster(t, cluster), b: await mountCluster(t, cluster) }
}

t.test('a flock held through one mount keeps the other mount out until it is given back', async (t) => {
  const { a, b } = await twoMounts(t)
  const holder = holdLock(t, a.at('/shared/guard'), 'fcntl.flock(f, fcntl.LOCK_EX)')
  await holder.holding

  const tryB = await run('flock', ['-n', b.at('/shared/guard'), 'true'])
  t.equal(tryB.code, 1, `flock -n through mount B fails while A holds the lock (${outcome(tryB)})`)
  const tryA = await run('flock', ['-n', a.at('/shared/guard'), 'true'])
  t.equal(tryA.code, 1, `so does another open file on mount A (${outcome(tryA)})`)

  // A blocking flock on B waits; what it prints is written only just before A lets go.
  const waiter = await waitingForLock(t, (flag) => ['flock', b.at('/shared/guard'), 'cat', flag])
  waiter.say('A gave the lock back\n')
  t.equal(await holder.release(), 0, 'the holder closes its file')
  t.equal(await waiter.exited, 0, 'the blocking flock on B gets the lock')
  t.equal(waiter.output(), 'A gave the lock back\n', 'only after A gave it back')

  const again = await run('flock', ['-n', a.at('/shared/guard'), 'true'])
  t.equal(again.code, 0, `with both done, the lock is free on A (${outcome(again)})`)
})

t.test('shared flocks of two mounts coexist; an exclusive one waits for both; an interrupted wait ends', async (t) => {
  const { a, b } = await twoMounts(t)
  const reader = holdLock(t, a.at('/shared/guard'), 'fcntl.flock(f, fcntl.LOCK_SH)')
  await reader.holding
  const shared = await run('flock', ['-n', '-s', b.at('/shared/guard'), 'true'])
  t.equal(shared.code, 0, `a shared flock -n through B is granted beside A's shared one (${outcome(shared)})`)
  const exclusive = await run('flock', ['-n', '-x', b.at('/shared/guard'), 'true'])
  t.equal(exclusive.code, 1, `an exclusive flock -n through B is refused (${outcome(exclusive)})`)
  // flock -w gives up with SIGALRM: the kernel interrupts the request and the mount answers EINTR.
  const timed = await run('flock', ['-w', '1', '-x', b.at('/shared/guard'), 'true'], { timeoutMs: 20_000 })
  t.equal(timed.code, 1, `flock -w 1 through B gives up instead of hanging (${outcome(timed)})`)
  // A waiter killed outright: the kernel interrupts its request, the mount answers, it dies.
  const killed = spawn('flock', ['-x', b.at('/shared/guard'), 'true'], { env: cleanEnv(), stdio: 'ignore' })
  t.teardown(() => { killed.kill('SIGKILL') })
  const killedExit = new Promise<NodeJS.Signals | null>((resolve) => killed.once('exit', (_code, signal) => resolve(signal)))
  await blockedOnMount(killed.pid ?? 0)
  killed.kill('SIGKILL')
  t.equal(await killedExit, 'SIGKILL', 'a waiting flock killed with SIGKILL exits while the lock is still held')
  t.equal(await reader.release(), 0, 'A lets go')
  const after = await run('flock', ['-n', '-x', b.at('/shared/guard'), 'true'])
  t.equal(after.code, 0, `now the exclusive flock -n through B is granted: the interrupted wait left nothing behind (${outcome(after)})`)
})

t.test('fcntl byte-range locks conflict across mounts on overlapping bytes only', async (t) => {
  const { a, b } = await twoMounts(t)
  // A: exclusive on bytes 0-9, shared on 20-29.
  const holder = holdLock(t, a.at('/shared/data.bin'), 'fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)\nfcntl.lockf(f, fcntl.LOCK_SH, 10, 20)')
  await holder.holding
  const getlk = "r = fcntl.fcntl(f, fcntl.F_GETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 5, 0)); ty, wh, st, ln, pid = struct.unpack('hhqqi', r); assert (ty, st, ln) == (fcntl.F_WRLCK, 0, 10), (ty, st, ln)"
  const results = await tryLocks(b.at('/shared/data.bin'), [
    { name: 'overlap', code: 'fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)' },
    { name: 'disjoint', code: 'fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 10)' },
    { name: 'shared-on-shared', code: 'fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB, 5, 25)' },
    { name: 'exclusive-on-shared', code: 'fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 29)' },
    { name: 'to-the-end', code: 'fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 30)' },
    { name: 'getlk', code: getlk }
  ])
  t.same(results, [
    'overlap:EAGAIN',
    'disjoint:granted',
    'shared-on-shared:granted',
    'exclusive-on-shared:EAGAIN',
    'to-the-end:granted',
    'getlk:granted'
  ], 'B is refused exactly the bytes A holds in a conflicting way, and F_GETLK names A\'s lock')
  t.equal(await holder.release(), 0, 'A closes the file: POSIX drops its locks')
  const after = await tryLocks(b.at('/shared/data.bin'), [{ name: 'overlap', code: 'fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)' }])
  t.same(after, ['overlap:granted'], 'then B gets the bytes A had')
})

t.test('a blocking fcntl lock through one mount waits for the other mount\'s close', async (t) => {
  const { a, b } = await twoMounts(t)
  const holder = holdLock(t, a.at('/shared/data.bin'), 'fcntl.lockf(f, fcntl.LOCK_EX, 0, 0)')
  await holder.holding
  const waiter = await waitingForLock(t, (flag) => ['python3', '-c', fcntlWaiter(b.at('/shared/data.bin'), flag)])
  waiter.say('A gave the lock back\n')
  t.equal(await holder.release(), 0, 'A closes its file')
  t.equal(await waiter.exited, 0, `B's F_SETLKW returns (${waiter.output()})`)
  t.equal(waiter.output(), 'A gave the lock back\n', 'only after A closed')
})

t.test('the locks of a mount that dies are freed when its lease runs out', async (t) => {
  const { a, b } = await twoMounts(t, { leaseMs: 1500 })
  const holder = holdLock(t, a.at('/shared/guard'), 'fcntl.flock(f, fcntl.LOCK_EX)')
  await holder.holding
  const before = await run('flock', ['-n', b.at('/shared/guard'), 'true'])
  t.equal(before.code, 1, `while mount A lives, B is refused (${outcome(before)})`)
  a.daemon.kill('SIGKILL')
  await a.exited
  const after = await run('flock', ['-w', '30', b.at('/shared/guard'), 'true'], { timeoutMs: 40_000 })
  t.equal(after.code, 0, `once A's lease ran out, a waiting flock through B gets the lock (${outcome(after)})`)
  process.kill(holder.pid, 'SIGKILL')
})

/*
 * Each increment takes a flock on a guard file before it opens the database and gives it back
 * after closing it: flock and sqlite's fcntl locks together, through two mounts, one
 * connection per increment. (sqlite's own locks suffice too, with connections that stay
 * open: mount-sqlite.test.ts.)
 * The default journal mode (DELETE): each commit creates and unlinks the journal, through
 * the two mounts in turn.
 */
t.test('two processes incrementing a counter in one sqlite database through two mounts, under a flock, lose no increment', async (t) => {
  const { a, b } = await twoMounts(t)
  const create = await run('python3', ['-c', `import sqlite3\ndb = sqlite3.connect(${JSON.stringify(a.at('/shared/counter.db'))})\ndb.execute('create table counter (n integer)')\ndb.execute('insert into counter values (0)')\ndb.commit()\ndb.close()\n`], { timeoutMs: 30_000 })
  t.equal(create.code, 0, `the database is made through mount A (${outcome(create)})`)
  const rounds = 15
  const incrementer = (file: string): string => `import sqlite3, fcntl\nfor i in range(${rounds}):\n    g = open(${JSON.stringify(file.replace('counter.db', 'guard'))}, 'r+')\n    fcntl.flock(g, fcntl.LOCK_EX)\n    db = sqlite3.connect(${JSON.stringify(file)}, timeout=60, isolation_level=None)\n    db.execute('begin immediate')\n    (n,) = db.execute('select n from counter').fetchone()\n    db.execute('update counter set n = ?', (n + 1,))\n    db.execute('commit')\n    db.close()\n    g.close()\n`
  const [ra, rb] = await Promise.all([
    run('python3', ['-c', incrementer(a.at('/shared/counter.db'))], { timeoutMs: 120_000 }),
    run('python3', ['-c', incrementer(b.at('/shared/counter.db'))], { timeoutMs: 120_000 })
  ])
  t.equal(ra.code, 0, `the incrementer on A finishes (${outcome(ra)})`)
  t.equal(rb.code, 0, `the incrementer on B finishes (${outcome(rb)})`)
  const count = await run('python3', ['-c', `import sqlite3\nprint(sqlite3.connect(${JSON.stringify(b.at('/shared/counter.db'))}).execute('select n from counter').fetchone()[0])`])
  t.equal(count.stdout.trim(), String(2 * rounds), `every increment of both is counted (${outcome(count)})`)
})

/*
 * A mount alone on a file keeps its locks delegated after its programs let go (no request for
 * the next). Unmounting must hand them back before the daemon exits, however the unmount came
 * (SIGTERM, or fusermount -u behind its back): otherwise the other mount's programs are refused
 * until the gone mount's lease runs out (30 s here), as sqlite's "database is locked".
 */
t.test('an unmounted mount gives its delegated locks back before it exits, however it was unmounted', async (t) => {
  const cluster = await startTestCluster(t, [{ 'shared/guard': 'guard\n', 'shared/other': 'other\n' }])
  const b = await mountCluster(t, cluster)
  for (const [how, file] of [['SIGTERM', '/shared/guard'], ['fusermount -u', '/shared/other']] as const) {
    const a = await mountCluster(t, cluster)
    for (let i = 0; i < 3; i++) {
      const used = await run('flock', [a.at(file), 'true'])
      t.equal(used.code, 0, `a program on A takes and gives back a flock (${outcome(used)})`)
    }
    if (how === 'SIGTERM') a.daemon.kill('SIGTERM')
    else t.equal((await run('fusermount', ['-u', a.mountpoint])).code, 0, 'fusermount -u unmounts A')
    await a.exited
    const tryB = await run('flock', ['-n', b.at(file), 'true'])
    t.equal(tryB.code, 0, `after A was unmounted (${how}), flock -n through B gets the lock at once (${outcome(tryB)}); A printed: ${a.output()}`)
  }
})
