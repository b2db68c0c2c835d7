import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, sh } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import { quoted } from './helpers/mountOps'

const WRITERS_PER_MOUNT = 2
const LINES_PER_WRITER = 150

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/*
 * A read through a mount while this mount and another append to the file (`echo >>` per
 * line, as the fault suite's writers do) sees a prefix of the file: whole lines that are in
 * the final file, in its order, and never a run of zero bytes. The kernel fills a page past
 * the bytes a read answered with zeros, and shows them when it believes the file is longer:
 * a size the mount reported (counting its appends under way, or the other mount's) that its
 * read did not deliver.
 */

/**
 * Writers on both mounts append numbered lines to one file while a reader on each mount
 * `cat`s it in a loop; `meanwhile` runs once they have started. Checks every read against
 * the file on the server's disk at the end.
 */
async function appendWhileReading (t: Test, files: [string, string], onDisk: string, meanwhile: () => Promise<void> = async () => {}): Promise<void> {
  const reads = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-reads-'))
  t.teardown(async () => await fsp.rm(reads, { recursive: true, force: true }))
  const writer = (file: string, id: number): string =>
    `(for i in $(seq 1 ${LINES_PER_WRITER}); do echo "W${id}-$i" >> ${quoted(file)} || exit 1; done)`
  // Each reader cats until the writers are done, each read into a file of its own.
  const reader = (file: string, tag: string): string =>
    `(i=0; while [ ! -e ${quoted(path.join(reads, 'done'))} ]; do i=$((i+1)); cat ${quoted(file)} > ${quoted(path.join(reads, `${tag}-`))}$i || exit 1; done)`
  const script = [
    'writers=""',
    ...files.flatMap((file, n) => Array.from({ length: WRITERS_PER_MOUNT }, (_, w) => `${writer(file, n * WRITERS_PER_MOUNT + w)} & writers="$writers $!"`)),
    `${reader(files[0], 'a')} & ra=$!`,
    `${reader(files[1], 'b')} & rb=$!`,
    'for w in $writers; do wait "$w" || failed=1; done',
    `touch ${quoted(path.join(reads, 'done'))}`,
    'wait "$ra" || failed=1; wait "$rb" || failed=1',
    'exit ${failed:-0}'
  ].join('\n')
  const running = sh(script, { timeoutMs: 240_000 })
  await meanwhile()
  const ran = await running
  t.equal(ran.code, 0, `writers and readers ran without an error: ${outcome(ran)}`)

  const final = await fsp.readFile(onDisk)
  t.equal(final.toString('utf8').split('\n').length - 2, 2 * WRITERS_PER_MOUNT * LINES_PER_WRITER, 'every line arrived')
  const names = (await fsp.readdir(reads)).filter((name) => name !== 'done')
  const bad: string[] = []
  for (const name of names) {
    const read = await fsp.readFile(path.join(reads, name))
    const zeros = read.indexOf(0)
    if (zeros !== -1 || !final.subarray(0, read.length).equals(read) || (read.length > 0 && read[read.length - 1] !== 0x0a)) {
      bad.push(`${name}: ${read.length} bytes${zeros !== -1 ? `, zero bytes from ${zeros}` : ''}, tail ${JSON.stringify(read.subarray(Math.max(0, read.length - 24)).toString('latin1'))}`)
    }
  }
  t.ok(names.length > 10, `the readers read while the writers wrote (${names.length} reads)`)
  t.same(bad.slice(0, 5), [], `every read is a prefix of the final file, of whole lines (${bad.length} of ${names.length} were not)`)
}

t.test('cat while two mounts append: every read is a prefix of the final file, with no zeros', async (t) => {
  const cluster = await startTestCluster(t, [{ 'shared/log.txt': 'header\n' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  await appendWhileReading(t, [a.at('/shared/log.txt'), b.at('/shared/log.txt')], path.join(cluster.roots[0], 'shared', 'log.txt'))
})

t.test('the same while the lock server stops for a while: appends wait in close, reads still see only bytes that are there', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'shared/log.txt': 'header\n' }] })
  const a = await c.mount()
  const b = await c.mount()
  await appendWhileReading(t, [a.at('/shared/log.txt'), b.at('/shared/log.txt')], path.join(c.files[0].root!, 'shared', 'log.txt'), async () => {
    for (let round = 0; round < 3; round++) {
      await sleep(1000)
      await c.lock.stop()
      await sleep(1500)
      await c.lock.cont()
    }
  })
})
