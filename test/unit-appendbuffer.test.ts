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

t.test('writes over held bytes land in place, across slabs, and what goes past the end is pushed', async (t) => {
  const buffer = new AppendBuffer(1024 * 1024)
  const expected = Buffer.alloc(100_000)
  // Writes of growing sizes fill several slabs (16 KiB doubling).
  for (let at = 0; at < expected.length;) {
    const data = Buffer.alloc(Math.min(7000, expected.length - at), at % 251)
    buffer.push(data)
    data.copy(expected, at)
    at += data.length
  }
  buffer.putBack(Buffer.from('front'))
  let whole = Buffer.concat([Buffer.from('front'), expected])
  // Over the start (a header), across two slab boundaries, and from inside to past the end.
  for (const [position, length] of [[0, 28], [16_000, 40_000], [whole.length - 10, 50]]) {
    const data = Buffer.alloc(length, (position + length) % 251)
    buffer.writeAt(position, data)
    const grown = Buffer.alloc(Math.max(whole.length, position + length))
    whole.copy(grown)
    data.copy(grown, position)
    t.ok(buffer.head(28).equals(grown.subarray(0, 28)), `the head after a write of ${length} at ${position}`)
    t.equal(buffer.size, grown.length)
    const taken = buffer.take()
    t.ok(taken.equals(grown), `every byte after a write of ${length} at ${position}`)
    buffer.push(taken)
    whole = grown
  }
  const size = buffer.size
  buffer.writeAt(size + 3, Buffer.from('x'))
  t.ok(buffer.take().subarray(size).equals(Buffer.from([0, 0, 0, 0x78])), 'a write past the end leaves zeros before it')
  t.equal(new AppendBuffer(16).head(8).length, 0, 'the head of nothing is empty')
})
