import t from 'tap'
import type { DfsClient } from '../src/client/dfsClient'
import { startTestCluster } from './helpers/cluster'

const LINES_EACH = 200

/** Distinct, recognisable, long enough that a torn write would show as a broken line. */
function lineOf (writer: string, n: number): string {
  return `${writer} line ${String(n).padStart(3, '0')} ${'.'.repeat(40)} end\n`
}

async function appendLines (client: DfsClient, writer: string, path: string): Promise<void> {
  for (let n = 0; n < LINES_EACH; n++) await client.append(path, lineOf(writer, n))
}

t.test('two clients appending to one file at once lose and tear nothing', async (t) => {
  const cluster = await startTestCluster(t, [{ 'shared/log.txt': '' }])
  const first = cluster.client()
  const second = cluster.client()
  const before = await first.statFresh('/shared/log.txt')

  await Promise.all([appendLines(first, 'alpha', '/shared/log.txt'), appendLines(second, 'beta', '/shared/log.txt')])

  const after = await second.statFresh('/shared/log.txt')
  t.equal(after.version, before.version + 2 * LINES_EACH, 'one version per append, no more, no fewer')

  const text = (await cluster.client().readFile('/shared/log.txt')).toString()
  t.ok(text.endsWith('\n'), 'the file ends with a whole line')
  const lines = text.split('\n').slice(0, -1)
  t.equal(lines.length, 2 * LINES_EACH, 'every line is there once')
  const expected = new Set<string>()
  for (let n = 0; n < LINES_EACH; n++) {
    expected.add(lineOf('alpha', n).trimEnd())
    expected.add(lineOf('beta', n).trimEnd())
  }
  const torn = lines.filter((line) => !expected.has(line))
  t.same(torn, [], 'no line is torn or mixed with another')
  t.equal(new Set(lines).size, 2 * LINES_EACH, 'no line is duplicated')
  for (const writer of ['alpha', 'beta']) {
    const own = lines.filter((line) => line.startsWith(writer + ' '))
    t.same(own, [...Array(LINES_EACH).keys()].map((n) => lineOf(writer, n).trimEnd()), `${writer}'s lines are in the order it wrote them`)
  }
  t.ok(lines.slice(0, LINES_EACH).some((line) => line.startsWith('beta')), 'the writers really did interleave')

  t.equal(after.size, Buffer.byteLength(text))
  t.equal((await first.readFile('/shared/log.txt')).toString(), text, 'the first writer\'s cache agrees')
  t.equal((await second.readFile('/shared/log.txt')).toString(), text, 'the second writer\'s cache agrees')
})
