import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { FileStore, STATE_DIR_NAME } from '../servers/file/fileStore'
import { RangeJournal } from '../servers/file/rangeJournal'
import type { IntentSlot, RangeIntent } from '../servers/file/rangeJournal'
import { BadRequestError, ConflictError } from '../src/shared/errors'
import { decodeRanges, encodeRanges } from '../src/shared/rangeFrames'
import { DirtyRanges } from '../src/client/dirtyRanges'
import { recentProblems } from '../servers/common/problems'

/* Range writes (PATCH /content) in a file server's store, and their crash recovery, on a temp folder. */

async function storeWith (t: Test, content: string): Promise<{ store: FileStore, root: string, reopen: () => Promise<FileStore> }> {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-rangewrite-'))
  const root = path.join(base, 'root')
  let store = await FileStore.open(root)
  await store.create('/db', 'file')
  await store.overwrite('/db', Readable.from([Buffer.from(content)]))
  t.teardown(async () => {
    await store.close().catch(() => {})
    await fsp.rm(base, { recursive: true, force: true })
  })
  return {
    store,
    root,
    reopen: async () => {
      await store.close()
      store = await FileStore.open(root)
      return store
    }
  }
}

const ranges = (...pairs: Array<[number, string]>): Buffer => encodeRanges(pairs.map(([offset, text]) => ({ offset, data: Buffer.from(text) })))

/** What the store's disk holds for its file /db (a range write in place, or a copy renamed over it). */
async function onDisk (root: string): Promise<string> {
  return await fsp.readFile(path.join(root, 'db'), 'utf8')
}

t.test('ranges land at their offsets, the size is set, one version up; a stale version is a conflict; a retry applies once', async (t) => {
  const { store, root } = await storeWith(t, 'aaaaaaaaaa')
  const before = await store.stat('/db')
  const after = await store.writeRanges('/db', ranges([1, 'XY'], [6, 'Z']), 12, before.version, undefined, 'change-1')
  t.equal(after.version, before.version + 1)
  t.equal(await onDisk(root), 'aXYaaaZaaa\0\0')
  await t.rejects(store.writeRanges('/db', ranges([0, 'Q']), 12, before.version), ConflictError, 'built on an older version')
  const again = await store.writeRanges('/db', ranges([1, 'XY'], [6, 'Z']), 12, before.version, undefined, 'change-1')
  t.equal(again.version, after.version, 'the retry of an applied change is not applied again')
  t.equal((await store.writeRanges('/db', ranges(), 4, after.version)).size, 4, 'a cut alone')
  t.equal(await onDisk(root), 'aXYa')
  await t.rejects(store.writeRanges('/db', ranges([3, 'long']), 4, after.version + 1), BadRequestError, 'a range past the size')
  t.throws(() => decodeRanges(ranges([0, 'abc']).subarray(0, 14)), BadRequestError, 'a body cut short')
})

t.test('a reader streaming the file keeps the bytes it started with', async (t) => {
  const { store, root } = await storeWith(t, 'x'.repeat(4 * 1024 * 1024))
  const current = await store.stat('/db')
  const { stream } = await store.openRead('/db')
  await store.writeRanges('/db', ranges([0, 'NEW']), current.size, current.version)
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  t.equal(Buffer.concat(chunks).subarray(0, 3).toString(), 'xxx', 'the old bytes')
  t.equal((await onDisk(root)).slice(0, 4), 'NEWx')
})

t.test('an intent a crash left before its write was answered is done again at start; a stale, foreign or torn one is not', async (t) => {
  const { store, root, reopen } = await storeWith(t, 'abcdefgh')
  const { version } = await store.stat('/db')
  // Each in a slot of its own, as writes at once on several files leave them.
  const record = async (intent: RangeIntent): Promise<IntentSlot> => {
    const slot = await (await RangeJournal.open(path.join(root, STATE_DIR_NAME))).record(intent)
    await slot.handle.close()
    return slot
  }
  // Cut short before the version line: the intent is on disk, the file and version untouched.
  await record({ path: '/db', fromVersion: version, size: 6, body: ranges([0, 'XY']) })
  let reopened = await reopen()
  t.equal(await onDisk(root), 'XYcdef', 'replayed whole')
  t.equal((await reopened.stat('/db')).version, version + 1)
  t.same(await fsp.readdir(path.join(root, STATE_DIR_NAME, 'ranges')), [], 'the start empties the journal')
  // Cut short after the version line, before the bytes reached the disk: replayed, the version kept.
  await reopened.writeRanges('/db', ranges([0, 'QR']), 6, version + 1)
  await fsp.writeFile(path.join(root, 'db'), 'XYcdef')
  await record({ path: '/db', fromVersion: version + 1, size: 6, body: ranges([0, 'QR']) })
  reopened = await reopen()
  t.equal(await onDisk(root), 'QRcdef', 'replayed over the old bytes')
  t.equal((await reopened.stat('/db')).version, version + 2, 'no version more')
  // Answered long ago (a slot keeps its last intent): the version moved past it, so it is not replayed over later changes.
  await reopened.writeRanges('/db', ranges([0, 'LATER']), 6, version + 2)
  await record({ path: '/db', fromVersion: version + 1, size: 6, body: ranges([0, 'XY']) })
  // Made for another file that had the path: not replayed into this one.
  await record({ path: '/db', fromVersion: version + 3, size: 2, body: ranges([0, 'NO']), inode: '1:2' })
  // Torn: its bytes never fully reached the disk.
  const torn = await record({ path: '/db', fromVersion: version + 3, size: 2, body: ranges([0, 'QQ']) })
  await fsp.truncate(torn.file, (await fsp.stat(torn.file)).size - 1)
  reopened = await reopen()
  t.equal(await onDisk(root), 'LATERf')
  t.equal((await reopened.stat('/db')).version, version + 3)
  t.same(await fsp.readdir(path.join(root, STATE_DIR_NAME, 'ranges')), [], 'no intent left')
})

t.test('slots are reused: an intent shorter than the one before it in the slot is read by its own length', async (t) => {
  const { store, root, reopen } = await storeWith(t, 'abcdefgh')
  const { version } = await store.stat('/db')
  // Each write shorter than the one before: the slot holds the older, longer bytes past the newest intent.
  for (let i = 0; i < 5; i++) await store.writeRanges('/db', ranges([i, String.fromCharCode(65 + i).repeat(8 - i)]), 8, version + i)
  t.equal(await onDisk(root), 'ABCDEEEE')
  t.equal((await fsp.readdir(path.join(root, STATE_DIR_NAME, 'ranges'))).length, 1, 'one slot for writes one after the other')
  const journal = await RangeJournal.open(path.join(root, STATE_DIR_NAME))
  const pending = await journal.pending()
  await journal.close()
  t.same(pending.map(({ fromVersion, body }) => [fromVersion, decodeRanges(body).map(({ offset, data }) => [offset, data.toString()])]),
    [[version + 4, [[4, 'EEEE']]]], 'the newest intent, by its own length')
  // Answered, so on disk: replaying it at start changes nothing, and the version stays.
  const reopened = await reopen()
  t.equal(await onDisk(root), 'ABCDEEEE')
  t.equal((await reopened.stat('/db')).version, version + 5)
})

t.test('an intent cancelled (its write failed before the first byte) is not replayed, and its slot is reused', async (t) => {
  const { store, root, reopen } = await storeWith(t, 'abcdefgh')
  const { version } = await store.stat('/db')
  const journal = await RangeJournal.open(path.join(root, STATE_DIR_NAME))
  const slot = await journal.record({ path: '/db', fromVersion: version, size: 8, body: ranges([0, 'XY']) })
  t.equal((await journal.pending()).length, 1, 'on disk once recorded')
  await journal.cancel(slot)
  t.same(await journal.pending(), [], 'gone once cancelled')
  t.equal(await journal.record({ path: '/db', fromVersion: version, size: 8, body: ranges([0, 'Q']) }), slot, 'the same slot takes the next intent')
  await slot.handle.close()
  // That next intent was never cancelled: a start replays it (the store never wrote it, as a crash would leave it).
  await reopen()
  t.equal(await onDisk(root), 'Qbcdefgh', 'the cancelled intent is not replayed, the next one is')
})

t.test('dirty ranges merge, and a truncation makes the whole tail dirty', async (t) => {
  const dirty = new DirtyRanges()
  dirty.add(10, 20)
  dirty.add(30, 40)
  dirty.add(18, 31)
  dirty.add(100, 110)
  t.same(dirty.within(105), [[10, 40], [100, 105]], 'within: what a store would take of a file of that size')
  t.same(dirty.take(200), [[10, 40], [100, 110]], 'left in place by within')
  t.same(dirty.take(200), [], 'taken')
  dirty.add(0, 5)
  dirty.truncated(50)
  dirty.add(60, 70)
  t.same(dirty.take(70), [[0, 5], [50, 70]])
  dirty.give([[1, 2]])
  t.same(dirty.take(10), [[1, 2]])
})

t.test('a range write is answered before its fsyncs; the next change of the file and the store\'s close wait for them', async (t) => {
  const { store, root, reopen } = await storeWith(t, 'aaaaaaaaaa')
  const before = await store.stat('/db')
  const problemsBefore = recentProblems(100).length
  const first = await store.writeRanges('/db', ranges([0, 'B']), 10, before.version, undefined, 'change-a')
  t.equal(first.version, before.version + 1, 'answered with its version')
  t.equal((await store.stat('/db')).version, first.version, 'which counts at once')
  // Answered before its fsyncs are done: its intent is still in use, so a second write takes a slot of its own.
  const second = await store.writeRanges('/db', ranges([1, 'C']), 10, first.version, undefined, 'change-b')
  t.equal(second.version, first.version + 1, 'the next write of the file is built on it')
  t.equal(await onDisk(root), 'BCaaaaaaaa')
  const third = store.writeRanges('/db', ranges([2, 'D']), 10, second.version)
  const reopened = await reopen()
  t.equal((await third).version, second.version + 1, 'a write answered just before the close')
  t.equal(recentProblems(100).length, problemsBefore, 'the close waited for its fsyncs: none failed')
  t.equal((await reopened.stat('/db')).version, second.version + 1, 'every version on disk')
  t.equal(await onDisk(root), 'BCDaaaaaaa')
  t.same(await fsp.readdir(path.join(root, STATE_DIR_NAME, 'ranges')), [], 'no intent left to replay')
})
