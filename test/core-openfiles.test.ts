import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import type { DfsClient } from '../src/client/dfsClient'
import { OpenFileTable } from '../src/client/openFiles'
import { BadRequestError, LockTimeoutError, StaleHandleError } from '../src/shared/errors'
import { MEMORY_COPIES_BYTES, MEMORY_COPY_BYTES } from '../src/client/workingCopy'
import { callbackClient, startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { waitFor } from './helpers/waitFor'

// The open-file table behind the mount, driven directly (no FUSE) against a real cluster:
// each OpenFileTable over its own DfsClient (own cache folder) stands for one machine.

const { O_RDONLY, O_WRONLY, O_RDWR, O_APPEND } = fs.constants

/** What the file server's disk holds for a path: no client cache involved. */
function onDisk (cluster: TestCluster, file: string): string {
  return fs.readFileSync(path.join(cluster.roots[0], file), 'utf8')
}

/** What another machine reads: a fresh client with a cache of its own, revalidated at each read. */
async function seenElsewhere (client: DfsClient, file: string): Promise<string> {
  return (await client.readFile(file)).toString()
}

async function write (table: OpenFileTable, id: number, text: string, position: number): Promise<void> {
  const data = Buffer.from(text)
  const written = await table.write(id, data, position)
  if (written !== data.length) throw new Error(`short write: ${written} of ${data.length}`)
}

/** Reads a handle from `position` to its end, as cat does, in small chunks. */
async function readAll (table: OpenFileTable, id: number, position = 0): Promise<string> {
  const chunks: Buffer[] = []
  for (;;) {
    const buffer = Buffer.alloc(7)
    const n = await table.read(id, buffer, buffer.length, position)
    if (n === 0) break
    chunks.push(buffer.subarray(0, n))
    position += n
  }
  return Buffer.concat(chunks).toString()
}

async function errorOf (promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(() => null, (err: unknown) => err)
}

/** One machine's open-file table. */
function tableFor (_t: Test, client: DfsClient): OpenFileTable {
  return new OpenFileTable(client)
}

t.test('appends through one handle are held back until flush, then land whole and in order', async (t) => {
  const cluster = await startTestCluster(t, [{ 'log.txt': 'start\n' }])
  const table = tableFor(t, cluster.client())
  const other = cluster.client()
  const before = (await other.statFresh('/log.txt')).version

  const id = await table.open('/log.txt', O_WRONLY | O_APPEND)
  // With O_APPEND the position the kernel passes does not matter: the bytes go at the end.
  await write(table, id, 'one\n', 0)
  await write(table, id, 'two\n', 0)
  await write(table, id, 'three\n', 999)
  t.equal(onDisk(cluster, 'log.txt'), 'start\n', 'nothing on the server\'s disk before flush')
  t.equal(await seenElsewhere(other, '/log.txt'), 'start\n', 'nor for another machine')
  t.equal((await other.statFresh('/log.txt')).version, before, 'the version has not moved')

  await table.flush(id)
  t.equal(onDisk(cluster, 'log.txt'), 'start\none\ntwo\nthree\n', 'after flush: all of it, in order')
  t.equal(await seenElsewhere(other, '/log.txt'), 'start\none\ntwo\nthree\n', 'another machine reads it')
  t.equal((await other.statFresh('/log.txt')).version, before + 1, 'one flush, one append: the version goes up by one')

  await write(table, id, 'four\n', 0)
  t.equal(onDisk(cluster, 'log.txt'), 'start\none\ntwo\nthree\n', 'a write after the flush waits for the next one')
  await table.release(id)
  t.equal(onDisk(cluster, 'log.txt'), 'start\none\ntwo\nthree\nfour\n', 'release sends the rest')
  t.equal((await other.statFresh('/log.txt')).version, before + 2)
  t.equal(await seenElsewhere(other, '/log.txt'), 'start\none\ntwo\nthree\nfour\n')
  await t.rejects(table.flush(id), BadRequestError, 'the handle is gone after release')
})

t.test('two handles of one table appending in turn: each one\'s lines, in the order they were closed', async (t) => {
  const cluster = await startTestCluster(t, [{ 'log.txt': '' }])
  const table = tableFor(t, cluster.client())
  const other = cluster.client()

  const a = await table.open('/log.txt', O_WRONLY | O_APPEND)
  await write(table, a, 'a1\n', 0)
  await write(table, a, 'a2\n', 0)
  await table.release(a)
  const b = await table.open('/log.txt', O_WRONLY | O_APPEND)
  await write(table, b, 'b1\n', 0)
  await write(table, b, 'b2\n', 0)
  t.equal(onDisk(cluster, 'log.txt'), 'a1\na2\n', 'the second handle\'s lines are not sent before its close')
  await table.release(b)
  const c = await table.open('/log.txt', O_WRONLY | O_APPEND)
  await write(table, c, 'a3\n', 0)
  await table.release(c)
  t.equal(onDisk(cluster, 'log.txt'), 'a1\na2\nb1\nb2\na3\n', 'one after the other, nothing lost or doubled')
  t.equal(await seenElsewhere(other, '/log.txt'), 'a1\na2\nb1\nb2\na3\n')

  // Both open at once, each writing then closing: what each closes lands as one run.
  const d = await table.open('/log.txt', O_WRONLY | O_APPEND)
  const e = await table.open('/log.txt', O_WRONLY | O_APPEND)
  await write(table, e, 'e1\n', 0)
  await write(table, e, 'e2\n', 0)
  await table.release(e)
  await write(table, d, 'd1\n', 0)
  await table.release(d)
  t.equal(onDisk(cluster, 'log.txt'), 'a1\na2\nb1\nb2\na3\ne1\ne2\nd1\n', 'two open handles, closed one after the other')
})

t.test('two handles of one table whose appends interleave keep the order of the write() calls', async (t) => {
  // On a local disk, write(a) write(b) write(a) on two O_APPEND descriptors leaves a1 b1 a2:
  // the handles of one path share one buffer of pending appends, as they share one end.
  const cluster = await startTestCluster(t, [{ 'log.txt': '' }])
  const table = tableFor(t, cluster.client())
  const a = await table.open('/log.txt', O_WRONLY | O_APPEND)
  const b = await table.open('/log.txt', O_WRONLY | O_APPEND)
  await write(table, a, 'a1\n', 0)
  await write(table, b, 'b1\n', 0)
  await write(table, a, 'a2\n', 0)
  await table.release(a)
  await table.release(b)
  const text = onDisk(cluster, 'log.txt')
  t.equal(text.split('\n').filter(Boolean).sort().join(' '), 'a1 a2 b1', 'every line is there once')
  t.equal(text, 'a1\nb1\na2\n', 'in the order of the write() calls')
})

t.test('a second machine appending to the same file: both sets of lines, each in order', async (t) => {
  const cluster = await startTestCluster(t, [{ 'log.txt': 'start\n' }])
  const one = tableFor(t, cluster.client())
  const two = tableFor(t, cluster.client())

  const a = await one.open('/log.txt', O_WRONLY | O_APPEND)
  const b = await two.open('/log.txt', O_WRONLY | O_APPEND)
  await write(one, a, 'one-1\n', 0)
  await write(two, b, 'two-1\n', 0)
  await write(one, a, 'one-2\n', 0)
  await write(two, b, 'two-2\n', 0)
  t.equal(onDisk(cluster, 'log.txt'), 'start\n', 'neither is on the server before its flush')
  await one.flush(a)
  t.equal(onDisk(cluster, 'log.txt'), 'start\none-1\none-2\n', 'the first machine\'s lines after its flush')
  await two.release(b)
  await write(one, a, 'one-3\n', 0)
  await one.release(a)
  const expected = 'start\none-1\none-2\ntwo-1\ntwo-2\none-3\n'
  t.equal(onDisk(cluster, 'log.txt'), expected, 'the second machine\'s lines were appended, not written over the first\'s')
  t.equal(await seenElsewhere(cluster.client(), '/log.txt'), expected, 'a third machine reads all of it')

  // And each table, reopening, sees the other's lines (close-to-open).
  for (const [name, table] of [['one', one], ['two', two]] as const) {
    const r = await table.open('/log.txt', O_RDONLY)
    t.equal(await readAll(table, r), expected, `table ${name} reads both sets of lines after a new open`)
    await table.release(r)
  }
})

t.test('a write inside the file is stored whole on flush (store-on-close), under the lock, given back on release', async (t) => {
  const original = 'hello world, this is the old text\n'
  const cluster = await startTestCluster(t, [{ 'doc.txt': original }])
  const table = tableFor(t, cluster.client())
  const other = cluster.client()
  // A writer that gives up quickly: it shows whether the lock is held, and that it is free at once after.
  const impatient = cluster.client({ lockTimeoutMs: 300 })
  const before = await other.statFresh('/doc.txt')

  const id = await table.open('/doc.txt', O_RDWR)
  await write(table, id, 'HELLO', 0)
  await write(table, id, 'WORLD', 6)
  t.equal(onDisk(cluster, 'doc.txt'), original, 'the server\'s disk keeps the old content while the handle is open')
  t.equal(await seenElsewhere(other, '/doc.txt'), original, 'another machine reads the old content')
  t.equal(await readAll(table, id), 'HELLO WORLD, this is the old text\n', 'the handle reads its own writes')
  t.equal(table.localView(await other.statFresh('/doc.txt')).size, original.length, 'same size: nothing pending on top')
  const blocked = await errorOf(impatient.append('/doc.txt', 'intruder\n'))
  t.type(blocked, LockTimeoutError, 'the writer holds the file\'s lock: another machine\'s append waits, then gives up')

  await table.flush(id)
  const stored = 'HELLO WORLD, this is the old text\n'
  t.equal(onDisk(cluster, 'doc.txt'), stored, 'after flush the server has the whole new content')
  t.equal(await seenElsewhere(other, '/doc.txt'), stored, 'and another machine reads it')
  const after = await other.statFresh('/doc.txt')
  t.ok(after.version > before.version, `the version went up (${before.version} -> ${after.version})`)
  t.equal(after.size, stored.length)

  // Nothing unstored after the flush, and no lock server can ask this client for the key
  // (it has no channel): the lock goes back now, not at the release, so another machine's
  // append need not wait for the close...
  await impatient.append('/doc.txt', 'intruder\n')
  t.equal(onDisk(cluster, 'doc.txt'), stored + 'intruder\n', 'after the flush another machine appends while the handle is open')
  // ...and the handle's next write takes the lock again, on the file as it is now.
  await write(table, id, 'hello', 0)
  const rewritten = 'hello WORLD, this is the old text\nintruder\n'
  t.equal(await readAll(table, id), rewritten, 'the handle reads the other machine\'s append under its own new write')
  t.type(await errorOf(impatient.append('/doc.txt', 'later\n')), LockTimeoutError, 'with a change unstored, the lock is held again')
  await table.release(id)
  t.equal(onDisk(cluster, 'doc.txt'), rewritten, 'the release stored the file with both')
  const started = Date.now()
  await impatient.append('/doc.txt', 'next\n')
  t.ok(Date.now() - started < 1000, 'after release another machine writes at once')
  t.equal(onDisk(cluster, 'doc.txt'), rewritten + 'next\n')
})

/**
 * doc.txt ('one\n') open read-write on a client whose channel to the lock server is up (so its
 * lease is delegated), written in place ('ONE') and flushed; and another client to ask for the key.
 */
async function heldOpenAndStored (t: Test, otherLockTimeoutMs: number): Promise<{ cluster: TestCluster, holder: DfsClient, table: OpenFileTable, other: DfsClient, id: number }> {
  const cluster = await startTestCluster(t, [{ 'doc.txt': 'one\n' }])
  const holder = await callbackClient(t, cluster, '/doc.txt')
  await waitFor('the channel to the lock server', async () => holder.delegations?.ready() === true || undefined)
  const table = tableFor(t, holder)
  const other = cluster.client({ lockTimeoutMs: otherLockTimeoutMs })
  const id = await table.open('/doc.txt', O_RDWR)
  await write(table, id, 'ONE', 0)
  await table.flush(id)
  return { cluster, holder, table, other, id }
}

t.test('a file held open for writing hands its delegated lease over when recalled with nothing unstored, and its next write builds on the other change', async (t) => {
  const { cluster, holder, table, other, id } = await heldOpenAndStored(t, 10_000)
  t.equal(onDisk(cluster, 'doc.txt'), 'ONE\n', 'the flush stored the change')
  t.equal(holder.locks.kept?.count, 1, 'the lease is kept after the store: delegated, so the lock server can recall it')
  await other.append('/doc.txt', 'two\n')
  t.equal(onDisk(cluster, 'doc.txt'), 'ONE\ntwo\n', 'recalled, the lease went to the other client at once, the file still open here')
  t.equal(holder.locks.kept?.count, 0, 'given back')
  t.equal(table.localView(await holder.statFresh('/doc.txt')).size, 8, 'the size shown is the server\'s')
  await write(table, id, 'o', 1)
  t.equal(await readAll(table, id), 'OoE\ntwo\n', 'the next write took the lease again, on the file as the other client left it')
  // Asked for with a change unstored: the key goes over once the change is stored (by the
  // flush here, or by the table's own store after a pause, whichever comes first), not before.
  const late = other.append('/doc.txt', 'three\n')
  await table.flush(id)
  await late
  t.equal(onDisk(cluster, 'doc.txt'), 'OoE\ntwo\nthree\n', 'the other client\'s append landed after the store, the file still open here')
  t.same(fs.readdirSync(cluster.roots[0]).filter((name) => name.includes('.conflict-')), [], 'and no store lost its place (no conflict copy)')
  await table.release(id)
  t.equal(onDisk(cluster, 'doc.txt'), 'OoE\ntwo\nthree\n', 'the release had nothing more to store')
})

t.test('a file held open for writing that another client removed once it had the key: the next write is ESTALE, and nothing comes back', async (t) => {
  const { cluster, table, other, id } = await heldOpenAndStored(t, 5000)
  await other.unlink('/doc.txt')
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'doc.txt')), 'the other client removed the file while it is open here')
  t.type(await errorOf(write(table, id, 'again', 0)), StaleHandleError, 'the next write here is told the file is gone (ESTALE)')
  await table.release(id)
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'doc.txt')), 'the release brings nothing back')
})

t.test('a write inside the file then a write past its end: both stored together on release', async (t) => {
  const cluster = await startTestCluster(t, [{ 'doc.txt': '0123456789' }])
  const table = tableFor(t, cluster.client())
  const id = await table.open('/doc.txt', O_WRONLY)
  await write(table, id, 'ab', 2)
  await write(table, id, 'XYZ', 10) // at the end, but the handle is on the working copy now
  t.equal(onDisk(cluster, 'doc.txt'), '0123456789')
  t.equal(table.localView(await cluster.client().statFresh('/doc.txt')).size, 13, 'localView counts the working copy\'s size')
  await table.release(id)
  t.equal(onDisk(cluster, 'doc.txt'), '01ab456789XYZ')
})

t.test('two machines writing inside one file: the second waits for the first\'s lock and starts from its stored version', async (t) => {
  const cluster = await startTestCluster(t, [{ 'doc.txt': '....\n' }])
  const one = tableFor(t, cluster.client())
  const two = tableFor(t, cluster.client())
  const a = await one.open('/doc.txt', O_RDWR)
  const b = await two.open('/doc.txt', O_RDWR)
  await write(one, a, 'A', 0)
  let secondDone = false
  const second = write(two, b, 'B', 1).then(() => { secondDone = true })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.notOk(secondDone, 'the second machine\'s write waits for the lock the first holds')
  await one.release(a)
  await second
  t.equal(await readAll(two, b), 'AB..\n', 'its working copy is the version the first stored, not what it opened')
  await two.release(b)
  t.equal(onDisk(cluster, 'doc.txt'), 'AB..\n', 'no lost update: both changes are on the server')
})

t.test('ftruncate through a handle lands with the store, not before', async (t) => {
  const cluster = await startTestCluster(t, [{ 'doc.txt': 'keep this; drop the rest\n' }])
  const table = tableFor(t, cluster.client())
  const other = cluster.client()
  const before = (await other.statFresh('/doc.txt')).version

  const id = await table.open('/doc.txt', O_RDWR)
  await table.truncate(id, 9)
  t.equal(onDisk(cluster, 'doc.txt'), 'keep this; drop the rest\n', 'the server keeps the old content while open')
  t.equal(await seenElsewhere(other, '/doc.txt'), 'keep this; drop the rest\n')
  t.equal(table.localView(await other.statFresh('/doc.txt')).size, 9, 'localView shows the cut size')
  t.equal(await readAll(table, id), 'keep this', 'the handle reads the cut copy')
  await write(table, id, '!\n', 9)
  await table.release(id)
  t.equal(onDisk(cluster, 'doc.txt'), 'keep this!\n', 'after release: cut, then written')
  t.equal(await seenElsewhere(other, '/doc.txt'), 'keep this!\n')
  t.ok((await other.statFresh('/doc.txt')).version > before, 'the version went up')

  // Extending with zeros, as ftruncate to a larger size does.
  const grow = await table.open('/doc.txt', O_WRONLY)
  await table.truncate(grow, 14)
  await table.release(grow)
  t.same(fs.readFileSync(path.join(cluster.roots[0], 'doc.txt')), Buffer.concat([Buffer.from('keep this!\n'), Buffer.alloc(3)]), 'grown with zero bytes')
})

t.test('echo x > f: open(O_WRONLY), truncate(path, 0), write at 0, release: the server never shows the empty file', async (t) => {
  // The kernel's order for open(O_TRUNC) on a FUSE mount: the open comes first, then a truncate
  // of the path with no handle (see truncatePath and commit 23033d9); it goes to the open writer.
  const cluster = await startTestCluster(t, [{ 'f.txt': 'old content\n' }])
  const table = tableFor(t, cluster.client())
  const other = cluster.client()
  const before = (await other.statFresh('/f.txt')).version

  const id = await table.open('/f.txt', O_WRONLY)
  t.equal(await seenElsewhere(other, '/f.txt'), 'old content\n', 'after open')
  await table.truncatePath('/f.txt', 0)
  t.equal(await seenElsewhere(other, '/f.txt'), 'old content\n', 'after truncate(path, 0): not emptied on the server')
  t.equal(onDisk(cluster, 'f.txt'), 'old content\n')
  t.equal(table.localView(await other.statFresh('/f.txt')).size, 0, 'but this table shows it empty')
  await write(table, id, 'x\n', 0)
  t.equal(await seenElsewhere(other, '/f.txt'), 'old content\n', 'after the write')
  t.equal(table.localView(await other.statFresh('/f.txt')).size, 2, 'this table shows the new size')
  await table.release(id)
  t.equal(await seenElsewhere(other, '/f.txt'), 'x\n', 'after release: the new content, whole')
  t.equal(onDisk(cluster, 'f.txt'), 'x\n')
  t.equal((await other.statFresh('/f.txt')).version, before + 1, 'one store: the version goes up by one')
  t.equal((await cluster.client({ lockTimeoutMs: 300 }).append('/f.txt', 'y\n')).size, 4, 'and the lock is free')
})

t.test('truncate(path, 0) with no handle open goes to the server at once (as truncate -s 0 does)', async (t) => {
  // The brief's order for `echo x > f` was truncatePath first, then open. With nothing open the
  // table cannot know a write will follow, so the server is emptied at once: between the two
  // steps other machines see the empty file. The kernel sends the open first (test above).
  const cluster = await startTestCluster(t, [{ 'f.txt': 'old content\n' }])
  const table = tableFor(t, cluster.client())
  const other = cluster.client()
  await table.truncatePath('/f.txt', 0)
  t.equal(await seenElsewhere(other, '/f.txt'), '', 'emptied on the server at once')
  const id = await table.open('/f.txt', O_WRONLY)
  await write(table, id, 'x\n', 0)
  t.equal(await seenElsewhere(other, '/f.txt'), '', 'the write waits for the close')
  await table.release(id)
  t.equal(await seenElsewhere(other, '/f.txt'), 'x\n')
})

t.test('close-to-open: a new open sees what was stored; a reader sees another machine\'s append after it reopens', async (t) => {
  const cluster = await startTestCluster(t, [{ 'doc.txt': 'v1\n' }])
  const one = tableFor(t, cluster.client())
  const two = tableFor(t, cluster.client())

  // The same table: overwrite, release, reopen for reading.
  const r0 = await one.open('/doc.txt', O_RDONLY)
  t.equal(await readAll(one, r0), 'v1\n')
  await one.release(r0)
  const w = await one.open('/doc.txt', O_RDWR)
  await write(one, w, 'V2', 0)
  await one.release(w)
  const r1 = await one.open('/doc.txt', O_RDONLY)
  t.equal(await readAll(one, r1), 'V2\n', 'a new open after release reads the new content')
  await one.release(r1)

  // Another machine: its reader opened before, stays on its copy until it reopens.
  const reader = await two.open('/doc.txt', O_RDONLY)
  t.equal(await readAll(two, reader), 'V2\n', 'the other machine\'s reader, opened now')
  const appender = await one.open('/doc.txt', O_WRONLY | O_APPEND)
  await write(one, appender, 'more\n', 0)
  await one.release(appender)
  t.equal(onDisk(cluster, 'doc.txt'), 'V2\nmore\n')
  const reopened = await two.open('/doc.txt', O_RDONLY)
  t.equal(await readAll(two, reopened), 'V2\nmore\n', 'a reopen on the other machine sees the appended bytes')
  await two.release(reopened)
  await two.release(reader)

  // A reader of the same table sees the table's own pending appends (sent before the read).
  const mine = await one.open('/doc.txt', O_RDONLY)
  const tail = await one.open('/doc.txt', O_WRONLY | O_APPEND)
  await write(one, tail, 'own\n', 0)
  t.equal(await readAll(one, mine), 'V2\nmore\nown\n', 'a reader of the same table reads the other handle\'s append')
  t.equal(onDisk(cluster, 'doc.txt'), 'V2\nmore\nown\n', 'which that read sent to the server')
  await one.release(tail)
  await one.release(mine)
})

t.test('a reader reads its own table\'s appends even when another machine appended in between', async (t) => {
  // The table's append cannot extend the cached copy the reader has open (the cache is a
  // version behind), so the cache drops it; the reader must reopen rather than read the old copy.
  const cluster = await startTestCluster(t, [{ 'log.txt': 'v1\n' }])
  const one = tableFor(t, cluster.client())
  const reader = await one.open('/log.txt', O_RDONLY)
  t.equal(await readAll(one, reader), 'v1\n')
  await cluster.client().append('/log.txt', 'other\n')
  const writer = await one.open('/log.txt', O_WRONLY | O_APPEND)
  await write(one, writer, 'own\n', 0)
  t.equal(await readAll(one, reader), 'v1\nother\nown\n', 'the read sends the pending append and reads the file as it now is')
  await one.release(writer)
  await one.release(reader)
})

t.test('localView counts the pending bytes of open handles', async (t) => {
  const cluster = await startTestCluster(t, [{ 'log.txt': '12345' }, { 'other.txt': 'x' }])
  const client = cluster.client()
  const table = tableFor(t, client)
  const meta = await client.statFresh('/log.txt')
  t.equal(table.localView(meta), meta, 'no handle: the server\'s meta as it is')

  const a = await table.open('/log.txt', O_WRONLY | O_APPEND)
  const b = await table.open('/log.txt', O_WRONLY | O_APPEND)
  await write(table, a, 'abc', 0)
  t.equal(table.localView(meta).size, 8, 'one handle\'s pending bytes')
  await write(table, b, 'defg', 0)
  t.equal(table.localView(meta).size, 12, 'two handles\' pending bytes')
  t.equal(table.localView(meta).version, meta.version, 'the rest of the meta as it was')
  t.equal(meta.size, 5, 'the meta given is not changed')
  const otherMeta = await client.statFresh('/other.txt')
  t.equal(table.localView(otherMeta).size, 1, 'another path is not affected')

  // The handles of a path share its pending appends: a flush of one sends them all, in order.
  await table.flush(a)
  const flushed = await client.statFresh('/log.txt')
  t.equal(flushed.size, 12, 'the server has every handle\'s bytes after one flush')
  t.equal(table.localView(flushed).size, 12, 'and nothing is counted twice')
  await write(table, b, 'h', 0)
  t.equal(table.localView(flushed).size, 13, 'a write after the flush is counted again')
  await table.release(b)
  const all = await client.statFresh('/log.txt')
  t.equal(all.size, 13)
  t.equal(table.localView(all).size, 13, 'nothing pending: nothing added')
  await table.release(a)
  const folder = await client.stat('/')
  t.equal(table.localView(folder), folder, 'a folder is answered as it is')
})

t.test('errors: a missing file, an unknown handle, a read on a write-only handle', async (t) => {
  const cluster = await startTestCluster(t, [{ 'here.txt': 'x' }])
  const table = tableFor(t, cluster.client())
  for (const [name, flags] of [['O_RDONLY', O_RDONLY], ['O_WRONLY', O_WRONLY], ['O_RDWR', O_RDWR], ['O_WRONLY|O_APPEND', O_WRONLY | O_APPEND]] as const) {
    const err = await errorOf(table.open('/missing.txt', flags))
    // Only the kernel opens, after a lookup: a file gone by then is stale, and the kernel looks again.
    t.type(err, StaleHandleError, `open(${name}) of a missing file: StaleHandleError (${String(err)})`)
    t.equal((err as StaleHandleError).errno, 'ESTALE')
  }

  const unknown = 4242
  t.type(await errorOf(table.read(unknown, Buffer.alloc(4), 4, 0)), BadRequestError, 'read on an unknown handle id: BadRequestError')
  t.type(await errorOf(table.write(unknown, Buffer.from('x'), 0)), BadRequestError, 'write on an unknown handle id')
  t.type(await errorOf(table.flush(unknown)), BadRequestError, 'flush on an unknown handle id')
  t.type(await errorOf(table.release(unknown)), BadRequestError, 'release of an unknown handle id')

  const id = await table.open('/here.txt', O_WRONLY | O_APPEND)
  t.type(await errorOf(table.read(id, Buffer.alloc(4), 4, 0)), BadRequestError, 'read on a write-only handle')
  await table.release(id)
  t.type(await errorOf(table.read(id, Buffer.alloc(4), 4, 0)), BadRequestError, 'read on a released handle')
})

t.test('a sequential write past the pending limit sends full buffers while the next fills: every byte in place, as appends, sizes never dip', async (t) => {
  const cluster = await startTestCluster(t, [{ 'big.bin': '' }])
  // 64-byte buffers: each write of 40 bytes may start a send that runs while the next is taken.
  const table = new OpenFileTable(cluster.client(), 64)
  const id = await table.open('/big.bin', O_WRONLY)
  let expected = ''
  for (let i = 0; i < 60; i++) {
    const chunk = `${String(i).padStart(3, '0')}:${'abcdefghij'.repeat(3)}......\n`
    await write(table, id, chunk, expected.length) // positions as the kernel passes them (no O_APPEND)
    expected += chunk
    t.equal((await table.attributes('/big.bin')).size, expected.length, `size after write ${i}`)
  }
  await table.release(id)
  t.equal(onDisk(cluster, 'big.bin'), expected, 'every byte once, in order')
  const stats = cluster.fileServers[0].app.locals.stats
  t.ok(stats.appends > 10, `sent as appends (${stats.appends}), in several sends`)
  t.equal(stats.overwrites, 0, 'never through a working copy (a write at the right position is an append while a send runs)')
})

t.test('a copy started empty is held in memory while small: no file in the work folder, holes and truncations as in a file, stored whole', async (t) => {
  const cluster = await startTestCluster(t, [{ 'f.txt': 'old content that is longer\n' }])
  const client = cluster.client()
  const table = tableFor(t, client)
  const other = cluster.client()
  const id = await table.open('/f.txt', O_RDWR)
  const reader = await table.open('/f.txt', O_RDONLY)
  await table.truncatePath('/f.txt', 0)
  await write(table, id, 'abcdefghij', 0)
  await table.truncate(id, 4)
  // Past the end after a truncation: a hole of zeros, not the bytes cut off.
  await write(table, id, 'XY', 8)
  const expected = 'abcd\0\0\0\0XY'
  t.equal(await readAll(table, reader), expected, 'another handle of this table reads the copy as it is')
  t.same(fs.existsSync(client.workDir) ? fs.readdirSync(client.workDir) : [], [], 'and no file was made for it in the work folder')
  await table.release(id)
  await table.release(reader)
  t.equal(onDisk(cluster, 'f.txt'), expected, 'stored whole')
  t.equal(await seenElsewhere(other, '/f.txt'), expected, 'another machine reads it')
  t.equal((await client.readFile('/f.txt')).toString(), expected, 'and so does this one')
})

t.test('a journal made, its header rewritten and removed, as sqlite does at every transaction: from the second on, the copy starts from the bytes in memory, no file in the work folder', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db': 'pages\n' }])
  // With callbacks, as a mount's client: bytes held in memory are used while a callback vouches for them.
  const client = await callbackClient(t, cluster, '/db')
  const table = tableFor(t, client)
  for (const round of [1, 2, 3]) {
    // Made, written and fsynced (the create goes to the server), then its header rewritten through the same handle.
    const id = await table.create('/db-journal', 0o644)
    await write(table, id, `header:0 page-${round}\n`, 0)
    await table.flush(id, { staysOpen: true })
    t.equal(onDisk(cluster, 'db-journal'), `header:0 page-${round}\n`, `round ${round}: made on the server at the fsync`)
    await write(table, id, 'header:1', 0)
    const reader = await table.open('/db-journal', O_RDONLY)
    t.equal(await readAll(table, reader), `header:1 page-${round}\n`, 'another handle of this table reads the change over the old bytes')
    // The first journal is made with no lease kept yet: its bytes are not vouched for under one.
    if (round > 1) t.same(fs.existsSync(client.workDir) ? fs.readdirSync(client.workDir) : [], [], 'no file was made for the copy in the work folder')
    await table.flush(id, { staysOpen: true })
    t.equal(onDisk(cluster, 'db-journal'), `header:1 page-${round}\n`, 'the change is stored at the next fsync')
    await table.release(id)
    await table.release(reader)
    t.equal(await seenElsewhere(cluster.client(), '/db-journal'), `header:1 page-${round}\n`, 'another machine reads it')
    await table.settle('/db-journal')
    await client.unlink('/db-journal')
    t.notOk(fs.existsSync(path.join(cluster.roots[0], 'db-journal')), 'and it is removed')
  }
})

t.test('a copy started empty that grows past MEMORY_COPY_BYTES goes to a local file with every byte', async (t) => {
  const cluster = await startTestCluster(t, [{ 'big.bin': 'old\n' }])
  const client = cluster.client()
  const table = tableFor(t, client)
  const id = await table.open('/big.bin', O_RDWR)
  await table.truncatePath('/big.bin', 0)
  const first = Buffer.alloc(MEMORY_COPY_BYTES - 10, 'a')
  t.equal(await table.write(id, first, 0), first.length)
  t.same(fs.existsSync(client.workDir) ? fs.readdirSync(client.workDir) : [], [], 'in memory while it fits')
  const second = Buffer.alloc(100, 'b')
  t.equal(await table.write(id, second, first.length + 50), second.length)
  t.equal(fs.readdirSync(client.workDir).length, 1, 'a local file once it grows past')
  await table.truncate(id, first.length + 100)
  await table.release(id)
  const stored = fs.readFileSync(path.join(cluster.roots[0], 'big.bin'))
  const expected = Buffer.concat([first, Buffer.alloc(50), second.subarray(0, 50)])
  t.equal(stored.length, expected.length, 'the size as written and cut')
  t.ok(stored.equals(expected), 'every byte: the first write, the hole, the second write up to the cut')
  t.same(fs.readdirSync(client.workDir), [], 'and the local file is gone after the release')
})

t.test('copies held in memory share one budget (MEMORY_COPIES_BYTES): past it, a growing copy goes to a local file', async (t) => {
  const count = Math.ceil(MEMORY_COPIES_BYTES / MEMORY_COPY_BYTES) + 4
  const tree = Object.fromEntries(Array.from({ length: count }, (_, i) => [`f${i}.bin`, 'old\n']))
  const cluster = await startTestCluster(t, [tree])
  const client = cluster.client()
  const table = tableFor(t, client)
  const ids: number[] = []
  for (let i = 0; i < count; i++) {
    const id = await table.open(`/f${i}.bin`, O_RDWR)
    await table.truncatePath(`/f${i}.bin`, 0)
    const data = Buffer.alloc(MEMORY_COPY_BYTES - 1, 48 + (i % 10))
    t.equal(await table.write(id, data, 0), data.length)
    ids.push(id)
  }
  const onDiskCopies = fs.readdirSync(client.workDir).length
  t.ok(onDiskCopies >= 4 && onDiskCopies < count, `the copies past the budget went to local files (${onDiskCopies} of ${count})`)
  for (const id of ids) await table.release(id)
  for (const i of [0, count - 1]) {
    const stored = fs.readFileSync(path.join(cluster.roots[0], `f${i}.bin`))
    t.ok(stored.length === MEMORY_COPY_BYTES - 1 && stored.every((b) => b === 48 + (i % 10)), `f${i}.bin stored whole`)
  }
  t.same(fs.readdirSync(client.workDir), [], 'no local file left')
  // The budget is given back at the release: a new copy is held in memory again.
  const id = await table.open('/f0.bin', O_RDWR)
  await table.truncatePath('/f0.bin', 0)
  await write(table, id, 'small', 0)
  t.same(fs.readdirSync(client.workDir), [], 'a new copy is in memory again')
  await table.release(id)
})

t.test('writes that land while a copy moves from memory to a local file are all kept', async (t) => {
  const cluster = await startTestCluster(t, [{ 'f.bin': 'old\n' }])
  const table = tableFor(t, cluster.client())
  const id = await table.open('/f.bin', O_RDWR)
  await table.truncatePath('/f.bin', 0)
  const base = Buffer.alloc(MEMORY_COPY_BYTES - 100, 'a')
  t.equal(await table.write(id, base, 0), base.length)
  // The first goes past the bound (the copy moves to a file); the others land meanwhile, one
  // per turn of the event loop, so some come while the copy is written out and some after.
  const small = Array.from({ length: 200 }, (_, i) => ({ data: Buffer.from(`<${String(i).padStart(3, '0')}>`), at: i * 1000 }))
  const past = Buffer.alloc(200, 'z')
  const writes = [table.write(id, past, base.length)]
  for (const { data, at } of small) {
    await new Promise((resolve) => setImmediate(resolve))
    writes.push(table.write(id, data, at))
  }
  await Promise.all(writes)
  await table.release(id)
  const stored = fs.readFileSync(path.join(cluster.roots[0], 'f.bin'))
  t.equal(stored.length, base.length + past.length, 'the size with the write past the bound')
  t.ok(stored.subarray(base.length).equals(past), 'the write past the bound is there')
  const lost = small.filter(({ data, at }) => !stored.subarray(at, at + data.length).equals(data)).map(({ at }) => at)
  t.same(lost, [], 'and every write that landed meanwhile')
})

t.test('a hide of a file this table has already let go of (sqlite\'s journal closed and unlinked at once) removes it and copies nothing', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db-journal': 'journal bytes\n' }])
  const client = await callbackClient(t, cluster, '/db-journal')
  const table = tableFor(t, client)
  const id = await table.open('/db-journal', O_RDWR)
  t.equal(await readAll(table, id), 'journal bytes\n')
  await table.release(id)
  // libfuse still counts the file open (its release is answered, not yet counted) and hides it instead of unlinking it.
  const local = path.join(fs.mkdtempSync(path.join(client.workDir, '..', 'hide-')), 'copy')
  let removed = 0
  const survivors = await table.detach('/db-journal', local, async () => {
    removed++
    await client.unlink('/db-journal')
  })
  t.same(survivors, [], 'no descriptor lives on')
  t.equal(removed, 1, 'the name went on the servers')
  t.notOk(fs.existsSync(local), 'and nothing was copied for descriptors that are gone')
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'db-journal')))
})
