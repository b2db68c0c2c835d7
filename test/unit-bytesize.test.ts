import t from 'tap'
import { formatByteSize, parseByteSize } from '../src/cli/byteSize'

t.test('sizes as people write them for a cache', async (t) => {
  const cases: Array<[string, number]> = [['4096', 4096], ['1K', 1024], ['500M', 500 * 1024 ** 2], ['2G', 2 * 1024 ** 3], ['2GiB', 2 * 1024 ** 3],
    ['1.5G', 1.5 * 1024 ** 3], ['3 MB', 3 * 1024 ** 2], ['1t', 1024 ** 4], ['10B', 10]]
  for (const [text, bytes] of cases) t.equal(parseByteSize(text, '--size'), bytes, text)
  for (const text of ['', 'lots', '0', '-1M', '2X', 'M', '0.1B']) t.throws(() => parseByteSize(text, '--size'), /--size must be a size such as 500M/, text)
  t.equal(formatByteSize(4 * 1024 ** 3), '4G')
  t.equal(formatByteSize(1536), '1536')
  t.equal(parseByteSize(formatByteSize(3 * 1024 ** 2), '--size'), 3 * 1024 ** 2, 'what it writes reads back')
})
