import { createHook } from 'node:async_hooks'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { Requests, total } from './helpers/requests'
import { waitFor } from './helpers/waitFor'

/*
 * A large folder costs no more per entry (issue #9): the client assembles a listing of
 * thousands of names with no promise per entry (a promise each kept a mount's event loop
 * busy for seconds in a folder of 50,000, long enough for its callback leases to lapse),
 * and a repeated listing of a folder it holds makes no request.
 */

const FILES = 5000
const name = (i: number): string => `f-${String(i).padStart(5, '0')}`

/** Promises made while `work` runs (and whatever else runs meanwhile: nothing much in a test). */
async function promisesMadeBy<T> (work: () => Promise<T>): Promise<{ value: T, promises: number }> {
  let promises = 0
  const hook = createHook({ init: (_id, type) => { if (type === 'PROMISE') promises++ } })
  hook.enable()
  try {
    const value = await work()
    return { value, promises }
  } finally {
    hook.disable()
  }
}

t.test('a large folder is listed with no promise per entry, right, and listed again with no request', async (t) => {
  const big: Record<string, string> = {}
  for (let i = 0; i < FILES; i++) big[`big/${name(i)}`] = 'x'.repeat(i % 7)
  // A subfolder on both servers: its entry is a folder, whatever server answers first.
  const cluster = await startTestCluster(t, [{ ...big, 'big/sub/one.txt': 'one' }, { 'big/sub/two.txt': 'two' }])
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const client = cluster.client({ callbacks: true })
  t.teardown(() => client.close())

  // A first listing, with nothing known here: every file's meta comes from its server's listing.
  const from = requests.mark()
  const { value: entries, promises } = await promisesMadeBy(async () => await client.list('/big'))
  t.equal(requests.since(from, true).get('GET /list'), 3, 'listed once by the directory and once by each file server')
  t.ok(promises < FILES / 10, `promises made for ${FILES + 1} entries: ${promises} (one per entry would be over ${FILES})`)
  t.equal(entries.length, FILES + 1, 'every name listed')
  const byName = new Map(entries.map((e) => [e.name, e]))
  t.same([0, 1, 4999].map((i) => [byName.get(name(i))?.kind, byName.get(name(i))?.size]), [['file', 0], ['file', 1], ['file', 4999 % 7]], 'files with their sizes')
  t.equal(byName.get('sub')?.kind, 'dir', 'the subfolder on both servers is one folder entry')
  t.ok((byName.get('sub')?.mtimeMs ?? 0) > 0, 'with a time from its servers')

  // Once the callback channels are open (they open in the background at the first request)
  // the folder's names and its files are held under callbacks, and listings ask nothing.
  await waitFor('a listing of the large folder with no request', async () => {
    await client.list('/big')
    const before = requests.mark()
    await client.list('/big')
    return total(requests.since(before, true)) === 0
  }, 20_000, 100)
  const again = requests.mark()
  for (let i = 0; i < 3; i++) t.equal((await client.list('/big')).length, FILES + 1)
  t.equal(total(requests.since(again, true)), 0, 'three more listings of the large folder made no request')
})
