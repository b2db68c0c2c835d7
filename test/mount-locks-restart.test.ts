import t from 'tap'
import type { Test } from 'tap'
import { blockedOnMount, holdLock, tryLocks } from './helpers/advisoryLocks'
import type { Holder } from './helpers/advisoryLocks'
import { outcome, run } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import type { MountProcess, ProcessCluster } from './helpers/processCluster'

/*
 * fcntl and flock locks over a restart of the lock server (every server and mount a process
 * of its own; the lock server keeps its journal). It keeps no advisory lock itself: after a
 * restart it grants none for a grace (ADVISORY_GRACE_MS), while the mounts, whose event
 * channel to it closed and opened again, hand back what they hold. So a lock a program held
 * before the restart still keeps every other mount out after it: two mounts' sqlite cannot
 * both think they own the database.
 */

const exclusive = (length: number, start: number): string => `fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, ${length}, ${start})`
/** The lock a program on mount B holds on app.db in both tests: A's locks there are then held on the server, not left to A. */
const B_SHARED = 'fcntl.lockf(f, fcntl.LOCK_SH, 4, 100)'

/** A cluster of processes (the lock server with its journal) and two mounts of it. */
async function twoMounts (t: Test, tree: Record<string, string>): Promise<{ c: ProcessCluster, a: MountProcess, b: MountProcess }> {
  const c = await startProcessCluster(t, { trees: [tree] })
  return { c, a: await c.mount(), b: await c.mount() }
}

/** A program holding a lock through a mount, once it holds it. */
async function held (t: Test, file: string, lockCode: string): Promise<Holder> {
  const holder = holdLock(t, file, lockCode)
  await holder.holding
  return holder
}

t.test('locks held on two mounts before the lock server restarts still keep the other mount out after it', async (t) => {
  const { c, a, b } = await twoMounts(t, { 'db/app.db': 'x'.repeat(200), 'db/app.lock': '' })
  // A alone on app.lock: the lock server leaves its locks to A (a delegation).
  const aFlock = await held(t, a.at('/db/app.lock'), 'fcntl.flock(f, fcntl.LOCK_EX)')
  // Both mounts on app.db, each on bytes of its own: held on the lock server itself.
  const aBytes = await held(t, a.at('/db/app.db'), 'fcntl.lockf(f, fcntl.LOCK_EX, 4, 0)')
  const bBytes = await held(t, b.at('/db/app.db'), B_SHARED)
  t.same(await tryLocks(b.at('/db/app.db'), [{ name: 'A\'s bytes', code: exclusive(4, 0) }]), ['A\'s bytes:EAGAIN'], 'before the restart, B is kept off A\'s bytes')

  await c.lock.restart()

  t.same(await tryLocks(b.at('/db/app.db'), [{ name: 'A\'s bytes', code: exclusive(4, 0) }, { name: 'free bytes', code: exclusive(4, 50) }]),
    ['A\'s bytes:EAGAIN', 'free bytes:granted'], 'after it, B is still kept off A\'s bytes (and only those)')
  t.same(await tryLocks(a.at('/db/app.db'), [{ name: 'B\'s bytes', code: exclusive(4, 100) }]), ['B\'s bytes:EAGAIN'], 'and A off B\'s')
  const flockOnB = await run('flock', ['-n', b.at('/db/app.lock'), 'true'], { timeoutMs: 30_000 })
  t.equal(flockOnB.code, 1, `B's flock -n of the file A held by delegation fails: ${outcome(flockOnB)}`)

  // Given back, they are free for the other mount.
  t.equal(await aBytes.release(), 0)
  t.equal(await aFlock.release(), 0)
  t.same(await tryLocks(b.at('/db/app.db'), [{ name: 'A\'s bytes', code: exclusive(4, 0) }]), ['A\'s bytes:granted'], 'once A lets go, B gets them')
  const flockAfter = await run('flock', ['-n', b.at('/db/app.lock'), 'true'], { timeoutMs: 30_000 })
  t.equal(flockAfter.code, 0, outcome(flockAfter))
  t.equal(await bBytes.release(), 0)
  t.notMatch(a.output() + b.output(), /are lost/, 'no mount says its locks were lost')
})

t.test('a lock given back while the lock server is down is free once it is back, and the mount\'s other locks are still held', async (t) => {
  const { c, a, b } = await twoMounts(t, { 'db/app.db': 'x'.repeat(200) })
  const aGivesBack = await held(t, a.at('/db/app.db'), 'fcntl.lockf(f, fcntl.LOCK_EX, 4, 0)')
  const aKeeps = await held(t, a.at('/db/app.db'), 'fcntl.lockf(f, fcntl.LOCK_EX, 4, 10)')
  const bBytes = await held(t, b.at('/db/app.db'), B_SHARED)
  await c.lock.kill()
  // One of A's programs closes the file: its unlock waits for the lock server (a hard mount)
  // and lands as soon as it is back, often before A has noticed the restart.
  const released = aGivesBack.release()
  await blockedOnMount(aGivesBack.pid)
  await c.lock.restart()
  t.equal(await released, 0, 'the close returned once the lock server was back')
  t.same(await tryLocks(b.at('/db/app.db'), [{ name: 'given back', code: exclusive(4, 0) }, { name: 'kept', code: exclusive(4, 10) }]),
    ['given back:granted', 'kept:EAGAIN'], 'B gets the bytes A gave back, and not those A still holds')
  t.equal(await aKeeps.release(), 0)
  t.equal(await bBytes.release(), 0)
})

/*
 * The grace waits only for the mounts on the server's record of holders, and only until
 * each has said it is done. The grace is two minutes here: a lock asked for in its time
 * would wait it out, and the run's 30 s timeout would fail the test.
 */
const LONG_GRACE = ['--advisory-grace-ms', '120000']

t.test('the grace after a restart ends once the mounts that held locks have taken them back', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'db/app.lock': '', 'db/other.lock': '' }], lockArgs: LONG_GRACE })
  const a = await c.mount()
  const b = await c.mount()
  const aFlock = await held(t, a.at('/db/app.lock'), 'fcntl.flock(f, fcntl.LOCK_EX)')
  await c.lock.restart()
  const kept = await run('flock', ['-n', b.at('/db/app.lock'), 'true'], { timeoutMs: 30_000 })
  t.equal(kept.code, 1, `B's flock -n of what A held fails at once, not after the grace: ${outcome(kept)}`)
  const other = await run('flock', ['-n', b.at('/db/other.lock'), 'true'], { timeoutMs: 30_000 })
  t.equal(other.code, 0, `and B gets a lock nobody held: ${outcome(other)}`)
  t.equal(await aFlock.release(), 0)
  const after = await run('flock', ['-n', b.at('/db/app.lock'), 'true'], { timeoutMs: 30_000 })
  t.equal(after.code, 0, `once A lets go, B gets it: ${outcome(after)}`)
})

t.test('a mount that had let go of its locks before the restart says so too: no grace to wait out', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'db/app.lock': '' }], lockArgs: LONG_GRACE })
  const a = await c.mount()
  const b = await c.mount()
  // A takes and gives back a lock: its session lives on for a while, on the server's record.
  const once = await run('flock', ['-n', a.at('/db/app.lock'), 'true'], { timeoutMs: 30_000 })
  t.equal(once.code, 0, outcome(once))
  await c.lock.restart()
  const taken = await run('flock', ['-n', b.at('/db/app.lock'), 'true'], { timeoutMs: 30_000 })
  t.equal(taken.code, 0, `B's flock -n is granted once A has said it holds nothing: ${outcome(taken)}`)
})

t.test('after a restart with no fcntl or flock lock on record there is no grace at all', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'db/app.lock': '', 'data.txt': 'a\n' }], lockArgs: LONG_GRACE })
  const a = await c.mount()
  // A lease of a write: the lock server's journal has state, so its start is a restart.
  const write = await run('/bin/sh', ['-c', `echo b > ${a.at('/data.txt')}`], { timeoutMs: 30_000 })
  t.equal(write.code, 0, outcome(write))
  await c.lock.restart()
  const taken = await run('flock', ['-n', a.at('/db/app.lock'), 'true'], { timeoutMs: 30_000 })
  t.equal(taken.code, 0, `a lock is granted at once: ${outcome(taken)}`)
})
