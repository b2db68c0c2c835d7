import t from 'tap'
import { AppendBuffer } from '../src/client/appendBuffer'

t.test('an append buffer gives back exactly the bytes pushed, in order, whatever the sizes of the writes', async (t) => {
  const buffer = new AppendBuffer(1024 * 1024)
  let expected: Buffer[] = []
  // Sizes from 0 to 300 KiB, crossing every slab size (16 KiB doubling to 1 MiB); a fixed sequence, no randomness.
  for (let i = 0; i < 400; i++) {
    const data = Buffer.alloc((i * 7919) % 300_000, i % 251)
    buffer.push(data)
    expected.push(Buffer.from(data))
    data.fill(0) // the kernel reuses its buffer once a write is answered: the copy must not change
    if (i % 97 === 96) {
      t.equal(buffer.size, expected.reduce((n, b) => n + b.length, 0))
      t.ok(buffer.take().equals(Buffer.concat(expected)), `the bytes of writes up to ${i}`)
      t.equal(buffer.size, 0, 'and it is empty after')
      expected = []
    }
  }
  const rest = buffer.take()
  t.ok(rest.equals(Buffer.concat(expected)))

  // A failed send's bytes go back in front of what was written since.
  buffer.push(Buffer.from('later'))
  buffer.putBack(Buffer.from('first-'))
  buffer.push(Buffer.from('-and-last'))
  t.equal(buffer.take().toString(), 'first-later-and-last')
})

t.test('after a full buffer was taken, the next starts with a slab of the full size; after a smaller one, small again', async (t) => {
  const full = 256 * 1024
  const buffer = new AppendBuffer(full)
  const write = Buffer.alloc(32 * 1024)
  let n = 0
  const pushWrites = (count: number): Buffer[] => Array.from({ length: count }, () => {
    write.fill(n++ % 251)
    buffer.push(write)
    return Buffer.from(write)
  })
  // The first buffer grows from 16 KiB slabs: its take joins them.
  let expected = pushWrites(full / write.length)
  t.ok(buffer.take().equals(Buffer.concat(expected)), 'the first full buffer, whole')
  // A large write goes on: one slab holds the next full buffer, handed over as it is.
  expected = pushWrites(full / write.length)
  const second = buffer.take()
  t.ok(second.equals(Buffer.concat(expected)), 'the second full buffer, whole')
  t.equal(second.buffer.byteLength, full, 'in one slab of the full size')
  // The write stops short of full: the slab was still the full size...
  expected = pushWrites(1)
  const short = buffer.take()
  t.ok(short.equals(Buffer.concat(expected)))
  t.equal(short.buffer.byteLength, full, 'a buffer after a full one starts with a full slab')
  // ...and after that short take, small writes get small slabs again (no full slab per line of a log).
  const line = Buffer.from('a line\n')
  buffer.push(line)
  const small = buffer.take()
  t.ok(small.equals(line))
  t.ok(small.buffer.byteLength < full, `a buffer after a short one starts small (${small.buffer.byteLength} bytes)`)
})
