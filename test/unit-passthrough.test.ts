import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { durablePassthroughOperations, passthroughOperations, synchronousCalls } from '../bench/passthrough'
import { startSyncServer } from '../bench/syncServer'

/*
 * The benchmark's passthrough (bench/passthrough.ts) called as fuse-native would call it, on
 * a temp folder and with no mount: each answer is a number first (0, a count, or a negative
 * errno), and what it did is on the folder behind it. The network floor's reads go to a real
 * sync server (bench/syncServer.ts) on loopback.
 */

type Op = (...args: unknown[]) => void

/** Calls one operation and resolves with what it answered. */
async function call (ops: Record<string, unknown>, name: string, ...args: unknown[]): Promise<unknown[]> {
  return await new Promise((resolve) => (ops[name] as Op)(...args, (...answer: unknown[]) => resolve(answer)))
}

const { ENOENT, EEXIST, ENOTEMPTY } = os.constants.errno
const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL } = fs.constants

for (const [name, calls] of [['asynchronous', fs], ['synchronous', synchronousCalls()]] as const) {
  t.test(`${name} calls: answers failures as negative errnos and does the work on the folder behind it`, async (t) => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-passthrough-'))
    t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
    const ops = passthroughOperations(root, calls)

    t.same(await call(ops, 'getattr', '/missing'), [-ENOENT])
    t.same(await call(ops, 'open', '/missing', O_RDWR), [-ENOENT])

    const [created, fd] = await call(ops, 'create', '/file', 0o640, O_RDWR | O_CREAT | O_EXCL)
    t.equal(created, 0)
    t.same(await call(ops, 'create', '/file', 0o640, O_RDWR | O_CREAT | O_EXCL), [-EEXIST], 'O_EXCL on a taken name')
    t.same(await call(ops, 'write', '/file', fd, Buffer.from('hello'), 5, 0), [5], 'a write answers its count')
    const buffer = Buffer.alloc(16)
    t.same(await call(ops, 'read', '/file', fd, buffer, 16, 1), [4], 'a read answers its count')
    t.equal(buffer.subarray(0, 4).toString(), 'ello')
    t.same(await call(ops, 'fsync', '/file', 1, fd), [0])
    t.same(await call(ops, 'release', '/file', fd), [0])
    t.equal(fs.readFileSync(path.join(root, 'file'), 'utf8'), 'hello')
    t.equal(fs.statSync(path.join(root, 'file')).mode & 0o777, 0o640)

    const [code, stat] = await call(ops, 'getattr', '/file')
    t.equal(code, 0)
    t.equal((stat as fs.Stats).size, 5)

    t.same(await call(ops, 'utimens', '/file', Date.UTC(2019, 0, 1), Date.UTC(2019, 0, 1)), [0])
    t.same(await call(ops, 'utimens', '/file', 'omit', Date.UTC(2020, 0, 1)), [0])
    const times = fs.statSync(path.join(root, 'file'))
    t.equal(times.mtimeMs, Date.UTC(2020, 0, 1), 'the given mtime')
    t.equal(times.atimeMs, Date.UTC(2019, 0, 1), 'UTIME_OMIT keeps the atime')

    t.same(await call(ops, 'mkdir', '/dir', 0o755), [0])
    t.same(await call(ops, 'rename', '/file', '/dir/moved'), [0])
    t.same(await call(ops, 'readdir', '/dir'), [0, ['.', '..', 'moved']])
    t.same(await call(ops, 'rmdir', '/dir'), [-ENOTEMPTY])
    t.same(await call(ops, 'truncate', '/dir/moved', 2), [0])
    t.equal(fs.readFileSync(path.join(root, 'dir', 'moved'), 'utf8'), 'he')
    t.same(await call(ops, 'unlink', '/dir/moved'), [0])
    t.same(await call(ops, 'unlink', '/dir/moved'), [-ENOENT])
    t.same(await call(ops, 'rmdir', '/dir'), [0])
  })
}

t.test('the network floor: a file opened for reading only is fetched from the bare server, once per open, and read from the bytes that came', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-passthrough-'))
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
  const big = Buffer.alloc(3 * 1024 * 1024 + 17)
  for (let i = 0; i + 4 <= big.length; i += 4) big.writeUInt32LE(i, i)
  fs.writeFileSync(path.join(root, 'big'), big)
  fs.writeFileSync(path.join(root, 'small'), 'hello')
  const server = await startSyncServer(root)
  t.teardown(async () => await server.close())
  const ops = durablePassthroughOperations(root, server.url)

  const [opened, fd] = await call(ops, 'open', '/big', O_RDONLY)
  t.equal(opened, 0)
  t.equal(await server.fetches(), 1, 'the open fetched the file')
  for (const [position, length] of [[0, 4096], [1024 * 1024 - 10, 20], [2 * 1024 * 1024 + 3, 131072], [big.length - 7, 4096]]) {
    const buffer = Buffer.alloc(length)
    const [count] = await call(ops, 'read', '/big', fd, buffer, length, position)
    const expected = big.subarray(position, position + length)
    t.equal(count, expected.length, `a read of ${length} at ${position} answers its count`)
    t.ok(buffer.subarray(0, expected.length).equals(expected), `and the bytes there (${position})`)
  }
  t.same(await call(ops, 'read', '/big', fd, Buffer.alloc(10), 10, big.length), [0], 'nothing past the end')
  // All of it came (the read at the end waited for it): a change on the disk now is not what the handle reads.
  const changed = fs.openSync(path.join(root, 'big'), 'r+')
  fs.writeSync(changed, Buffer.from('XXXX'), 0, 4, 0)
  fs.closeSync(changed)
  const again = Buffer.alloc(8)
  await call(ops, 'read', '/big', fd, again, 8, 0)
  t.ok(again.equals(big.subarray(0, 8)), 'the handle reads the bytes that came from the server, not the disk')
  t.same(await call(ops, 'release', '/big', fd), [0])

  const [, small] = await call(ops, 'open', '/small', O_RDONLY)
  const buffer = Buffer.alloc(64)
  t.same(await call(ops, 'read', '/small', small, buffer, 64, 0), [5])
  t.equal(buffer.subarray(0, 5).toString(), 'hello')
  await call(ops, 'release', '/small', small)
  t.equal(await server.fetches(), 2, 'one fetch per open for reading')

  const [, writable] = await call(ops, 'open', '/small', O_RDWR)
  t.same(await call(ops, 'read', '/small', writable, buffer, 64, 0), [5], 'a handle that may write reads the file itself')
  await call(ops, 'release', '/small', writable)
  t.equal(await server.fetches(), 2, 'with no fetch')
})

t.test('the durable floor answers fcntl locks from memory: conflicts between owners, ranges replaced and split as POSIX has it', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-passthrough-'))
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
  const ops = durablePassthroughOperations(root, 'http://127.0.0.1:9')
  const lock = async (owner: string, cmd: string, type: string, start: number, len: number): Promise<unknown[]> =>
    await call(ops, 'lock', '/db', 0, { cmd, type, start, len, owner }, new AbortController().signal)
  const { EAGAIN } = os.constants.errno

  t.same(await lock('a', 'setlk', 'read', 0, 100), [0], 'a shared lock')
  t.same(await lock('b', 'setlk', 'read', 50, 100), [0], 'shared with another owner')
  t.same(await lock('b', 'setlk', 'write', 50, 10), [-EAGAIN], 'a write lock over another owner\'s read lock is refused')
  t.same(await lock('b', 'getlk', 'write', 0, 0), [0, { type: 'read', start: 0, len: 100, pid: 0 }], 'getlk names the conflicting lock')
  t.same(await lock('a', 'getlk', 'write', 0, 50), [0, undefined], 'an owner\'s own locks never conflict')
  // a unlocks the middle of its range: [0,40) and [60,100) stay.
  t.same(await lock('a', 'setlk', 'unlock', 40, 20), [0])
  t.same(await lock('b', 'getlk', 'write', 40, 20), [0, undefined], 'for b nothing of a\'s is left in [40,60)')
  t.same(await lock('c', 'getlk', 'write', 40, 20), [0, { type: 'read', start: 50, len: 100, pid: 0 }], 'for another owner, b\'s own lock is')
  t.same(await lock('c', 'getlk', 'write', 40, 10), [0, undefined], 'the split left [40,50) free')
  t.same(await lock('c', 'setlk', 'write', 60, 1), [-EAGAIN], 'and [60,100) still a\'s')
  t.same(await lock('a', 'setlk', 'unlock', 0, 0), [0], 'an unlock of the whole file by its owner')
  t.same(await lock('b', 'setlk', 'unlock', 0, 0), [0])
  t.same(await lock('c', 'setlk', 'write', 0, 0), [0], 'then the whole file is free for a write lock')
})
