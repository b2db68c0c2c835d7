import fsp from 'node:fs/promises'
import t from 'tap'
import { outcome, run } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import { readUntilCallbackGranted } from './helpers/mountOps'
import { cutConnections } from './helpers/connections'

/*
 * Close-to-open through real mounts, each its own process: once a close has returned on one
 * mount, an open that starts later on another mount sees those bytes. Mounts keep callbacks
 * (no request on a cached open), so this is what a lost or late callback break would break:
 * it runs a thousand times, while the reading mount's connections to the file server are cut
 * now and then (its event channel with them), and while a third mount that holds a callback
 * on the file is stopped.
 */

const ROUNDS = 1000
const CUT_EVERY = 100
const FILE = '/c2o/file.txt'

t.test(`close-to-open through mounts: ${ROUNDS} appends and overwrites closed on one mount, each seen by the next open on another, while connections are cut and a holder is stopped`, async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ [FILE.slice(1)]: '0\n' }] })
  const server = cluster.files[0]
  const [writer, reader, holder] = [await cluster.mount(), await cluster.mount(), await cluster.mount()]
  await readUntilCallbackGranted(holder.at(FILE), server, '0\n')

  const stale: string[] = []
  let cut = 0
  let content = '0\n'
  for (let round = 1; round <= ROUNDS; round++) {
    // Mostly appends (`echo >>`), every tenth a whole new content of another length (`echo >`):
    // a stale size shows as well as stale bytes.
    const line = `${round} ${'x'.repeat(round % 7)}\n`
    if (round % 10 === 0) await fsp.writeFile(writer.at(FILE), content = line)
    else {
      await fsp.appendFile(writer.at(FILE), line)
      content += line
    }
    const seen = await fsp.readFile(reader.at(FILE), 'utf8')
    if (seen !== content && stale.length < 5) stale.push(`round ${round}: wrote ${JSON.stringify(content.slice(-40))}, read ${JSON.stringify(seen.slice(-40))} (${seen.length} of ${content.length} bytes)`)
    if (round % CUT_EVERY === 0) cut += await cutConnections(reader.pid, server.port)
    if (round === ROUNDS / 4) await holder.stop()
    if (round === ROUNDS / 2) await holder.cont()
  }
  t.same(stale, [], `every open on the reading mount saw the bytes of the close before it (${ROUNDS} rounds)`)
  t.ok(cut >= ROUNDS / CUT_EVERY, `the reading mount's connections to the file server were cut ${cut} times (its event channel among them)`)

  const held = await run('cat', [holder.at(FILE)])
  t.equal(held.stdout, content, `the mount that was stopped while holding a callback reads the last bytes: ${outcome(held)}`)
})
