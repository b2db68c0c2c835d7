import t from 'tap'
import { AppendBuffer } from '../src/client/appendBuffer'

t.test('an append buffer gives back exactly the bytes pushed, in order, whatever the sizes of the writes', async (t) => {
  const buffer = new AppendBuffer()
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
