import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { DirectoryApi, FileApi } from '../src/shared/api'
import { Transport } from '../src/shared/transport'
import { startProcessCluster } from './helpers/processCluster'
import type { ProcessCluster } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'

/*
 * The directory server journals its namespace in its state folder: killed (SIGKILL) and
 * started again, it answers for every name at once, before any file server has reported
 * again; names of a file server that is down meanwhile stay listed.
 */

function directoryOf (cluster: ProcessCluster): DirectoryApi {
  return new DirectoryApi(new Transport('directory server', cluster.directory.url, 2000, cluster.credentials.caller))
}

/** Every name the directory lists, depth first, as "path@machineId" (folders as "path/"). */
async function everything (directory: DirectoryApi, folder = '/'): Promise<string[]> {
  const answer = await directory.list(folder)
  const names: string[] = []
  for (const entry of answer.entries) {
    const child = folder === '/' ? `/${entry.name}` : `${folder}/${entry.name}`
    if (entry.kind === 'dir') names.push(`${child}/`, ...await everything(directory, child))
    else names.push(`${child}@${entry.machineIds.join(',')}`)
  }
  return names
}

const trees: Array<Record<string, string>> = [
  { 'notes/a.txt': 'a\n', 'notes/deep/b.txt': 'b\n', 'shared/one.txt': '1\n' },
  { 'logs/c.log': 'c\n', 'shared/two.txt': '2\n' }
]

t.test('a directory killed and restarted knows every name at once, with changes made through it', async (t) => {
  const cluster = await startProcessCluster(t, { trees })
  const directory = directoryOf(cluster)
  const client = cluster.client()
  // Changes of every kind, so the journal holds more than the file servers' first reports.
  await client.writeFile('/notes/new.txt', 'new\n')
  await client.mkdir('/notes/empty')
  await client.rename('/notes/a.txt', '/logs/a.txt') // across servers
  await client.rename('/notes/deep', '/notes/moved') // a folder
  await client.unlink('/shared/two.txt')
  const before = await everything(directory)
  const health = await cluster.directory.waitHealthy()

  const reportsBefore = cluster.directory.output().split(' reported ').length - 1
  await cluster.directory.kill()
  await cluster.directory.restart()
  const after = await cluster.directory.waitHealthy()
  t.not(after.bootId, health.bootId, 'a new incarnation')
  // Asked before the file servers' heartbeats can have told them of the new boot id? Not
  // guaranteed, and not needed: whether they have reported yet or not, nothing may be missing.
  t.same(await everything(directory), before, 'every name, on the same server, right after the restart')
  t.equal(after.files, health.files, 'as many files as before')
  t.same((await directory.servers()).servers.map((s) => s.state), ['up', 'up'], 'both file servers up: a restart of the directory is no news about them')
  t.equal((await directory.lookup('/logs/a.txt')).server?.machineId, (await directory.lookup('/logs/c.log')).server?.machineId)
  t.equal((await client.readFile('/notes/moved/b.txt')).toString(), 'b\n', 'a read right after the restart')

  // The file servers join again (they see the new boot id) and their reports agree.
  const reports = (): number => cluster.directory.output().split(' reported ').length - 1
  await waitFor('both file servers to report again', async () => reports() >= reportsBefore + 2, 10_000, 100)
  t.same(await everything(directory), before, 'the same after their reports')
})

t.test('names of a file server that is down while the directory restarts stay listed, and fail fast', async (t) => {
  const cluster = await startProcessCluster(t, { trees })
  const directory = directoryOf(cluster)
  const before = await everything(directory)
  await cluster.files[1].kill()
  await cluster.directory.kill()
  await cluster.directory.restart()
  t.same(await everything(directory), before, 'still listed: a listing without them would make rsync --delete delete them')
  const dead = (await directory.lookup('/logs/c.log')).server!
  await waitFor('the dead file server to be marked down', async () => {
    return (await directory.servers()).servers.find((s) => s.machineId === dead.machineId)?.state === 'down'
  }, 15_000, 100)
  const client = cluster.client()
  await t.rejects(client.readFile('/logs/c.log'), { code: 'UNAVAILABLE' }, 'its file fails as unavailable, not as missing')
  t.equal((await client.readFile('/notes/a.txt')).toString(), 'a\n', 'the other server\'s files are served')
  t.ok(fs.existsSync(path.join(cluster.workDir, 'directory-state', 'namespace.journal')), 'the journal is in the state folder')
})

t.test('an unlink the directory cannot take leaves the file at its name, and goes through once it is back', async (t) => {
  const cluster = await startProcessCluster(t, { trees })
  const directory = directoryOf(cluster)
  const before = await everything(directory)
  const server = cluster.files[0]
  const onDisk = path.join(server.root as string, 'notes', 'a.txt')
  // Straight to the file server: a client would stop at its lookup with the directory down.
  const api = new FileApi(new Transport('file server 1', server.url, 5000, cluster.credentials.caller))
  await cluster.directory.kill()
  // The file is moved aside while the drop is asked; the drop fails, so it goes back.
  await t.rejects(api.unlink('/notes/a.txt', undefined), { code: 'UNAVAILABLE' }, 'refused: the directory does not answer')
  t.equal(fs.readFileSync(onDisk, 'utf8'), 'a\n', 'the file is at its name on the disk, whole')
  t.equal((await api.stat('/notes/a.txt')).size, 2, 'and the file server serves it')
  await cluster.directory.restart()
  t.same(await everything(directory), before, 'every name still listed, on its server')
  // As a mount would, it waits while the file server still reports its files to the directory (503).
  const client = cluster.client({ retryWritesForMs: 10_000 })
  t.equal((await client.readFile('/notes/a.txt')).toString(), 'a\n', 'a client reads it')
  await client.unlink('/notes/a.txt')
  t.notOk(fs.existsSync(onDisk), 'the unlink goes through with the directory back')
  t.notOk((await everything(directory)).includes('/notes/a.txt@1'), 'and the directory forgot the name')
})
