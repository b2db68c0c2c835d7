import type { Response } from 'express'
import t from 'tap'
import { CallbackTable } from '../servers/file/callbacks'
import { DelegatedLeases } from '../servers/lock/delegatedLeases'
import { LockTable } from '../servers/lock/lockTable'
import { MemoryLockStore } from '../servers/lock/lockStore'

/*
 * When the lock server may end a delegated write lease whose client is gone
 * (servers/lock/delegatedLeases.ts), on clocks the test moves: not while the client is live,
 * not before one more callback lease has passed after the one it had, not before every trust
 * a file server was given in a check has run out, and (LockTable.endUnrenewed) not when the
 * lease was renewed since the client went silent.
 */

const CALLBACK_LEASE_MS = 1_000

/** Both clocks of the lock server, moved together by the test. */
class Clocks {
  mono = 1_000_000
  wall = 1_800_000_000_000
  advance (ms: number): void {
    this.mono += ms
    this.wall += ms
  }
}

function channel (): Response {
  return { write: () => true, end: () => {} } as unknown as Response
}

function setUp (): { clocks: Clocks, table: CallbackTable, leases: DelegatedLeases, open: Response } {
  const clocks = new Clocks()
  const table = new CallbackTable(CALLBACK_LEASE_MS, undefined, () => clocks.mono)
  const leases = new DelegatedLeases(table, () => clocks.mono, () => clocks.wall)
  table.renew('c1', 'alice')
  const open = channel()
  table.attach('c1', open)
  leases.granted('/f', 7, 'c1', 'alice')
  return { clocks, table, leases, open }
}

t.test('a live client\'s delegated lease is never abandoned', async (t) => {
  const { clocks, table, leases } = setUp()
  for (let i = 0; i < 10; i++) {
    clocks.advance(CALLBACK_LEASE_MS / 2)
    table.renew('c1', 'alice')
    t.equal(leases.abandoned('/f'), undefined)
  }
})

t.test('a client whose channel closed: its lease may end one callback lease after the one it had would have run out', async (t) => {
  const { clocks, table, leases, open } = setUp()
  clocks.advance(400)
  const closedAt = clocks.wall
  table.detach('c1', open)
  // It had 600 ms of callback lease left, then one more lease: 1600 ms.
  clocks.advance(1_599)
  t.equal(leases.abandoned('/f'), undefined, 'not before')
  clocks.advance(1)
  t.same(leases.abandoned('/f'), { token: 7, silentSince: closedAt }, 'then, with the lease renewed before the close not counting')
  t.equal(leases.abandoned('/g'), undefined, 'a path delegated to nobody is nobody\'s')
})

t.test('a client that comes back (renews its callback lease) keeps its leases', async (t) => {
  const { clocks, table, leases, open } = setUp()
  table.detach('c1', open)
  clocks.advance(500)
  table.renew('c1', 'alice')
  clocks.advance(900)
  table.renew('c1', 'alice')
  clocks.advance(5_000)
  table.renew('c1', 'alice')
  t.equal(leases.abandoned('/f'), undefined)
})

t.test('a client whose callback lease lapsed unrenewed: silent since the lapse, noticed when asked', async (t) => {
  const { clocks, leases } = setUp()
  const lapsedAt = clocks.wall + CALLBACK_LEASE_MS
  clocks.advance(CALLBACK_LEASE_MS + 500)
  t.equal(leases.abandoned('/f'), undefined, 'half a lease after the lapse')
  clocks.advance(500)
  t.same(leases.abandoned('/f'), { token: 7, silentSince: lapsedAt }, 'a whole one after it')
})

t.test('a file server\'s trust in a check holds the end back until it runs out', async (t) => {
  const { clocks, table, leases, open } = setUp()
  t.equal(leases.vouch('/f', 7, 30_000), 2 * CALLBACK_LEASE_MS, 'trust is at most two callback leases')
  t.equal(leases.vouch('/f', 7, 300), 300, 'and never past the lease\'s end')
  clocks.advance(900)
  t.equal(leases.vouch('/f', 7, 30_000), 2 * CALLBACK_LEASE_MS)
  const trustedUntil = clocks.mono + 2 * CALLBACK_LEASE_MS
  table.detach('c1', open)
  clocks.advance(trustedUntil - clocks.mono - 1)
  t.equal(leases.abandoned('/f'), undefined, 'not while the last check is trusted')
  clocks.advance(1)
  t.equal(leases.abandoned('/f')?.token, 7)
  t.equal(leases.vouch('/f', 8, 30_000), 2 * CALLBACK_LEASE_MS, 'another token is answered but not remembered')
  t.notOk(leases.isDelegated('/f', 8))
  leases.ended('/f')
  t.equal(leases.abandoned('/f'), undefined, 'a released lease is no longer delegated')
})

t.test('the lock table ends a lease only if it was not renewed since the client went silent', async (t) => {
  let now = 1_800_000_000_000
  const locks = new LockTable(new MemoryLockStore(), () => now)
  const lease = await locks.acquire('/f', 'holder', 60_000)
  now += 1_000
  const silentSince = now
  now += 500
  await locks.renew('/f', lease)
  t.notOk(await locks.endUnrenewed('/f', lease.token, silentSince), 'renewed after: kept')
  t.ok((await locks.status('/f')).held)
  t.notOk(await locks.endUnrenewed('/f', lease.token + 1, now + 1), 'another token: nothing ended')
  t.ok(await locks.endUnrenewed('/f', lease.token, now + 1), 'renewed before: ended')
  t.notOk((await locks.status('/f')).held, 'the key is free')
  const next = await locks.acquire('/f', 'next', 60_000)
  t.ok(next.token > lease.token, 'and its next lease has a higher token')
})
