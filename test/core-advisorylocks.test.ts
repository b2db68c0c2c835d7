import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { startLockServer } from '../servers/lock/server'
import { AdvisoryLocks } from '../src/client/advisoryLocks'
import { AdvisoryLockApi } from '../src/shared/api'
import type { AdvisoryLockRequest } from '../src/shared/advisoryLockProtocol'
import { AdvisoryRoutes } from '../src/shared/advisoryLockProtocol'
import { InterruptedError, LockedError, ServerUnavailableError } from '../src/shared/errors'
import { Transport } from '../src/shared/transport'

/*
 * Advisory locks over HTTP against a real lock server: what a mount's AdvisoryLocks asks, and
 * what the server answers to bad input, waits and sessions that stop renewing.
 */

async function lockServer (t: Test, leaseMs = 30_000): Promise<{ url: string, api: AdvisoryLockApi }> {
  const server = await startLockServer({ port: 0, leaseMs })
  t.teardown(async () => await server.close())
  return { url: server.url, api: new AdvisoryLockApi(new Transport('lock server', server.url, 5000)) }
}

const exclusive = (session: string, path = '/f'): AdvisoryLockRequest => ({ path, session, owner: 'o', kind: 'flock', type: 'write' })

t.test('bad input is a 400 with a JSON body naming the field', async (t) => {
  const { url } = await lockServer(t)
  const post = async (body: unknown): Promise<{ status: number, body: { error: { code: string, message: string } } }> => {
    const res = await fetch(url + AdvisoryRoutes.lock, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: res.status, body: await res.json() as { error: { code: string, message: string } } }
  }
  const good = exclusive('m1')
  for (const [bad, field] of [
    [{ ...good, kind: 'mandatory' }, 'kind'],
    [{ ...good, type: 'exclusive' }, 'type'],
    [{ ...good, session: 'no spaces' }, 'session'],
    [{ ...good, start: -1, kind: 'posix' }, 'start'],
    [{ ...good, waitMs: 60_000 }, 'waitMs'],
    [{ ...good, owner: undefined }, 'owner'],
    [{ ...good, path: 'relative/../..' }, 'path']
  ] as const) {
    const answer = await post(bad)
    t.equal(answer.status, 400, `${field}: 400`)
    t.match(answer.body.error.message, field === 'path' ? /./ : field, `${field}: the message names it`)
  }
})

t.test('a waiting request is granted when the holder gives its lock back', async (t) => {
  const { api } = await lockServer(t)
  await api.lock(exclusive('m1'))
  await t.rejects(api.lock(exclusive('m2')), LockedError, 'without waiting, refused at once')
  const waiting = api.lock({ ...exclusive('m2'), waitMs: 20_000 })
  await api.lock({ ...exclusive('m1'), type: 'unlock' })
  t.match(await waiting, { granted: true, held: 1 }, 'the waiter gets the lock')
  t.match((await api.status('/f')).locks, [{ session: 'm2', type: 'write' }])
  t.same(await api.end('m2'), { session: 'm2', released: 1 }, 'ending the session gives it back')
  t.same((await api.status('/f')).locks, [])
})

t.test('a wait that is broken off is never granted', async (t) => {
  const { api } = await lockServer(t)
  const holder = new AdvisoryLocks(api, { session: 'm1' })
  const waiter = new AdvisoryLocks(api, { session: 'm2' })
  await holder.lock('/f', { owner: 'o', kind: 'flock' }, 'write', { start: 0, length: 0 }, false)
  const controller = new AbortController()
  const waiting = waiter.lock('/f', { owner: 'o', kind: 'flock' }, 'write', { start: 0, length: 0 }, true, controller.signal)
  controller.abort()
  await t.rejects(waiting, InterruptedError, 'the interrupted wait ends with EINTR')
  await holder.close()
  // Had the broken-off wait been granted, this one would wait in vain and be refused.
  t.match(await api.lock({ ...exclusive('m3'), waitMs: 5000 }), { granted: true }, 'a third mount gets the lock the holder gave back')
  t.match((await api.status('/f')).locks, [{ session: 'm3' }], 'and only it holds a lock: the broken-off wait took nothing')
})

t.test('a mount that renews keeps its locks past the lease; one that stops loses them', async (t) => {
  const { api } = await lockServer(t, 1000)
  const renewing = new AdvisoryLocks(api, { session: 'live' })
  t.teardown(async () => await renewing.close())
  await renewing.lock('/a', { owner: 'o', kind: 'posix' }, 'write', { start: 0, length: 10 }, false)
  // A session that asks for a lock and then never renews (a mount that died).
  await api.lock({ path: '/b', session: 'dead', owner: 'o', kind: 'posix', type: 'write' })
  const other = new AdvisoryLocks(api, { session: 'other' })
  t.teardown(async () => await other.close())
  // Waits, on the server, until the dead session's lease ran out.
  await other.lock('/b', { owner: 'o', kind: 'posix' }, 'write', { start: 0, length: 0 }, true)
  t.pass('the dead session\'s lock went when its lease ran out')
  t.match((await api.status('/a')).locks, [{ session: 'live', start: 0, length: 10 }], 'the renewing session still holds its lock, more than a lease later')
  t.match(await api.renew({ session: 'dead' }), { known: false, held: 0 }, 'the dead session is forgotten')
})

t.test('a restarted lock server grants and tests no lock in its grace, and takes back what mounts held; then it refuses a hand-back it knows nothing of', async (t) => {
  const stateDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-lock-state-'))
  t.teardown(async () => await fsp.rm(stateDir, { recursive: true, force: true }))
  const first = await startLockServer({ port: 0, stateDir })
  // m1 holds a lock: on the record of holders, so the restart has a grace that waits for it.
  t.match(await new AdvisoryLockApi(new Transport('lock server', first.url, 5000)).lock(exclusive('m1')), { granted: true })
  await first.close()
  const graceMs = 1500
  const restarted = await startLockServer({ port: 0, stateDir, advisoryGraceMs: graceMs })
  t.teardown(async () => await restarted.close())
  const started = Date.now()
  const api = new AdvisoryLockApi(new Transport('lock server', restarted.url, 5000))
  await t.rejects(api.lock(exclusive('m2')), ServerUnavailableError, 'a new lock waits for the grace to end (503)')
  await t.rejects(api.test({ path: '/f', session: 'm2', owner: 'o', kind: 'flock', type: 'write' }), ServerUnavailableError, 'so does a test')
  t.match(await api.lock({ ...exclusive('m2'), type: 'unlock' }), { granted: true }, 'an unlock is answered')
  const held = [{ owner: 'o', kind: 'flock' as const, type: 'write' as const, start: 0, length: 0 }]
  t.match(await api.giveBack({ path: '/f', session: 'm1', locks: held }), { returned: true, held: 1 }, 'a mount reclaims its lock, with no delegation known')
  t.match(await api.giveBack({ path: '/f', session: 'm3', locks: held }), { returned: false }, 'one that conflicts with a reclaimed lock is refused')
  t.ok(Date.now() - started < graceMs, 'all of this within the grace')
  await new Promise((resolve) => setTimeout(resolve, graceMs - (Date.now() - started) + 50))
  await t.rejects(api.lock(exclusive('m2')), LockedError, 'after the grace, a lock is decided: the reclaimed one keeps m2 out')
  t.match(await api.giveBack({ path: '/g', session: 'm1', locks: held }), { returned: false }, 'and a hand-back of nothing delegated is refused again')
})

t.test('a restart\'s grace ends once every holder on record has said it took its locks back; with none on record there is none', async (t) => {
  const stateDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-lock-state-'))
  t.teardown(async () => await fsp.rm(stateDir, { recursive: true, force: true }))
  const first = await startLockServer({ port: 0, stateDir })
  const before = new AdvisoryLockApi(new Transport('lock server', first.url, 5000))
  t.match(await before.lock(exclusive('m1')), { granted: true })
  t.match(await before.lock({ ...exclusive('m3'), path: '/g' }), { granted: true })
  t.match(await before.end('m3'), { released: 1 }, 'm3 ends its session: off the record')
  await first.close()
  const restarted = await startLockServer({ port: 0, stateDir, advisoryGraceMs: 60_000 })
  const api = new AdvisoryLockApi(new Transport('lock server', restarted.url, 5000))
  await t.rejects(api.lock({ ...exclusive('m2'), path: '/g' }), ServerUnavailableError, 'in the grace: m1 has not said it is done')
  const { boot } = await api.renew({ session: 'm1' })
  const held = [{ owner: 'o', kind: 'flock' as const, type: 'write' as const, start: 0, length: 0 }]
  t.match(await api.giveBack({ path: '/f', session: 'm1', locks: held }), { returned: true, held: 1 })
  t.match(await api.reclaimed({ session: 'm1', boot: 'another-run' }), { counted: false }, 'a reclaim said for another run of the server does not count')
  t.match(await api.reclaimed({ session: 'm1', boot }), { counted: true, graceLeftMs: 0 }, 'm1 is done, and with it every holder on record: the grace is over')
  await t.rejects(api.lock(exclusive('m2')), LockedError, 'a lock is decided at once: m1\'s reclaimed lock keeps m2 out')
  t.match(await api.lock({ ...exclusive('m2'), path: '/g' }), { granted: true }, 'and m3\'s old lock is not waited for')

  // m1 and m2 end their sessions (mounts unmounted): off the record, and so the next start has no grace.
  t.match(await Promise.all(['m1', 'm2'].map(async (session) => await api.end(session))), [{ released: 1 }, { released: 1 }])
  await restarted.close()
  const fourth = await startLockServer({ port: 0, stateDir, advisoryGraceMs: 60_000 })
  t.teardown(async () => await fourth.close())
  const api4 = new AdvisoryLockApi(new Transport('lock server', fourth.url, 5000))
  t.match(await api4.lock(exclusive('m5')), { granted: true }, 'a restart with nobody on record has no grace')
})

t.test('a lock server that starts with no earlier state has no grace', async (t) => {
  const stateDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-lock-state-'))
  t.teardown(async () => await fsp.rm(stateDir, { recursive: true, force: true }))
  const server = await startLockServer({ port: 0, stateDir, advisoryGraceMs: 60_000 })
  t.teardown(async () => await server.close())
  const api = new AdvisoryLockApi(new Transport('lock server', server.url, 5000))
  t.match(await api.lock(exclusive('m1')), { granted: true })
})
