import t from 'tap'
import type { Test } from 'tap'
import { createLockServerApp } from '../servers/lock/server'
import type { LockServerApp } from '../servers/lock/server'
import { listen } from '../servers/common/http'
import { LockApi } from '../src/shared/api'
import { Transport } from '../src/shared/transport'
import { delegationKey } from '../src/shared/protocol'
import { DelegationChannel } from '../src/client/delegationChannel'
import { newCredentials } from './helpers/credentials'
import type { TestCredentials } from './helpers/credentials'
import { waitFor } from './helpers/waitFor'

/*
 * The lock server's event channel: what it delegated to a client (a callback on a key such
 * as lease:PATH) it recalls over the channel, and the recall waits until the holder has
 * given it back, or until the holder's callback lease has run out.
 */

interface LockServerUnderTest {
  url: string
  server: LockServerApp
  credentials: TestCredentials
}

async function startLock (t: Test): Promise<LockServerUnderTest> {
  const credentials = newCredentials()
  const server = createLockServerApp({ auth: { key: credentials.key } })
  const running = await listen(server.app, 0)
  t.teardown(async () => {
    server.stop()
    await running.close()
  })
  return { url: running.url, server, credentials }
}

/** What a client's handler of lease delegations was asked to do. */
interface Holder {
  channel: DelegationChannel
  clientId: string
  recalled: string[]
  lost: number
  /** Lets the recall in progress finish (the handler gives the delegation back). */
  giveBack: () => void
  /** Whether the last recall's handler has finished. */
  gaveBack: boolean
}

/** A client with a channel to the lock server, open and usable, whose lease handler waits for giveBack. */
async function holderOf (t: Test, lock: LockServerUnderTest, clientId: string): Promise<Holder> {
  const transport = new Transport('lock server', lock.url, 2000, { credential: () => lock.credentials.write, clientId })
  const channel = new DelegationChannel(new LockApi(transport), clientId)
  t.teardown(() => channel.close())
  const holder: Holder = { channel, clientId, recalled: [], lost: 0, giveBack: () => {}, gaveBack: false }
  channel.handle('lease', {
    recall: async (path) => {
      holder.recalled.push(path)
      holder.gaveBack = false
      await new Promise<void>((resolve) => { holder.giveBack = resolve })
      holder.gaveBack = true
    },
    lost: () => { holder.lost++ }
  })
  await waitFor('the channel to the lock server', async () => channel.ready())
  return holder
}

/** Delegates the key to the client as the lock server's routes do (the test token's subject is `tester`). */
function delegate (lock: LockServerUnderTest, holder: Holder, key: string): void {
  if (!lock.server.delegations.table.grant(holder.clientId, key, 'tester')) throw new Error(`${key} was not delegated to ${holder.clientId}`)
}

t.test('a recall reaches the holder over its channel and is answered only once the holder gave the delegation back', async (t) => {
  const lock = await startLock(t)
  const holder = await holderOf(t, lock, 'holder-1')
  const requester = await holderOf(t, lock, 'requester-1')
  const key = delegationKey('lease', '/notes/a.txt')
  delegate(lock, holder, key)
  delegate(lock, requester, key)

  let answered = false
  const recall = lock.server.delegations.recall(key, requester.clientId).then(() => { answered = true })
  await waitFor('the recall at the holder', async () => holder.recalled.length === 1)
  t.same(holder.recalled, ['/notes/a.txt'], 'the holder is told the path of the recalled lease')
  t.notOk(answered, 'the recall waits while the holder is giving back')
  holder.giveBack()
  await recall
  t.ok(holder.gaveBack, 'the recall was answered after the holder had given back')
  t.same(requester.recalled, [], 'the requester\'s own delegation is not recalled')
  t.equal(holder.lost, 0, 'the holder still has its channel')

  // The delegation was taken back: a second recall of the key reaches nobody.
  await lock.server.delegations.recall(key, requester.clientId)
  t.equal(holder.recalled.length, 1, 'a delegation is recalled once')
})

t.test('a holder that never gives back delays a recall by at most its callback lease, and learns it lost its delegations', async (t) => {
  const lock = await startLock(t)
  const holder = await holderOf(t, lock, 'stuck-1')
  delegate(lock, holder, delegationKey('lease', '/f'))
  await lock.server.delegations.recall(delegationKey('lease', '/f'), undefined)
  t.same(holder.recalled, ['/f'])
  t.notOk(holder.gaveBack, 'the recall was answered without the holder giving back')
  await waitFor('the holder to learn its delegations are gone', async () => holder.lost > 0)
  t.notOk(holder.channel.ready(), 'no delegation may be asked for until the channel is open again')
  holder.giveBack()
})

t.test('a client id belongs to the subject that first used it: another cannot take its channel or its delegations', async (t) => {
  const lock = await startLock(t)
  await holderOf(t, lock, 'shared-id')
  const transport = new Transport('lock server', lock.url, 2000, { credential: () => lock.credentials.read, clientId: 'shared-id' })
  await t.rejects(new LockApi(transport).callbackCalls.events('shared-id'), { name: 'ForbiddenError' })
  t.notOk(lock.server.delegations.table.grant('shared-id', delegationKey('lease', '/f'), 'reader'), 'no delegation under another subject\'s client id')
})
