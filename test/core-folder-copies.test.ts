import t from 'tap'
import type { Test } from 'tap'
import type { DfsClient } from '../src/client/dfsClient'
import type { FolderCopies } from '../src/client/folderCopies'
import { monotonicMs } from '../src/shared/clock'
import { NotFoundError } from '../src/shared/errors'
import type { ServerInfo } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { Requests } from './helpers/requests'
import { waitFor } from './helpers/waitFor'

/*
 * A client's copy of a folder's names (src/client/folderCopies.ts) when its own change is
 * answered while the folder's listing is under way: the listing may show the change or
 * not, and another client's change between the two would have sent no break, so the copy
 * is held with that name unsure: its lookup asks the directory, its listing is asked again.
 * The other names are answered from the copy.
 */

/** The client's FolderCopies: the interleaving below needs the listing's promise and the change's call in one turn. */
function foldersOf (client: DfsClient): FolderCopies {
  return (client as unknown as { folders: FolderCopies }).folders
}

/**
 * A cluster with `tree` and a client with callbacks whose channel to the directory is open
 * (it opens in the background at the first request): its folder copies, none held, and the
 * file server as the directory names it.
 */
async function clientWithChannel (t: Test, tree: Record<string, string>): Promise<{ folders: FolderCopies, server: ServerInfo }> {
  const cluster = await startTestCluster(t, [tree])
  const client = cluster.client({ callbacks: true })
  t.teardown(() => client.close())
  const folders = foldersOf(client)
  await waitFor('the folder held under a callback', async () => {
    await client.list('/big')
    return folders.count > 0
  }, 10_000, 20)
  folders.drop('/big')
  return { folders, server: { machineId: 1, url: cluster.fileServers[0].url, state: 'up' } }
}

t.test('an own change answered while the listing is under way leaves that name unsure, and only it', async (t) => {
  const { folders, server } = await clientWithChannel(t, { 'big/a': 'a', 'big/b': 'b', 'big/gone': 'g' })
  t.equal(folders.count, 0, 'dropped')

  // Both in one turn: the listing's request has left, its answer cannot have been read yet.
  const listing = folders.list('/big')
  folders.changedByMe('/big/new', monotonicMs(), server)
  folders.changedByMe('/big/gone', monotonicMs(), null)
  const answer = await listing
  t.same(answer.entries.map((e) => e.name).sort(), ['a', 'b', 'gone'], 'the listing as the directory gave it')
  t.equal(folders.count, 1, 'held, not refused for the change that crossed it')
  t.same(folders.lookup('/big/a'), { path: '/big/a', kind: 'file', server: { ...server, state: 'up' } }, 'a name not changed is answered from the copy')
  t.throws(() => folders.lookup('/big/none'), NotFoundError, 'and so is a missing one')
  t.equal(folders.lookup('/big/new'), undefined, 'the name made meanwhile is asked of the directory')
  t.equal(folders.lookup('/big/gone'), undefined, 'and so is the name removed meanwhile')
  t.notOk(folders.lacks('/big/new'), 'nor does the copy say it lacks one')

  const requests = new Requests()
  t.teardown(() => requests.stop())
  await folders.list('/big')
  t.equal(requests.since(0, true).get('GET /list'), 1, 'a listing with unsure names is asked for again')
  // (The changes above were told to the copy only: the directory never had them.)
  t.throws(() => folders.lookup('/big/new'), NotFoundError, 'the new listing is held as the directory has it, with no name unsure')
  await folders.list('/big')
  t.equal(requests.since(0, true).get('GET /list'), 1, 'and answered from the copy from then on')

  // A change asked for after the listing and answered while its copy is held is applied.
  folders.changedByMe('/big/later', monotonicMs(), server)
  t.same(folders.lookup('/big/later'), { path: '/big/later', kind: 'file', server }, 'a later change of its own is taken on')
})

t.test('an own change asked for before the listing and answered after it is held leaves the name unsure', async (t) => {
  const { folders, server } = await clientWithChannel(t, { 'big/a': 'a' })
  const askedBefore = monotonicMs()
  await folders.list('/big')
  folders.changedByMe('/big/early', askedBefore, server)
  t.equal(folders.count, 1, 'the copy stays held')
  t.equal(folders.lookup('/big/early'), undefined, 'the name is asked of the directory: the listing may show a later change of another client\'s')
})

t.test('a folder another client removed, looked up here a moment before: a fresh stat finds it gone, not a folder of time 0', async (t) => {
  const cluster = await startTestCluster(t, [{ 'kept/a.txt': 'a', 'gone/.keep': '' }, {}])
  const client = cluster.client()
  const other = cluster.client()
  t.teardown(() => { client.close(); other.close() })
  t.equal((await client.statFresh('/gone')).kind, 'dir', 'a folder at first (its lookup is remembered for a moment)')
  await other.unlink('/gone/.keep')
  await other.rmdir('/gone')
  await t.rejects(client.statFresh('/gone'), NotFoundError, 'gone: every holder says so')
  await t.rejects(client.stat('/gone'), NotFoundError, 'and not remembered as a folder')
})
