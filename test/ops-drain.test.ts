import { spawn } from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { Locator } from '../src/client/locator'
import { MetadataMemo } from '../src/client/metadataMemo'
import { DirectoryApi, FileServerPool, LockApi } from '../src/shared/api'
import { DrainApi, DrainRoutes } from '../src/shared/drainProtocol'
import { StatusRoutes } from '../src/shared/clusterStatus'
import type { ClusterStatus } from '../src/shared/clusterStatus'
import { DirectoryRoutes } from '../src/shared/protocol'
import type { LookupAnswer, ServersAnswer } from '../src/shared/protocol'
import { Transport } from '../src/shared/transport'
import { startTestCluster, writeTree } from './helpers/cluster'
import { sh } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import type { ProcessCluster, ServerProcess } from './helpers/processCluster'
import { cleanEnv, repoRoot, runNode } from './helpers/processes'
import { waitFor } from './helpers/waitFor'
import { rawAs } from './helpers/wire'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

/*
 * Draining a file server (dfs-serve drain), each server its own process and a real mount:
 * every file moves to the other server with its bytes and version, a reader looping `cat`
 * through the mount sees no error and only the right bytes meanwhile, a file whose lock is
 * held waits (its lock is not broken), new files land on the other server, and the drained
 * server leaves the directory and exits. Client tokens may not drain; the last server may not.
 */

const docs = Object.fromEntries(Array.from({ length: 24 }, (_, i) => [`docs/note-${i}.txt`, `note ${i}\n`.repeat(i + 1)]))
const FIRST_TREE: Record<string, string> = {
  ...docs,
  'docs/locked.txt': 'held by a writer\n',
  'deep/x/y/z.txt': 'deep down\n',
  'top.txt': 'at the top\n',
  'big.bin': Array.from({ length: 60_000 }, (_, i) => `line ${i} of the big file\n`).join('')
}
const SECOND_TREE: Record<string, string> = { 'other/b.txt': 'on the second server\n' }

interface Running {
  output: () => string
  exited: Promise<number | null>
}

/** A CLI run in the background, its output kept as it comes. */
function startCli (args: string[]): Running {
  const child = spawn(process.execPath, args, { cwd: repoRoot, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
  t.teardown(() => { child.kill('SIGKILL') })
  return { output: () => output, exited }
}

function drainArgs (c: ProcessCluster, server: string, extra: string[] = []): string[] {
  return ['bin/dfs-serve', 'drain', server, '--directory', c.directory.url, '--cluster-key', c.credentials.keyFile, ...extra]
}

async function machineIdOf (server: ServerProcess): Promise<number> {
  return Number((await server.waitHealthy()).machineId)
}

t.test('draining a file server moves every file while a mount reads them, then the server leaves', async (t) => {
  const c = await startProcessCluster(t, { trees: [FIRST_TREE, SECOND_TREE] })
  const [first, second] = c.files as [ServerProcess, ServerProcess]
  const firstId = await machineIdOf(first)
  const secondId = await machineIdOf(second)
  const client = c.client()
  t.teardown(() => client.close())

  // Versions above 1, to see that they move unchanged; and an empty folder only the first holds.
  const expected = new Map(Object.entries(FIRST_TREE).map(([file, text]) => [`/${file}`, text]))
  for (let i = 0; i < 3; i++) await client.append('/docs/note-0.txt', `more ${i}\n`)
  expected.set('/docs/note-0.txt', FIRST_TREE['docs/note-0.txt'] + 'more 0\nmore 1\nmore 2\n')
  await client.mkdir('/docs/empty')
  t.equal((await client.lookup('/docs/empty')).holders?.map((h) => h.machineId).join(), String(firstId), 'the empty folder is on the first server only')
  const versionsBefore = new Map<string, number>()
  for (const file of expected.keys()) versionsBefore.set(file, (await client.statFresh(file)).version)
  t.equal(versionsBefore.get('/docs/note-0.txt'), 4, 'three appends made version 4')

  // The reader: `cat` of every file through the mount, compared with the expected bytes, round after round.
  const mount = await c.mount()
  // Its files are outside the cluster's work folder, which the cluster's teardown removes.
  const readerDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-drain-reader-'))
  const reference = path.join(readerDir, 'reference')
  writeTree(reference, Object.fromEntries([...expected].map(([file, text]) => [file.slice(1), text])))
  const rounds = path.join(readerDir, 'rounds')
  const errors = path.join(readerDir, 'errors')
  const stop = path.join(readerDir, 'stop')
  const files = [...expected.keys()].join(' ')
  // It stops at the stop file, or once the mount is gone (a failed test's teardown).
  const reader = sh(`n=0; while [ ! -e '${stop}' ] && [ -d '${mount.at('/docs')}' ]; do
    for f in ${files}; do
      cat "${mount.mountpoint}$f" > '${readerDir}/copy' 2>> '${errors}' || echo "cat $f failed" >> '${errors}'
      cmp -s '${readerDir}/copy' "${reference}$f" || echo "wrong bytes in $f" >> '${errors}'
    done
    n=$((n+1)); echo $n > '${rounds}'
  done`, { timeoutMs: 240_000 })
  t.teardown(async () => {
    await fsp.writeFile(stop, '')
    await reader
    await fsp.rm(readerDir, { recursive: true, force: true })
  })
  const roundsDone = async (): Promise<number> => Number((await fsp.readFile(rounds, 'utf8').catch(() => '0')).trim() || 0)
  await waitFor('the reader\'s first round', async () => await roundsDone() >= 1, 60_000, 50)

  // The lister: `ls` of /docs through the mount over and over; every name there before the drain
  // must be in every listing (names made meanwhile may be added), while its file moves too.
  const docsNames = path.join(readerDir, 'docs-names')
  await fsp.writeFile(docsNames, [...expected.keys()].filter((f) => f.startsWith('/docs/')).map((f) => f.slice('/docs/'.length)).concat('empty').join('\n') + '\n')
  const listings = path.join(readerDir, 'listings')
  const listErrors = path.join(readerDir, 'list-errors')
  const lister = sh(`LC_ALL=C; export LC_ALL; sort -o '${docsNames}' '${docsNames}'; n=0
    while [ ! -e '${stop}' ] && [ -d '${mount.at('/docs')}' ]; do
      ls -a '${mount.at('/docs')}' > '${readerDir}/listed' 2>> '${listErrors}' || echo "ls failed" >> '${listErrors}'
      sort '${readerDir}/listed' | comm -13 - '${docsNames}' | sed "s/^/listing $n missed /" >> '${listErrors}'
      n=$((n+1)); echo $n > '${listings}'
    done`, { timeoutMs: 240_000 })
  t.teardown(async () => {
    await fsp.writeFile(stop, '').catch(() => {})
    await lister
  })
  await waitFor('the lister\'s first listing', async () => fs.existsSync(listings), 60_000, 50)

  // A writer holds one file's lock: the drain must wait for it, not break it.
  const lock = new LockApi(new Transport('lock server', c.lock.url, undefined, c.credentials.caller))
  const lease = await lock.acquire({ path: '/docs/locked.txt', owner: 'drain-test', ttlMs: 120_000 })
  let released = false
  t.teardown(async () => { if (!released) await lock.release('/docs/locked.txt', leaseCredentialOf(lease)).catch(() => {}) })

  const drain = startCli(drainArgs(c, String(firstId)))
  await waitFor('the drain to wait for the held lock', async () => {
    if (drain.output().includes('waiting for the locks of /docs/locked.txt')) return true
    if (!first.alive() || drain.output().includes('dfs-serve:')) throw new Error(`the drain ended early: ${drain.output()}\n${first.output()}`)
    return false
  }, 120_000, 50)

  await t.test('while it drains: shown as draining, new files go elsewhere, the held lock stands', async (t) => {
    t.match(drain.output(), new RegExp(`file server ${firstId} at ${first.url} is draining`))
    t.match(drain.output(), /moved \d+ files, \d+ remaining/, 'progress is printed')
    const status = (await rawAs(c.credentials.read).rawGet(c.directory.url, StatusRoutes.cluster)).body as ClusterStatus
    t.same(status.servers.map((s) => [s.machineId, s.state]), [[firstId, 'draining'], [secondId, 'up']], '/status/cluster')
    const servers = (await rawAs(c.credentials.read).rawGet(c.directory.url, DirectoryRoutes.servers)).body as ServersAnswer
    t.equal(servers.servers.find((s) => s.machineId === firstId)?.state, 'draining', 'GET /servers')
    const dfsStatus = await runNode(['bin/dfs', 'status', '--directory', c.directory.url], { timeoutMs: 15_000, env: { ...cleanEnv(), DFS_TOKEN: c.credentials.read } })
    t.equal(dfsStatus.code, 0, `a draining server is no problem for dfs status: ${dfsStatus.stderr}`)
    t.match(dfsStatus.stdout, /^file servers \(1 of 2 up, 1 draining\)/)
    t.match(dfsStatus.stdout, new RegExp(`\\n  ${firstId} +draining +${first.url} `))
    const metricsUrl = /metrics for Prometheus at (\S+)/.exec(c.directory.output())?.[1]
    t.ok(metricsUrl, `the directory serves metrics: ${c.directory.output()}`)
    const metrics = await (await fetch(metricsUrl as string)).text()
    t.match(metrics, /^dfs_file_servers\{state="draining"\} 1$/m, 'dfs_file_servers counts it as draining...')
    t.match(metrics, /^dfs_file_servers\{state="up"\} 1$/m, '...not as up')

    await client.create('/docs/new-by-client.txt')
    t.equal((await client.lookup('/docs/new-by-client.txt')).server?.machineId, secondId, 'a file created now lands on the other server')
    const viaMount = await sh(`echo made during the drain > '${mount.at('/deep/x/made-on-mount.txt')}'`)
    t.equal(viaMount.code, 0, viaMount.stderr)
    t.equal((await client.lookup('/deep/x/made-on-mount.txt')).server?.machineId, secondId, 'one made through the mount too')

    t.equal((await client.lookup('/docs/locked.txt')).server?.machineId, firstId, 'the locked file has not moved')
    const held = await lock.status('/docs/locked.txt')
    t.equal(held.held, true, 'its lock is still held...')
    t.match(held.owner, /drain-test/, '...by the writer that took it')
  })

  const roundsBeforeRelease = await roundsDone()
  await lock.release('/docs/locked.txt', leaseCredentialOf(lease))
  released = true
  const code = await drain.exited
  t.equal(code, 0, drain.output())
  t.match(drain.output(), new RegExp(`\\nfile server ${firstId} drained(: \\d+ files moved)?; it left the cluster\\n$`))
  await waitFor('the drained server to exit', async () => !first.alive(), 15_000, 50)
  t.match(first.output(), /drained and left the cluster: shutting down/)

  // The reader goes on for two more full rounds, on the files' new server.
  await waitFor('two more reader rounds', async () => await roundsDone() >= roundsBeforeRelease + 2, 120_000, 50)
  await fsp.writeFile(stop, '')
  const readerEnd = await reader
  t.equal(readerEnd.code, 0, readerEnd.stderr)
  t.equal(await fsp.readFile(errors, 'utf8').catch(() => ''), '', 'the reader saw no error and no wrong bytes')
  const listerEnd = await lister
  t.equal(listerEnd.code, 0, listerEnd.stderr)
  t.comment(`the lister listed /docs ${(await fsp.readFile(listings, 'utf8')).trim()} times`)
  t.equal(await fsp.readFile(listErrors, 'utf8').catch(() => ''), '', 'every listing of /docs had every name')

  await t.test('afterwards: every file on the other server, same bytes and version; nothing left on the drained root', async (t) => {
    const servers = (await rawAs(c.credentials.read).rawGet(c.directory.url, DirectoryRoutes.servers)).body as ServersAnswer
    t.same(servers.servers.map((s) => s.machineId), [secondId], 'the drained server is gone from the directory')
    for (const [file, text] of expected) {
      const found = (await rawAs(c.credentials.read).rawGet(c.directory.url, DirectoryRoutes.lookup, { path: file })).body as LookupAnswer
      t.equal(found.server?.machineId, secondId, `${file} is on the other server`)
      t.equal((await client.readFile(file)).toString(), text, `${file}: same bytes`)
      t.equal((await client.statFresh(file)).version, versionsBefore.get(file), `${file}: same version`)
    }
    t.same((await client.lookup('/docs/empty')).holders?.map((h) => h.machineId), [secondId], 'the empty folder is kept, on the other server')
    t.same(fs.readdirSync(first.root as string), ['.dfs'], 'only the state folder is left on the drained root')
    const intents = path.join(first.root as string, '.dfs', 'renames')
    t.same(fs.existsSync(intents) ? fs.readdirSync(intents) : [], [], 'no rename intent is left')
  })

  await t.test('the last file server cannot be drained', async (t) => {
    const refused = await runNode(drainArgs(c, String(secondId)), { timeoutMs: 15_000 })
    t.equal(refused.code, 1)
    t.equal(refused.stdout, '')
    t.match(refused.stderr, new RegExp(`^dfs-serve: file server ${secondId} is the only file server in service: its files have nowhere to go .*\\n$`))
    t.equal(refused.stderr.split('\n').length, 2, 'one line')
    const servers = (await rawAs(c.credentials.read).rawGet(c.directory.url, DirectoryRoutes.servers)).body as ServersAnswer
    t.equal(servers.servers[0].state, 'up', 'it stays in service')
  })

  await t.test('an unknown server is one line', async (t) => {
    const unknown = await runNode(drainArgs(c, '99'), { timeoutMs: 15_000 })
    t.equal(unknown.code, 1)
    t.equal(unknown.stderr, 'dfs-serve: no file server 99 is registered at the directory server (see dfs status)\n')
  })
})

t.test('a client token may not drain, at the directory or at the file server', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'a.txt': 'a\n' }, { 'b.txt': 'b\n' }] })
  const id = await machineIdOf(c.files[0])
  for (const token of [c.credentials.write, c.credentials.read]) {
    const mark = await rawAs(token).rawPost(c.directory.url, DrainRoutes.mark(id), {})
    t.equal(mark.status, 403, 'POST /servers/:id/drain')
    t.equal((mark.body as { error?: { code?: string } }).error?.code, 'FORBIDDEN')
    const start = await rawAs(token).rawPost(c.files[0].url, DrainRoutes.drain, {})
    t.equal(start.status, 403, 'POST /drain on the file server')
  }
  const servers = (await rawAs(c.credentials.read).rawGet(c.directory.url, DirectoryRoutes.servers)).body as ServersAnswer
  t.same(servers.servers.map((s) => s.state), ['up', 'up'], 'nothing was marked')
  const progress = await rawAs(c.credentials.write).raw(c.files[0].url, { method: 'GET', url: DrainRoutes.drain })
  t.equal(progress.status, 403, 'GET /drain too')

  await t.test('a drain waiting for a lock stops once the server is put back in service', async (t) => {
    const lock = new LockApi(new Transport('lock server', c.lock.url, undefined, c.credentials.caller))
    const lease = await lock.acquire({ path: '/a.txt', owner: 'cancel-test', ttlMs: 120_000 })
    t.teardown(async () => { await lock.release('/a.txt', leaseCredentialOf(lease)).catch(() => {}) })
    const drain = startCli(drainArgs(c, String(id)))
    await waitFor('the drain to wait for the held lock', async () => drain.output().includes('waiting for the locks of /a.txt'), 60_000, 50)
    const cancel = await runNode(drainArgs(c, String(id), ['--cancel']), { timeoutMs: 15_000 })
    t.equal(cancel.code, 0, cancel.stderr)
    t.equal(cancel.stdout, `file server ${id} is back in service; files moved before stay where they went\n`)
    t.equal(await drain.exited, 1, 'the drain command fails...')
    t.match(drain.output(), new RegExp(`\\ndfs-serve: the drain of file server ${id} stopped after 0 files, 1 left: file server ${id} was put back in service; the drain stopped; .*\\n$`), '...in one line')
    const servers = (await rawAs(c.credentials.read).rawGet(c.directory.url, DirectoryRoutes.servers)).body as ServersAnswer
    t.same(servers.servers.map((s) => s.state), ['up', 'up'], 'both in service')
    const found = (await rawAs(c.credentials.read).rawGet(c.directory.url, DirectoryRoutes.lookup, { path: '/a.txt' })).body as LookupAnswer
    t.equal(found.server?.machineId, id, 'the locked file stayed')
    t.equal((await lock.status('/a.txt')).owner?.includes('cancel-test'), true, 'its lock was not broken')
  })
})

t.test('a read on a lookup made just before its file moved is tried once more where the file is now', async (t) => {
  const cluster = await startTestCluster(t, [{ 'moving.txt': 'here\n' }, { 'other.txt': 'x\n' }])
  const [first, second] = cluster.fileServers
  const { caller } = cluster.credentials
  const operator = { credential: cluster.credentials.key.serverCredential('operator') }
  const directory = new DirectoryApi(new Transport('directory server', cluster.directory.url, 2000, caller))
  const fileServers = new FileServerPool(2000, caller)
  const locator = new Locator(directory, fileServers, fileServers, new MetadataMemo(1000), 1000)
  // Asked of the directory itself: a fresh answer, not one the locator remembered.
  const found = await directory.lookup('/moving.txt')
  t.equal(found.server?.machineId, first.machineId)
  await new DrainApi(new Transport('directory server', cluster.directory.url, 2000, operator)).mark(first.machineId, true)
  const drain = new DrainApi(new Transport('file server', first.url, 2000, operator))
  await drain.start()
  await waitFor('the drain to end', async () => (await drain.progress()).state === 'left', 30_000, 20)
  const meta = await locator.onFileServer('/moving.txt', found, async (server) => await server.stat('/moving.txt'), { read: true })
  t.equal(meta.size, 5, 'the stat answered, from the server the file is on now')
  t.equal((await directory.lookup('/moving.txt')).server?.machineId, second.machineId)
})
