import t from 'tap'
import { AdvisoryLockTable } from '../src/shared/advisoryTable'
import type { AdvisoryClaim } from '../src/shared/advisoryTable'

/*
 * The advisory lock table on its own, on a clock the test moves by hand: fcntl's split and
 * merge rules, flock beside fcntl, and sessions that run out.
 */

function tableAt (): { table: AdvisoryLockTable, clock: { now: number } } {
  const clock = { now: 1_000_000 }
  return { table: new AdvisoryLockTable(() => clock.now), clock }
}

const posix = (session: string, owner: string, type: AdvisoryClaim['type'], start: number, end = Infinity): AdvisoryClaim =>
  ({ session, owner, kind: 'posix', type, start, end })
const flock = (session: string, owner: string, type: AdvisoryClaim['type']): AdvisoryClaim =>
  ({ session, owner, kind: 'flock', type, start: 0, end: Infinity })

/** The owner's ranges as "type:start-end" ("end" for to the end of the file). */
function rangesOf (table: AdvisoryLockTable, path: string, session: string, owner: string): string[] {
  return table.locksOn(path).filter((l) => l.session === session && l.owner === owner && l.kind === 'posix')
    .map((l) => `${l.type}:${l.start}-${l.length === 0 ? 'end' : l.start + l.length - 1}`)
}

t.test('fcntl ranges of one owner split where an unlock or a new type cuts them, and merge when they touch', async (t) => {
  const { table } = tableAt()
  table.touch('m1', 1000)
  table.set('/f', posix('m1', 'p', 'write', 0, 99))
  table.set('/f', posix('m1', 'p', 'unlock', 40, 59))
  t.same(rangesOf(table, '/f', 'm1', 'p'), ['write:0-39', 'write:60-99'], 'an unlock in the middle splits the range')
  table.set('/f', posix('m1', 'p', 'read', 30, 69))
  t.same(rangesOf(table, '/f', 'm1', 'p'), ['write:0-29', 'read:30-69', 'write:70-99'], 'a new type replaces what it covers')
  table.set('/f', posix('m1', 'p', 'write', 30, 69))
  t.same(rangesOf(table, '/f', 'm1', 'p'), ['write:0-99'], 'touching ranges of one type merge')
  table.set('/f', posix('m1', 'p', 'write', 100))
  t.same(rangesOf(table, '/f', 'm1', 'p'), ['write:0-end'], 'and run to the end of the file')
  t.equal(table.held('m1'), 1)
  table.set('/f', posix('m1', 'p', 'unlock', 0))
  t.same(table.locksOn('/f'), [], 'an unlock of everything leaves nothing')
  t.equal(table.held('m1'), 0)
})

t.test('conflicts: other owners only, overlapping bytes only, and never read with read', async (t) => {
  const { table } = tableAt()
  table.touch('m1', 1000)
  table.touch('m2', 1000)
  table.set('/f', posix('m1', 'p', 'write', 0, 9))
  table.set('/f', posix('m1', 'p', 'read', 20, 29))
  t.match(table.conflict('/f', posix('m2', 'p', 'read', 5, 14)), { session: 'm1', type: 'write', start: 0, length: 10 }, 'overlap with a write lock')
  t.equal(table.conflict('/f', posix('m2', 'p', 'write', 10, 19)), null, 'the bytes between are free')
  t.equal(table.conflict('/f', posix('m2', 'p', 'read', 25, 40)), null, 'read beside read')
  t.match(table.conflict('/f', posix('m2', 'p', 'write', 29, 29)), { type: 'read', start: 20 }, 'write over read')
  t.equal(table.conflict('/f', posix('m1', 'p', 'write', 0)), null, 'an owner never conflicts with itself')
  t.match(table.conflict('/f', posix('m1', 'q', 'write', 0)), { owner: 'p' }, 'another owner of the same mount does')
  t.equal(table.conflict('/f', flock('m2', 'p', 'write')), null, 'flock and fcntl locks do not conflict')
  t.equal(table.conflict('/other', posix('m2', 'p', 'write', 0)), null, 'nor do other files')
})

t.test('flock: shared beside shared, exclusive alone, one lock per owner', async (t) => {
  const { table } = tableAt()
  table.touch('m1', 1000)
  table.touch('m2', 1000)
  table.set('/f', flock('m1', 'o', 'read'))
  t.equal(table.conflict('/f', flock('m2', 'o', 'read')), null)
  t.match(table.conflict('/f', flock('m2', 'o', 'write')), { session: 'm1', kind: 'flock', type: 'read' })
  table.set('/f', flock('m1', 'o', 'write'))
  t.equal(table.locksOn('/f').length, 1, 'a conversion replaces the owner\'s lock')
  table.set('/f', flock('m1', 'o', 'unlock'))
  t.same(table.locksOn('/f'), [])
})

t.test('a session that is not renewed loses all its locks at once; one that is renewed keeps them', async (t) => {
  const { table, clock } = tableAt()
  table.touch('dead', 1000)
  table.touch('live', 1000)
  table.set('/a', posix('dead', 'p', 'write', 0))
  table.set('/b', flock('dead', 'o', 'write'))
  table.set('/c', posix('live', 'p', 'write', 0))
  clock.now += 900
  t.ok(table.renew('live', 1000), 'the live session renews')
  t.same(table.expire(), [], 'nothing ran out yet')
  clock.now += 200
  t.same(table.expire().sort(), ['/a', '/b'], 'the dead session\'s paths are freed')
  t.equal(table.conflict('/a', posix('live', 'p', 'write', 0)), null)
  t.notOk(table.renew('dead', 1000), 'it is no longer known')
  t.equal(table.held('live'), 1, 'the live one kept its lock')
  t.same(table.end('live'), ['/c'], 'ending a session frees its paths')
  t.same(table.locksOn('/c'), [])
})
