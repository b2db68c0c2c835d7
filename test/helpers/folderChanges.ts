import fsp from 'node:fs/promises'
import type { Test } from 'tap'
import { run, sh } from './mount'
import { startProcessCluster } from './processCluster'
import type { MountProcess, ProcessCluster } from './processCluster'

/**
 * Creates a name on `writer`, renames it, removes it, `rounds` times; after each change has
 * returned, lists the folder on `reader` and checks it shows that change. Answers what the
 * reader got wrong (none: nothing). Three changes a round, each followed by a readdir. Async
 * fs calls from this process (which mounts nothing), no process per call: a hung call
 * fails the test at its timeout instead of freezing it.
 */
export async function changesSeenAcross (writer: MountProcess, reader: MountProcess, folder: string, rounds: number, tag: string): Promise<string[]> {
  const wrong: string[] = []
  const names = async (): Promise<Set<string>> => new Set(await fsp.readdir(reader.at(folder)))
  for (let i = 1; i <= rounds; i++) {
    const name = `${tag}${i}`
    const moved = `moved-${name}`
    await fsp.writeFile(writer.at(`${folder}/${name}`), '')
    if (!(await names()).has(name)) wrong.push(`create of ${name} not seen`)
    await fsp.rename(writer.at(`${folder}/${name}`), writer.at(`${folder}/${moved}`))
    const after = await names()
    if (after.has(name)) wrong.push(`rename of ${name}: old name still seen`)
    if (!after.has(moved)) wrong.push(`rename of ${name}: new name not seen`)
    await fsp.unlink(writer.at(`${folder}/${moved}`))
    if ((await names()).has(moved)) wrong.push(`unlink of ${moved} not seen`)
  }
  return wrong
}

/** A process cluster with a folder /shared, a writer mount A, and a mount B that has listed the folder (and so holds it). */
export async function clusterWithReader (t: Test): Promise<{ cluster: ProcessCluster, a: MountProcess, b: MountProcess }> {
  const cluster = await startProcessCluster(t, { trees: [{ 'shared/.keep': '' }] })
  const a = await cluster.mount()
  const b = await cluster.mount()
  // Its channel opens with its first request: a few listings, and B holds the folder.
  for (let i = 0; i < 5; i++) t.equal((await run('ls', [b.at('/shared')])).code, 0)
  return { cluster, a, b }
}

/**
 * Cuts the mount's connections to the directory server (its event channel among them) with
 * `ss -K` every 200 ms until the returned function is called (also at teardown), which
 * answers how many were cut.
 */
export function cutDirectoryConnections (t: Test, cluster: ProcessCluster, mount: MountProcess): () => Promise<number> {
  const port = cluster.directory.port
  const cut = `for p in $(ss -tnpH state established '( dport = :${port} )' | grep 'pid=${mount.pid},' | awk '{print $3}' | sed 's/.*://'); do
    ss -K -tn state established "( dport = :${port} and sport = :$p )" > /dev/null && echo cut; done`
  let cutting = true
  let cuts = 0
  const cutter = (async () => {
    while (cutting) {
      const killed = await sh(cut)
      cuts += killed.stdout.split('\n').filter((line) => line === 'cut').length
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  })()
  const stop = async (): Promise<number> => {
    cutting = false
    await cutter
    return cuts
  }
  t.teardown(stop)
  return stop
}
