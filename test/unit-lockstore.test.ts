import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { JOURNAL_FILE, JournalCorruptError, JournalLockStore, OWNER_FILE, StateDirInUseError } from '../servers/lock/journalStore'
import { MemoryLockStore } from '../servers/lock/lockStore'
import type { LockStore, StoredLease } from '../servers/lock/lockStore'
import { LockTable } from '../servers/lock/lockTable'
import { LeaseError, LockedError } from '../src/shared/errors'
import { waitFor } from './helpers/waitFor'

/*
 * The lock server's stores on their own: what every LockStore promises (run against each),
 * then what the journal adds: its state survives a restart and a crash, a torn last line is
 * dropped, it compacts, and it is never shared by two lock servers.
 */

function stateDir (t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-lockstore-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function opened (t: Test, store: LockStore): Promise<LockStore> {
  await store.load()
  t.teardown(async () => await store.close())
  return store
}

/** What a crash leaves: the files as they are on disk, read by a new store elsewhere (the old one is never closed). */
function crashCopy (t: Test, from: string): string {
  const to = stateDir(t)
  fs.copyFileSync(path.join(from, JOURNAL_FILE), path.join(to, JOURNAL_FILE))
  return to
}

const lease = (token: number, expiresAt = Date.now() + 30_000): StoredLease => ({ owner: 'alice', token, secret: 'secret-of-' + String(token), ttlMs: 30_000, expiresAt })

const kinds: Array<[string, (t: Test) => LockStore]> = [
  ['memory', () => new MemoryLockStore()],
  ['journal', (t) => new JournalLockStore(stateDir(t))]
]

for (const [kind, make] of kinds) {
  t.test(`${kind} store: keys, compare-and-set, tokens`, async (t) => {
    const store = await opened(t, make(t))
    t.equal(await store.get('/a'), undefined, 'no key yet')
    t.equal(await store.createKeys(['/a', '/b', '/a']), 2, 'each new key counts once')
    t.equal(await store.createKeys(['/a', '/c']), 1, 'an existing key is left alone')
    t.equal(await store.get('/a'), null, 'a new key is free')

    const first = lease(await store.nextToken())
    t.ok(await store.compareAndSet('/a', null, first), 'free → leased')
    t.same(await store.get('/a'), first)
    t.notOk(await store.compareAndSet('/a', null, lease(first.token + 1)), 'refused when the key is no longer free')
    t.notOk(await store.compareAndSet('/a', { ...first, expiresAt: first.expiresAt - 1 }, null), 'refused on a stale expiry')
    const renewed = { ...first, expiresAt: first.expiresAt + 1000 }
    t.ok(await store.compareAndSet('/a', first, renewed), 'leased → renewed')
    t.ok(await store.compareAndSet('/a', renewed, null), 'renewed → free')
    t.notOk(await store.compareAndSet('/nothing', null, first), 'refused without a key')
    t.equal(await store.get('/nothing'), undefined, 'and creates none')

    t.ok(await store.nextToken() > first.token, 'tokens grow')
    t.equal(await store.deleteKeys(['/a', '/b', '/never']), 2, 'counts the keys that existed')
    t.equal(await store.get('/a'), undefined)
    t.notOk(await store.compareAndSet('/a', null, first), 'a deleted key takes no lease')

    await store.createKeys(['/held', '/free'])
    t.ok(await store.compareAndSet('/held', null, lease(await store.nextToken())))
    t.notOk(await store.deleteKeyIfFree('/held'), 'a held key is not removed if free')
    t.not(await store.get('/held'), undefined, 'and stays')
    t.ok(await store.deleteKeyIfFree('/free'), 'a free one is')
    t.equal(await store.get('/free'), undefined)
    t.notOk(await store.deleteKeyIfFree('/never'), 'nor is a key that does not exist')
  })
}

t.test('journal: keys, leases and the counter survive a restart and a crash', async (t) => {
  const dir = stateDir(t)
  const store = new JournalLockStore(dir)
  await store.load()
  await store.createKeys(['/a', '/b', '/gone'])
  const held = lease(await store.nextToken())
  t.ok(await store.compareAndSet('/a', null, held))
  await store.deleteKeys(['/gone'])
  // Answered: so it is on disk, and a crash right now must not lose it.
  const crashed = new JournalLockStore(crashCopy(t, dir))
  await opened(t, crashed)
  t.same(await crashed.get('/a'), held, 'the lease, as granted')
  t.equal(await crashed.get('/b'), null, 'the free key')
  t.equal(await crashed.get('/gone'), undefined, 'a deleted key stays deleted')

  await store.close()
  const again = await opened(t, new JournalLockStore(dir))
  t.same(await again.get('/a'), held, 'a clean restart reads the same')
  t.ok(await again.nextToken() > held.token)
})

t.test('journal: the record of advisory lock holders survives a crash and the compaction at start', async (t) => {
  const dir = stateDir(t)
  const store = new JournalLockStore(dir)
  await store.load()
  store.addAdvisoryHolder('alice/mount-1')
  store.addAdvisoryHolder('bob/mount-2')
  store.addAdvisoryHolder('carol/mount-3')
  store.dropAdvisoryHolders(['bob/mount-2', 'nobody/never-held'])
  const copy = crashCopy(t, dir)
  const crashed = await opened(t, new JournalLockStore(copy))
  t.same([...crashed.advisoryHolders()].sort(), ['alice/mount-1', 'carol/mount-3'], 'as recorded when the calls returned')
  t.ok(crashed.resumed, 'a restart')
  // The start compacted the copy's journal: the record is in the compacted one too.
  await crashed.close()
  const twice = await opened(t, new JournalLockStore(copy))
  t.same([...twice.advisoryHolders()].sort(), ['alice/mount-1', 'carol/mount-3'], 'and after a second start')
  await store.close()
})

t.test('journal: the counter is on record, not only the clock', async (t) => {
  const dir = stateDir(t)
  // A clock stuck at the epoch: the only way tokens can grow is from what the journal holds.
  const stuck = (): number => 0
  const store = new JournalLockStore(dir, stuck)
  await store.load()
  await store.createKeys(['/a'])
  let last = 0
  for (let i = 0; i < 5; i++) {
    const granted = lease(await store.nextToken())
    t.ok(await store.compareAndSet('/a', null, granted))
    t.ok(await store.compareAndSet('/a', granted, null), 'released: the token is no longer on any key')
    last = granted.token
  }
  await store.close()
  const again = await opened(t, new JournalLockStore(dir, stuck))
  t.ok(await again.nextToken() > last, 'the next token is above every released one')
})

t.test('journal: a torn last line is dropped, then the journal is whole again', async (t) => {
  const dir = stateDir(t)
  const store = new JournalLockStore(dir)
  await store.load()
  await store.createKeys(['/a'])
  const held = lease(await store.nextToken())
  t.ok(await store.compareAndSet('/a', null, held))
  await store.close()
  // A crash in the middle of the next append: half a record, no newline.
  const half = JSON.stringify({ set: '/a', lease: null }).slice(0, 12)
  fs.appendFileSync(path.join(dir, JOURNAL_FILE), half)

  const again = await opened(t, new JournalLockStore(dir))
  t.same(await again.get('/a'), held, 'the change that was never finished was never made')
  const text = fs.readFileSync(path.join(dir, JOURNAL_FILE), 'utf8')
  t.ok(text.endsWith('\n'), 'the file ends with a whole record')
  t.doesNotThrow(() => text.trimEnd().split('\n').map((line) => JSON.parse(line) as unknown), 'the torn line is gone from it')
  t.ok(await again.compareAndSet('/a', held, null), 'and takes changes')
  await again.close()
  t.equal(await (await opened(t, new JournalLockStore(dir))).get('/a'), null, 'that read back')
})

t.test('journal: a whole last line that is not JSON is torn too; one in the middle is corruption', async (t) => {
  const dir = stateDir(t)
  const store = new JournalLockStore(dir)
  await store.load()
  await store.createKeys(['/a'])
  await store.close()
  const file = path.join(dir, JOURNAL_FILE)
  fs.appendFileSync(file, '{"set":"/a","le\n')
  const again = new JournalLockStore(dir)
  await again.load()
  t.equal(await again.get('/a'), null)
  await again.close()

  fs.appendFileSync(file, 'garbage\n' + JSON.stringify({ keys: ['/b'] }) + '\n')
  await t.rejects(new JournalLockStore(dir).load(), JournalCorruptError, 'refuses to guess what a bad middle line held')
  await t.rejects(new JournalLockStore(dir).load(), JournalCorruptError, 'and a failed load does not keep the folder claimed')
})

t.test('journal: compacted at start to the keys and leases it holds', async (t) => {
  const dir = stateDir(t)
  const store = new JournalLockStore(dir)
  await store.load()
  await store.createKeys(['/a', '/b'])
  let state: StoredLease | null = null
  for (let i = 0; i < 200; i++) {
    const next = lease(await store.nextToken())
    t.ok(await store.compareAndSet('/a', state, next))
    state = next
  }
  await store.deleteKeys(['/b'])
  const file = path.join(dir, JOURNAL_FILE)
  const linesBefore = fs.readFileSync(file, 'utf8').split('\n').length
  await store.close()

  const again = await opened(t, new JournalLockStore(dir))
  const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n')
  t.ok(linesBefore > 200, `the journal had ${linesBefore} lines`)
  t.equal(lines.length, 3, 'now a header, one line of keys, the one lease')
  t.match(JSON.parse(lines[0]), { format: 'dfs-lock-journal', version: 1 })
  t.same(JSON.parse(lines[1]), { keys: ['/a'] })
  t.same(await again.get('/a'), state)
  t.equal(await again.get('/b'), undefined)
  t.notOk(fs.existsSync(file + '.tmp'), 'no side file left')
})

t.test('journal: one lock server per state folder; a dead one\'s claim is taken over', async (t) => {
  const dir = stateDir(t)
  await opened(t, new JournalLockStore(dir))
  await t.rejects(new JournalLockStore(dir).load(), StateDirInUseError, 'a second store in this process')

  const other = stateDir(t)
  // The pid of a process that has exited: what kill -9 of a lock server leaves behind.
  const dead = spawnSync(process.execPath, ['-e', '']).pid
  fs.writeFileSync(path.join(other, OWNER_FILE), String(dead))
  const taken = await opened(t, new JournalLockStore(other))
  t.equal(fs.readFileSync(path.join(other, OWNER_FILE), 'utf8'), String(process.pid), 'claimed by this process')
  await taken.close()
  t.notOk(fs.existsSync(path.join(other, OWNER_FILE)), 'and given up on close')

  // A live process's claim (the parent of this test runner is alive) is respected.
  fs.writeFileSync(path.join(other, OWNER_FILE), String(process.ppid))
  await t.rejects(new JournalLockStore(other).load(), StateDirInUseError, 'another live process')

  // A killed lock server that its parent has not reaped yet (a zombie: a container's PID 1
  // may reap late) is dead all the same. The shell runs sleep 0 in the background and then
  // becomes sleep 5, which never reaps it: a zombie for 5 s.
  const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => { parent.kill('SIGKILL') })
  const zombie = Number((await once(parent.stdout, 'data') as Buffer[])[0].toString().trim())
  await waitFor('the zombie', async () => fs.readFileSync(`/proc/${zombie}/stat`, 'utf8').includes(') Z '))
  const third = stateDir(t)
  fs.writeFileSync(path.join(third, OWNER_FILE), String(zombie))
  await opened(t, new JournalLockStore(third))
  t.equal(fs.readFileSync(path.join(third, OWNER_FILE), 'utf8'), String(process.pid), 'a zombie\'s claim is taken over')
})

t.test('lock table on a journal: a lease outlives a restart of the table', async (t) => {
  const dir = stateDir(t)
  const clock = { now: Date.now() }
  const store = new JournalLockStore(dir, () => clock.now)
  await store.load()
  const table = new LockTable(store, () => clock.now)
  await table.createKeys(['/a'])
  const held = await table.acquire('/a', 'alice', 10_000)
  await store.close()

  clock.now += 3000 // the restart took 3 s of wall-clock time, which counts against the lease
  const restarted = new LockTable(await opened(t, new JournalLockStore(dir, () => clock.now)), () => clock.now)
  await t.rejects(restarted.acquire('/a', 'bob', 10_000), LockedError, 'bob is refused while alice\'s lease lives')
  t.equal(await restarted.check('/a', held.token, held.secret), 7000, 'alice\'s lease has what was left of it')
  await t.rejects(restarted.check('/a', held.token, 'x'.repeat(held.secret.length)), LeaseError, 'its secret was kept with it: another one is refused')
  const renewed = await restarted.renew('/a', held)
  t.equal(renewed.expiresAt, clock.now + 10_000, 'alice renews with her credential (the secret was kept)')
  await restarted.release('/a', held)
  clock.now += 2000 // bob's place as a waiter lapses
  t.ok((await restarted.acquire('/a', 'carol', 10_000)).token > held.token, 'the next lease is fenced above hers')
  await t.rejects(restarted.check('/a', held.token, held.secret), LeaseError)
})
