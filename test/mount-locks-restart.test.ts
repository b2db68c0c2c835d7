import t from 'tap'
import { blockedOnMount, holdLock, tryLocks } from './helpers/advisoryLocks'
import { outcome, run } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'

/*
 * fcntl and flock locks over a restart of the lock server (every server and mount a process
 * of its own; the lock server keeps its journal). It keeps no advisory lock itself: after a
 * restart it grants none for a grace (ADVISORY_GRACE_MS), while the mounts, whose event
 * channel to it closed and opened again, hand back what they hold. So a lock a program held
 * before the restart still keeps every other mount out after it: two mounts' sqlite cannot
 * both think they own the database.
 */

const exclusive = (length: number, start: number): string => `fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, ${length}, ${start})`

t.test('locks held on two mounts before the lock server restarts still keep the other mount out after it', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'db/app.db': 'x'.repeat(200), 'db/app.lock': '' }] })
  const a = await c.mount()
  const b = await c.mount()
  // A alone on app.lock: the lock server leaves its locks to A (a delegation).
  const aFlock = holdLock(t, a.at('/db/app.lock'), 'fcntl.flock(f, fcntl.LOCK_EX)')
  await aFlock.holding
  // Both mounts on app.db, each on bytes of its own: held on the lock server itself.
  const aBytes = holdLock(t, a.at('/db/app.db'), 'fcntl.lockf(f, fcntl.LOCK_EX, 4, 0)')
  await aBytes.holding
  const bBytes = holdLock(t, b.at('/db/app.db'), 'fcntl.lockf(f, fcntl.LOCK_SH, 4, 100)')
  await bBytes.holding
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
  const c = await startProcessCluster(t, { trees: [{ 'db/app.db': 'x'.repeat(200) }] })
  const a = await c.mount()
  const b = await c.mount()
  const aGivesBack = holdLock(t, a.at('/db/app.db'), 'fcntl.lockf(f, fcntl.LOCK_EX, 4, 0)')
  await aGivesBack.holding
  const aKeeps = holdLock(t, a.at('/db/app.db'), 'fcntl.lockf(f, fcntl.LOCK_EX, 4, 10)')
  await aKeeps.holding
  // B on the file too, so A's locks are held on the server rather than left to A.
  const bBytes = holdLock(t, b.at('/db/app.db'), 'fcntl.lockf(f, fcntl.LOCK_SH, 4, 100)')
  await bBytes.holding
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
