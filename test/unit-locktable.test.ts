import t from 'tap'
import { MemoryLockStore } from '../servers/lock/lockStore'
import { LockTable } from '../servers/lock/lockTable'
import { LeaseError, LockedError, NotFoundError } from '../src/shared/errors'

/*
 * The lock server's table on its own, on a clock the test moves by hand, so leases expire
 * exactly when the test says and never because the machine was slow.
 */

/** The LockedError an acquire was refused with (fails the test if it was granted or failed otherwise). */
async function refusal (acquire: Promise<unknown>): Promise<LockedError> {
  const err = await acquire.then(() => null, (e: unknown) => e)
  if (!(err instanceof LockedError)) throw new Error(`expected LOCKED, got ${String(err)}`)
  return err
}

function tableAt (start = 1_000_000): { table: LockTable, clock: { now: number }, store: MemoryLockStore } {
  const clock = { now: start }
  const store = new MemoryLockStore()
  return { table: new LockTable(store, () => clock.now), clock, store }
}

t.test('keys are implicit: a path\'s key is made free at its first acquire; creating is idempotent', async (t) => {
  const { table } = tableAt()
  t.same(await table.status('/a'), { path: '/a', held: false }, 'a path never asked about is free')
  t.equal(await table.createKeys(['/a', '/b']), 2)
  t.equal(await table.createKeys(['/a', '/c']), 1, 'only /c is new')
  t.same(await table.status('/a'), { path: '/a', held: false })
  const implicit = await table.acquire('/new', 'alice', 1000)
  t.match(implicit, { path: '/new', owner: 'alice' }, 'a path without a key is granted: its key is made')
  await t.rejects(table.acquire('/new', 'bob', 1000), LockedError, 'and held like any other')
  await table.deleteKey('/new')
  t.same(await table.status('/new'), { path: '/new', held: false }, 'a deleted key takes its lease with it')
  await t.rejects(table.renew('/new', implicit), NotFoundError, 'the old holder cannot renew it')
  t.equal(await table.deleteKeys(['/b', '/c', '/never']), 2, 'counts only keys that existed')
})

t.test('a key deleted when free goes at once if nobody holds it, else when its lease is released or ended', async (t) => {
  const { table, clock, store } = tableAt()
  await table.createKeys(['/free'])
  t.ok(await table.deleteKeyWhenFree('/free'), 'a free key goes now')
  t.equal(await store.get('/free'), undefined)

  const kept = await table.acquire('/journal', 'alice', 1000)
  t.notOk(await table.deleteKeyWhenFree('/journal'), 'a held key stays while its lease runs')
  t.match(await table.status('/journal'), { held: true, owner: 'alice' }, 'with its lease, still good for the path\'s next file')
  await table.renew('/journal', kept)
  await table.release('/journal', kept)
  t.equal(await store.get('/journal'), undefined, 'released, the key is gone')
  t.match(await table.acquire('/journal', 'bob', 1000), { owner: 'bob' }, 'and made again by the next acquire (keys are implicit)')

  // A lease its holder stopped renewing (the client died): ended by the lock server.
  const dead = await table.acquire('/other', 'carol', 1000)
  t.notOk(await table.deleteKeyWhenFree('/other'))
  clock.now += 500
  t.ok(await table.endUnrenewed('/other', dead.token, clock.now), 'ended unrenewed')
  t.equal(await store.get('/other'), undefined, 'and its key goes with it')

  // Marked, then given to someone else before the release lands: only a free key is removed.
  const first = await table.acquire('/race', 'dave', 1000)
  t.notOk(await table.deleteKeyWhenFree('/race'))
  await table.deleteKeys(['/race'])
  const second = await table.acquire('/race', 'erin', 1000)
  t.ok(second.token > first.token)
  await t.rejects(table.release('/race', first), LeaseError, 'the old lease went with the key deleted outright')
  t.match(await table.status('/race'), { held: true, owner: 'erin' }, 'the new holder keeps key and lease')
})

t.test('a key deleted if free goes only if no lease holds it; a missing key counts as gone', async (t) => {
  const { table, clock, store } = tableAt()
  t.ok(await table.deleteKeyIfFree('/never'), 'no key: nothing holds the file')
  await table.createKeys(['/free'])
  t.ok(await table.deleteKeyIfFree('/free'), 'a free key goes')
  t.equal(await store.get('/free'), undefined)

  const held = await table.acquire('/held', 'alice', 1000)
  t.notOk(await table.deleteKeyIfFree('/held'), 'a held key stays')
  t.match(await table.status('/held'), { held: true, owner: 'alice' }, 'with its lease, as it was')
  await table.release('/held', held)
  t.ok(await table.deleteKeyIfFree('/held'), 'released, it goes')
  t.match(await table.acquire('/held', 'bob', 1000), { owner: 'bob' }, 'and the next acquire makes it again')

  // A lease that ran out unreleased still counts: the remover takes the lease, as acquire ends a lapsed one.
  await table.acquire('/lapsed', 'carol', 1000)
  clock.now += 2000
  t.notOk(await table.deleteKeyIfFree('/lapsed'), 'a lapsed lease keeps the key here')
  t.match(await table.acquire('/lapsed', 'dave', 1000), { owner: 'dave' }, 'an acquire takes it over')
})

t.test('a lease goes to one holder at a time, with a fencing token that grows', async (t) => {
  const { table, clock } = tableAt()
  await table.createKeys(['/a', '/b'])
  const lease = await table.acquire('/a', 'alice', 1000)
  t.match(lease, { path: '/a', owner: 'alice', ttlMs: 1000, expiresAt: clock.now + 1000 })
  t.ok(Number.isSafeInteger(lease.token), 'the token is a safe integer')
  t.same(await table.status('/a'), { path: '/a', held: true, owner: 'alice', expiresInMs: 1000 })

  const refused = await refusal(table.acquire('/a', 'bob', 1000))
  t.match(refused.details, { path: '/a', holder: 'alice', retryAfterMs: 1000 })
  // Not re-entrant: a second acquire by the holder is refused like anyone's, so one owner
  // never holds two live tokens for one key.
  await t.rejects(table.acquire('/a', 'alice', 1000), LockedError, 'not even its holder gets it twice')

  const other = await table.acquire('/b', 'bob', 1000)
  t.ok(other.token > lease.token, 'tokens grow across keys')
  await table.release('/a', lease)
  clock.now += 2000 // bob's wait on /a (as a refused waiter) is long forgotten
  const again = await table.acquire('/a', 'carol', 1000)
  t.ok(again.token > other.token, 'and with every grant')
})

t.test('a lease not renewed expires, and its token stops counting', async (t) => {
  const { table, clock } = tableAt()
  await table.createKeys(['/a'])
  const lease = await table.acquire('/a', 'alice', 1000)
  clock.now += 999
  await t.resolves(table.check('/a', lease.token, lease.secret), 'live until its end')
  t.equal((await table.status('/a')).expiresInMs, 1)
  clock.now += 1
  t.same(await table.status('/a'), { path: '/a', held: false }, 'free at expiresAt')
  await t.rejects(table.check('/a', lease.token, lease.secret), LeaseError)
  await t.rejects(table.renew('/a', lease), LeaseError, 'too late to renew')
  await t.rejects(table.release('/a', lease), LeaseError, 'nothing to release')

  const next = await table.acquire('/a', 'bob', 1000)
  t.ok(next.token > lease.token, 'the next holder is fenced above the old one')
  await t.rejects(table.check('/a', lease.token, lease.secret), LeaseError, 'the old token is refused while bob holds the key')
})

t.test('renew pushes the end of a lease out by its ttl', async (t) => {
  const { table, clock } = tableAt()
  await table.createKeys(['/a'])
  const lease = await table.acquire('/a', 'alice', 1000)
  clock.now += 900
  const renewed = await table.renew('/a', lease)
  t.equal(renewed.token, lease.token, 'the same token')
  t.equal(renewed.expiresAt, clock.now + 1000)
  clock.now += 900 // 1800 ms after the grant: expired without the renewal
  await t.resolves(table.check('/a', lease.token, lease.secret))
  await t.rejects(table.check('/a', lease.token, 'A'.repeat(lease.secret.length)), LeaseError, 'the right token with a wrong secret is refused')
  await t.rejects(table.acquire('/a', 'bob', 1000), LockedError)
  await t.rejects(table.renew('/a', { ...lease, token: lease.token + 1 }), LeaseError, 'a wrong token renews nothing')
})

t.test('release frees the key for the next owner; only the holder\'s token releases', async (t) => {
  const { table } = tableAt()
  await table.createKeys(['/a'])
  const lease = await table.acquire('/a', 'alice', 1000)
  await t.rejects(table.release('/a', { ...lease, token: lease.token - 1 }), LeaseError, 'a wrong token')
  const guessed = { token: lease.token, secret: 'A'.repeat(lease.secret.length) }
  await t.rejects(table.release('/a', guessed), LeaseError, 'the right token with a wrong secret releases nothing')
  await t.rejects(table.renew('/a', guessed), LeaseError, 'nor renews')
  t.equal((await table.status('/a')).held, true, 'the refused release changed nothing')
  await table.release('/a', lease)
  t.same(await table.status('/a'), { path: '/a', held: false })
  await t.rejects(table.release('/a', lease), LeaseError, 'twice')
  await t.rejects(table.check('/a', lease.token, lease.secret), LeaseError)
  t.equal((await table.acquire('/a', 'bob', 1000)).owner, 'bob')
})

t.test('a freed key goes to the longest waiter still asking', async (t) => {
  const { table, clock } = tableAt()
  await table.createKeys(['/a'])
  const lease = await table.acquire('/a', 'alice', 1000)
  await t.rejects(table.acquire('/a', 'bob', 1000), LockedError, 'bob waits')
  clock.now += 10
  await t.rejects(table.acquire('/a', 'carol', 1000), LockedError, 'carol waits after bob')
  await table.release('/a', lease)

  const promised = await refusal(table.acquire('/a', 'alice', 1000))
  t.equal(promised.details.holder, 'bob')
  await t.rejects(table.acquire('/a', 'carol', 1000), LockedError, 'nor can carol jump the queue')
  const bobs = await table.acquire('/a', 'bob', 1000)
  t.equal(bobs.owner, 'bob')
  await table.release('/a', bobs)
  t.equal((await table.acquire('/a', 'carol', 1000)).owner, 'carol', 'then carol, who asked next')
})

t.test('a waiter silent for over a second has given up', async (t) => {
  const { table, clock } = tableAt()
  await table.createKeys(['/a'])
  const lease = await table.acquire('/a', 'alice', 5000)
  await t.rejects(table.acquire('/a', 'bob', 1000), LockedError)
  await table.release('/a', lease)
  clock.now += 1000
  await t.rejects(table.acquire('/a', 'alice', 1000), LockedError, 'at exactly 1000 ms bob still counts')
  clock.now += 1001 // alice's refusal just now made her a waiter too: let her lapse as well
  t.equal((await table.acquire('/a', 'carol', 1000)).owner, 'carol', 'everyone silent: the key goes to whoever asks')
})

t.test('tokens of a new table (a restarted lock server) start above the old one\'s', async (t) => {
  const before = new LockTable()
  await before.createKeys(['/a'])
  let last = 0
  for (let i = 0; i < 100; i++) {
    const lease = await before.acquire('/a', 'alice', 1000)
    await before.release('/a', lease)
    last = lease.token
  }
  // The first token is the clock in microseconds: a table made in a later millisecond is above.
  const started = Date.now()
  while (Date.now() === started) await new Promise((resolve) => setTimeout(resolve, 1))
  const after = new LockTable()
  await after.createKeys(['/a'])
  t.ok((await after.acquire('/a', 'alice', 1000)).token > last, 'a file server that saw the old tokens accepts the new ones')
})
