import fs from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import path from 'node:path'
import t from 'tap'
import type { FileMeta } from '../src/shared/protocol'
import { FileRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run, sh } from './helpers/mount'
import { credentialOf } from './helpers/credentials'
import { rawGet, statsOf } from './helpers/wire'
import { FileWorker } from './helpers/fileWorkerClient'
import { localTempDir, quoted } from './helpers/mountOps'
import { waitFor } from './helpers/waitFor'


async function versionOf (server: { url: string }, file: string): Promise<number> {
  const answer = await rawGet(server.url, FileRoutes.stat, { path: file }, { token: credentialOf(server) })
  return (answer.body as FileMeta).version
}

t.test('echo >> appends on the file server; 500 writes in one open arrive as one append', async (t) => {
  const cluster = await startTestCluster(t, [{ 'logs/app.log': 'start\n' }])
  const server = cluster.fileServers[0]
  const onDisk = path.join(cluster.roots[0], 'logs', 'app.log')
  const mount = await mountCluster(t, cluster)
  const log = mount.at('/logs/app.log')
  t.equal(await versionOf(server, '/logs/app.log'), 1)

  const before = await statsOf(server)
  const echo = await sh(`echo line >> ${quoted(log)}`)
  t.equal(echo.code, 0, outcome(echo))
  t.equal(fs.readFileSync(onDisk, 'utf8'), 'start\nline\n', 'the line is in the file on the server\'s disk')
  t.equal(await versionOf(server, '/logs/app.log'), 2, 'the append made a new version')
  const afterEcho = await statsOf(server)
  t.equal(afterEcho.appends, before.appends + 1)

  const loop = await sh(`for i in $(seq 1 500); do echo line-$i; done >> ${quoted(log)}`, { timeoutMs: 20_000 })
  t.equal(loop.code, 0, outcome(loop))
  const afterLoop = await statsOf(server)
  t.equal(afterLoop.appends, afterEcho.appends + 1, '500 write() calls in one open were sent as ONE append')
  t.equal(await versionOf(server, '/logs/app.log'), 3, 'one append, one version')
  const expected = 'start\nline\n' + Array.from({ length: 500 }, (_, i) => `line-${i + 1}\n`).join('')
  t.ok(fs.readFileSync(onDisk, 'utf8') === expected, 'the server has all 500 lines, in order')

  const cat = await run('cat', [log])
  t.ok(cat.stdout === expected, 'cat on the mount shows the appended file')
  const size = await run('stat', ['-c', '%s', log])
  t.equal(Number(size.stdout), Buffer.byteLength(expected), 'stat on the mount shows the new size')
})

t.test('two mounts are two clients: what mount A appends, the next cat on mount B shows', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'one\n' }])
  const server = cluster.fileServers[0]
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  t.not(a.cacheDir, b.cacheDir, 'each mount has a cache of its own')

  t.equal((await run('cat', [b.at('/notes/todo.txt')])).stdout, 'one\n', 'B has the file cached')
  t.equal((await run('cat', [a.at('/notes/todo.txt')])).stdout, 'one\n')

  const append = await sh(`echo two >> ${quoted(a.at('/notes/todo.txt'))}`)
  t.equal(append.code, 0, outcome(append))

  const before = await statsOf(server)
  const seen = await run('cat', [b.at('/notes/todo.txt')])
  t.equal(seen.stdout, 'one\ntwo\n', 'B\'s next open sees A\'s append')
  const after = await statsOf(server)
  t.equal(after.contentTransfers, before.contentTransfers + 1, 'B fetched the new version once')

  const again = await run('cat', [b.at('/notes/todo.txt')])
  t.equal(again.stdout, 'one\ntwo\n')
  t.equal((await statsOf(server)).contentTransfers, after.contentTransfers, 'and then served it from its cache')

  const ownAppend = await run('cat', [a.at('/notes/todo.txt')])
  t.equal(ownAppend.stdout, 'one\ntwo\n', 'A sees its own append')
})

t.test('what a program writes through a descriptor it keeps open reaches the server within seconds, before its close; another mount sees it', async (t) => {
  const bulkBytes = 9 * 1024 * 1024
  const cluster = await startTestCluster(t, [{ 'logs/app.log': 'start\n', 'logs/job.log': 'last run\n', 'logs/db': 'abcdef', 'logs/bulk.bin': 'old' }])
  const onDisk = (name: string): string => path.join(cluster.roots[0], 'logs', name)
  const onServer = (name: string): string => fs.existsSync(onDisk(name)) ? fs.readFileSync(onDisk(name), 'utf8') : ''
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const go = path.join(await localTempDir(t), 'go')
  // A daemon's log, `nohup job > out.log` onto a new and onto an old file, a file changed in
  // place, and a bulk copy over an old file: written, then held open until the test says.
  // Not a shell: each command it forks closes its copies of the descriptors, a flush each.
  const holder = `const fs = require('fs'); const [dir, go] = process.argv.slice(1)
    const open = (name, flags) => fs.openSync(dir + '/' + name, flags)
    const fds = { log: open('app.log', 'a'), made: open('new.log', 'w'), job: open('job.log', 'w'), db: open('db', 'r+'), bulk: open('bulk.bin', 'w') }
    fs.writeSync(fds.log, 'one\\n'); fs.writeSync(fds.made, 'made\\n'); fs.writeSync(fds.job, 'started\\n')
    fs.writeSync(fds.db, 'XY', 2); fs.writeSync(fds.bulk, Buffer.alloc(${bulkBytes}, 'b'))
    const wait = () => {
      if (!fs.existsSync(go)) return setTimeout(wait, 50)
      fs.writeSync(fds.log, 'two\\n')
      for (const fd of Object.values(fds)) fs.closeSync(fd)
    }
    wait()`
  const daemon = run(process.execPath, ['-e', holder, a.at('/logs'), go], { timeoutMs: 30_000 })
  try {
    const whileOpen = async (what: string, name: string, expected: string): Promise<void> => {
      await waitFor(`${what} on the server while its descriptor is open`, async () => onServer(name) === expected, 10_000, 50)
    }
    await whileOpen('the appended line', 'app.log', 'start\none\n')
    await whileOpen('the new file', 'new.log', 'made\n')
    await whileOpen('the old file written from the start', 'job.log', 'started\n')
    await whileOpen('the change in place', 'db', 'abXYef')
    t.equal((await run('cat', [b.at('/logs/app.log')])).stdout, 'start\none\n', 'another mount reads the line')
    t.equal((await run('cat', [b.at('/logs/new.log')])).stdout, 'made\n', 'and the new file')
    t.equal((await run('cat', [b.at('/logs/job.log')])).stdout, 'started\n', 'and the rewritten one')
    // Well past the write-behind's latest moment: a bulk copy is stored at its close only.
    await sleep(3_000)
    t.equal(onServer('bulk.bin'), 'old', `${bulkBytes} bytes written over a file are not stored before the close`)
  } finally {
    fs.writeFileSync(go, '')
  }
  const done = await daemon
  t.equal(done.code, 0, outcome(done))
  t.equal(onServer('app.log'), 'start\none\ntwo\n', 'the line after it, at the close')
  t.equal(fs.statSync(onDisk('bulk.bin')).size, bulkBytes, 'and the bulk copy, whole')
})

t.test('two mounts append at the same time: every line arrives whole, none lost', async (t) => {
  const cluster = await startTestCluster(t, [{ 'shared/journal.txt': 'header\n' }])
  const server = cluster.fileServers[0]
  const onDisk = path.join(cluster.roots[0], 'shared', 'journal.txt')
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const perWriter = 200
  const before = await statsOf(server)

  // A separate `echo >> FILE` per line: 200 opens, writes and closes per writer.
  const writer = (mountedFile: string, tag: string): string =>
    `for i in $(seq 1 ${perWriter}); do echo "${tag}-$i with some padding to make the line longer" >> ${quoted(mountedFile)} || exit 1; done`
  const [fromA, fromB] = await Promise.all([
    sh(writer(a.at('/shared/journal.txt'), 'A'), { timeoutMs: 60_000 }),
    sh(writer(b.at('/shared/journal.txt'), 'B'), { timeoutMs: 60_000 })
  ])
  t.equal(fromA.code, 0, outcome(fromA))
  t.equal(fromB.code, 0, outcome(fromB))

  const lines = fs.readFileSync(onDisk, 'utf8').split('\n')
  t.equal(lines.pop(), '', 'the file ends with a whole line')
  t.equal(lines.shift(), 'header')
  t.equal(lines.length, 2 * perWriter, `${2 * perWriter} lines arrived`)
  const torn = lines.filter((line) => !/^[AB]-\d+ with some padding to make the line longer$/.test(line))
  t.same(torn, [], 'no line is torn or mixed with another')
  const switches = lines.filter((line, i) => i > 0 && line[0] !== lines[i - 1][0]).length
  t.ok(switches > 1, `the two writers really ran at the same time (their lines interleave: ${switches} switches)`)
  for (const tag of ['A', 'B']) {
    const own = lines.filter((line) => line.startsWith(`${tag}-`)).map((line) => Number(line.slice(2).split(' ')[0]))
    t.same(own, Array.from({ length: perWriter }, (_, i) => i + 1), `all of ${tag}'s lines, once each, in ${tag}'s order`)
  }
  t.equal((await statsOf(server)).appends, before.appends + 2 * perWriter, 'one append per echo')
  t.equal(await versionOf(server, '/shared/journal.txt'), 1 + 2 * perWriter)

  const viaMount = await run('cat', [b.at('/shared/journal.txt')])
  t.ok(viaMount.stdout === fs.readFileSync(onDisk, 'utf8'), 'a mount shows the same file as the server')
})

t.test('an append while another mount writes the file in place waits for its lock, past the lock timeout, and lands', async (t) => {
  const cluster = await startTestCluster(t, [{ 'logs/shared.log': 'base\n' }])
  const holder = await mountCluster(t, cluster)
  // Gives up on a lock after 300 ms: a hard mount must still not give up the line.
  const appender = await mountCluster(t, cluster, ['--lock-timeout-ms', '300'])
  const writer = await FileWorker.start(t)
  const fd = await writer.open(holder.at('/logs/shared.log'), 'r+')
  await writer.write(fd, Buffer.from('BASE'), 0) // in place: the holder's working copy holds the file's lock
  const appending = run('bash', ['-c', `echo from-b >> ${quoted(appender.at('/logs/shared.log'))}`], { timeoutMs: 30_000 })
  // Well past the appender's lock timeout: the old code gave up here, at the close bash ignores.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  await writer.close(fd)
  const appended = await appending
  t.equal(appended.code, 0, `echo >> waited for the lock: ${outcome(appended)}`)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'logs/shared.log'), 'utf8'), 'BASE\nfrom-b\n', 'the in-place write, then the line')
})
