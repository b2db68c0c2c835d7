import type { Test } from 'tap'
import t from 'tap'
import { startLockServer } from '../servers/lock/server'
import { AdvisoryLocks } from '../src/client/advisoryLocks'
import { DelegationChannel } from '../src/client/delegationChannel'
import { AdvisoryLockApi, LockApi } from '../src/shared/api'
import type { AdvisoryLockRequest } from '../src/shared/advisoryLockProtocol'
import { AdvisoryRoutes } from '../src/shared/advisoryLockProtocol'
import { LockedError } from '../src/shared/errors'
import { Transport } from '../src/shared/transport'
import { waitFor } from './helpers/waitFor'

/*
 * Advisory-lock delegation on the wire, against a real lock server: when it is granted, what
 * a recall waits for, and what POST /advisory/return takes. The holders here answer recalls
 * only when the test says so, to show what the server does while a holder is silent.
 */

interface Server {
  url: string
}

async function lockServer (t: Test, leaseMs = 30_000): Promise<Server> {
  const server = await startLockServer({ port: 0, leaseMs })
  t.teardown(async () => await server.close())
  return { url: server.url }
}

/** A mount's AdvisoryLocks with its channel, as DfsClient makes them. */
async function mountLocksOf (t: Test, server: Server, id: string, leaseMs?: number): Promise<AdvisoryLocks> {
  const transport = new Transport('lock server', server.url, 5000, { clientId: id })
  const channel = new DelegationChannel(new LockApi(transport), id)
  const locks = new AdvisoryLocks(new AdvisoryLockApi(transport), { session: id, leaseMs, channel })
  t.teardown(async () => {
    await locks.close()
    channel.close()
  })
  await waitFor('the channel to the lock server', async () => channel.ready())
  return locks
}

/** A session whose calls carry its own id as client id (as a mount's do), and optionally its event channel. */
interface Session {
  id: string
  api: AdvisoryLockApi
  /** Paths the lock server recalled from this session (its handler never hands anything back). */
  recalled: string[]
}

async function sessionOf (t: Test, server: Server, id: string, withChannel: boolean): Promise<Session> {
  const transport = new Transport('lock server', server.url, 5000, { clientId: id })
  const session: Session = { id, api: new AdvisoryLockApi(transport), recalled: [] }
  if (withChannel) {
    const channel = new DelegationChannel(new LockApi(transport), id)
    t.teardown(() => channel.close())
    channel.handle('advisory', { recall: async (path) => { session.recalled.push(path) }, lost: () => {} })
    await waitFor('the channel to the lock server', async () => channel.ready())
  }
  return session
}

const posix = (session: Session, type: AdvisoryLockRequest['type'], start = 0, length = 0, path = '/db/f'): AdvisoryLockRequest =>
  ({ path, session: session.id, owner: 'o1', kind: 'posix', type, start, length })

t.test('a delegation is granted only when asked, to a session with a channel under its own client id, with nobody else on the path', async (t) => {
  const server = await lockServer(t)
  const a = await sessionOf(t, server, 'mount-a', true)
  const noChannel = await sessionOf(t, server, 'mount-n', false)

  t.equal((await a.api.lock(posix(a, 'read'))).delegated, undefined, 'not asked for: not delegated')
  t.equal((await noChannel.api.lock({ ...posix(noChannel, 'read', 0, 0, '/db/g'), delegate: true })).delegated, undefined, 'no channel: not delegated')
  t.equal((await a.api.lock({ ...posix(a, 'read', 0, 0, '/db/h'), session: 'someone-else', delegate: true })).delegated, undefined, 'another session id than its client id: not delegated')
  t.equal((await a.api.lock({ ...posix(a, 'read', 0, 0, '/db/g'), delegate: true })).delegated, undefined, 'another session holds a lock there: not delegated')

  const granted = await a.api.lock({ ...posix(a, 'write', 100, 10), delegate: true })
  t.same(granted.delegated?.map((l) => [l.type, l.start, l.length]), [['read', 0, 100], ['write', 100, 10], ['read', 110, 0]],
    'delegated, with the session\'s locks on the path as the server has them')
})

t.test('a recall the holder does not answer: a lock is refused as delegated, a test too; the renewal names the path; the hand-back lets the others decide', async (t) => {
  const server = await lockServer(t)
  const a = await sessionOf(t, server, 'mount-a', true)
  const b = await sessionOf(t, server, 'mount-b', true)
  t.ok((await a.api.lock({ ...posix(a, 'read'), delegate: true })).delegated, 'A holds the delegation')

  const refused = await b.api.lock(posix(b, 'write', 0, 10)).then(() => null, (err: unknown) => err)
  t.type(refused, LockedError, 'B\'s lock is refused while A has not handed the path back')
  t.match((refused as LockedError).details, { holder: 'mount-a', delegated: true }, 'as delegated to A, with no conflict to name')
  t.same(a.recalled, ['/db/f'], 'A was sent the recall over its channel')
  await t.rejects(b.api.test({ ...posix(b, 'write'), type: 'write' }), LockedError, 'B\'s test is not answered "no conflict" either')
  t.same((await a.api.renew({ session: a.id })).recalled, ['/db/f'], 'A\'s renewal names the path being recalled')

  // A hands back what it holds now: its read lock became a write lock on the first 10 bytes.
  const back = await a.api.giveBack({ path: '/db/f', session: a.id, locks: [{ owner: 'o1', kind: 'posix', type: 'write', start: 0, length: 10 }] })
  t.same(back, { path: '/db/f', returned: true, held: 1 })
  t.equal((await a.api.renew({ session: a.id })).recalled, undefined, 'nothing is being recalled any more')
  const after = await b.api.lock(posix(b, 'write', 0, 10)).then(() => null, (err: unknown) => err)
  t.match((after as LockedError).details, { holder: 'mount-a', conflict: { session: 'mount-a', type: 'write', start: 0, length: 10 } }, 'B is now refused by the lock A handed back')
  t.same((await b.api.lock(posix(b, 'write', 10, 0))).granted, true, 'and granted the bytes after it')
  t.same((await a.api.giveBack({ path: '/db/f', session: a.id, locks: [] })).returned, false, 'a second hand-back is not taken')
})

t.test('a recall waits for the hand-back while the holder lives, and no longer than its session', async (t) => {
  const server = await lockServer(t, 1500)
  const a = await sessionOf(t, server, 'mount-a', true)
  const b = await sessionOf(t, server, 'mount-b', false)
  t.ok((await a.api.lock({ ...posix(a, 'write'), delegate: true })).delegated, 'A holds the delegation, with a write lock on the file')
  // B waits on the server; A hands back while it waits: B then waits for A's lock, which A gives back.
  const waiting = b.api.lock({ ...posix(b, 'write'), waitMs: 20_000 })
  await waitFor('the recall at A', async () => a.recalled.length > 0)
  await a.api.giveBack({ path: '/db/f', session: a.id, locks: [{ owner: 'o1', kind: 'posix', type: 'write', start: 0, length: 0 }] })
  await a.api.lock(posix(a, 'unlock'))
  t.equal((await waiting).granted, true, 'B is granted once A handed back and unlocked')
  await b.api.lock(posix(b, 'unlock'))
  const c = await sessionOf(t, server, 'mount-c', true)
  t.equal((await c.api.lock({ ...posix(c, 'read', 50, 1), delegate: true })).delegated, undefined,
    'a path just recalled is not delegated again at once, though only C would hold a lock there now')

  // On another path C holds a delegation and stops renewing: A's wait ends with C's session, and C's lock with it.
  t.ok((await c.api.lock({ ...posix(c, 'write', 0, 0, '/db/g'), delegate: true })).delegated, 'C holds the delegation of /db/g, with a write lock')
  const late = await a.api.lock({ ...posix(a, 'write', 0, 0, '/db/g'), waitMs: 20_000 })
  t.equal(late.granted, true, 'A is granted once C\'s session (1.5 s, never renewed) ran out, without a hand-back')
  t.same(c.recalled, ['/db/g'], 'C was sent the recall')
  t.same((await c.api.giveBack({ path: '/db/g', session: c.id, locks: [{ owner: 'o1', kind: 'posix', type: 'write', start: 0, length: 0 }] })).returned, false,
    'C\'s late hand-back is not taken: its session and its locks are gone')
})

t.test('POST /advisory/return checks its locks as a lock request\'s fields', async (t) => {
  const server = await lockServer(t)
  const post = async (body: unknown): Promise<{ status: number, code: string, message: string }> => {
    const res = await fetch(server.url + AdvisoryRoutes.return, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const answer = await res.json() as { error: { code: string, message: string } }
    return { status: res.status, code: answer.error.code, message: answer.error.message }
  }
  const lock = { owner: 'o1', kind: 'posix', type: 'write', start: 0, length: 1 }
  for (const [locks, field] of [
    ['none', 'locks'],
    [[{ ...lock, type: 'unlock' }], 'read or write'],
    [[{ ...lock, kind: 'mandatory' }], 'kind'],
    [[{ ...lock, start: -1 }], 'start'],
    [[7], 'object'],
    [[{ ...lock, owner: 'x'.repeat(65) }], 'owner']
  ] as const) {
    const answer = await post({ path: '/db/f', session: 's1', locks })
    t.equal(answer.status, 400, `${JSON.stringify(locks)}: 400`)
    t.equal(answer.code, 'BAD_REQUEST')
    t.match(answer.message, field, `the message names ${field}`)
  }
})

t.test('a mount hands back a delegated path nobody has locked for a while', async (t) => {
  const server = await lockServer(t, 30_000)
  const a = await mountLocksOf(t, server, 'mount-a', 300)
  const who = { owner: 'p1', kind: 'posix' } as const
  await a.lock('/db/f', who, 'write', { start: 0, length: 0 }, false)
  t.same(a.delegatedPaths, ['/db/f'], 'the first lock brought the delegation')
  await a.lock('/db/f', who, 'unlock', { start: 0, length: 0 }, false)
  t.same(a.delegatedPaths, ['/db/f'], 'an unlock is answered locally, and the path stays delegated')
  await waitFor('the idle path handed back', async () => a.delegatedPaths.length === 0, 10_000)
  const b = await sessionOf(t, server, 'mount-b', false)
  t.equal((await b.api.lock({ ...posix(b, 'write'), waitMs: 0 })).granted, true, 'another session is granted the file at once: nothing was kept')
})
