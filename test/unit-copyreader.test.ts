import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { DescriptorReader } from '../src/client/copyReader'

function tempFile (t: Test, bytes: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-copyreader-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'copy')
  fs.writeFileSync(file, bytes)
  return file
}

/** Descriptors this process has open now. */
function openDescriptors (): number {
  return fs.readdirSync('/proc/self/fd').length
}

t.test('a descriptor reader reads a copy at any position and closes its descriptor once', async (t) => {
  const file = tempFile(t, 'hello, copy')
  const before = openDescriptors()
  const reader = DescriptorReader.open(file)
  t.equal(openDescriptors(), before + 1, 'one descriptor while open')
  const buffer = Buffer.alloc(4)
  t.same(await reader.read(buffer, 0, 4, 7), { bytesRead: 4 })
  t.equal(buffer.toString(), 'copy')
  t.same(await reader.read(buffer, 0, 4, 100), { bytesRead: 0 }, 'past the end: nothing')
  await reader.close()
  await reader.close()
  t.equal(openDescriptors(), before, 'closed, and a second close closes nothing else')
  await t.rejects(reader.read(buffer, 0, 4, 0), { code: 'EBADF' }, 'a read after close fails, never reads another file')
})

t.test('a close waits for the reads under way, so their descriptor is not reused under them', async (t) => {
  const big = 'x'.repeat(4 << 20)
  const file = tempFile(t, big)
  const other = tempFile(t, 'y'.repeat(4 << 20))
  const reader = DescriptorReader.open(file)
  const buffers = Array.from({ length: 8 }, () => Buffer.alloc(512 * 1024))
  const reads = buffers.map(async (buffer, i) => await reader.read(buffer, 0, buffer.length, i * buffer.length))
  const closing = reader.close()
  // An open right after the close was asked for: were the descriptor closed at once, this
  // open could take its number and the reads still queued would read this other file.
  const intruder = fs.openSync(other, 'r')
  t.teardown(() => fs.closeSync(intruder))
  const done = await Promise.all(reads)
  await closing
  t.ok(done.every(({ bytesRead }) => bytesRead === 512 * 1024), 'every read read its whole range')
  t.ok(buffers.every((buffer) => buffer.every((byte) => byte === 0x78)), 'and only bytes of the copy it opened')
  await t.rejects(reader.read(buffers[0], 0, 1, 0), { code: 'EBADF' }, 'no read starts once the close was asked for')
})

t.test('opening a copy that is gone fails with ENOENT, for the caller to ask the server again', async (t) => {
  const file = tempFile(t, 'x')
  fs.rmSync(file)
  t.throws(() => DescriptorReader.open(file), { code: 'ENOENT' })
})
