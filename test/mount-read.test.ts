import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { dfsBin, mountCluster, outcome, run, runCli } from './helpers/mount'
import { readUntilCallbackGranted } from './helpers/mountOps'
import { statsOf } from './helpers/wire'
import { waitFor } from './helpers/waitFor'
import { setTimeout as sleep } from 'node:timers/promises'

const numbered = (count: number): string => Array.from({ length: count }, (_, i) => `line ${i + 1} of the log\n`).join('')

// Big enough to take several FUSE reads (128 KiB each at most).
const bigLog = numbered(20_000)

const trees: Array<Record<string, string>> = [
  { 'docs/readme.txt': 'hello\nworld\n', 'docs/guide/intro.md': '# Intro\n' },
  { 'logs/app.log': bigLog, 'logs/empty.log': '' }
]

/** Old, distinct mtimes with a millisecond part, so "shows the server's mtime" is not "shows now". */
const mtimes: Record<string, number> = {
  'docs/readme.txt': 1_600_000_000_123,
  'logs/app.log': 1_650_000_000_456,
  'logs/empty.log': 1_660_000_000_789
}

function setMtimes (roots: string[]): void {
  for (const [file, ms] of Object.entries(mtimes)) {
    const root = roots.find((r) => fs.existsSync(path.join(r, file))) as string
    fs.utimesSync(path.join(root, file), new Date(ms), new Date(ms))
  }
}

/** `stat -c '%s %.9Y'` as size and mtime in whole milliseconds. */
function parseSizeAndMtime (line: string): { size: number, mtimeMs: number } {
  const [size, mtime] = line.trim().split(' ')
  const [seconds, fraction] = mtime.split('.')
  return { size: Number(size), mtimeMs: Number(seconds) * 1000 + Number(fraction.slice(0, 3)) }
}

t.test('ls shows every file server\'s folders, ls -l and stat show the servers\' sizes and mtimes, a missing path is ENOENT', async (t) => {
  const cluster = await startTestCluster(t, trees)
  setMtimes(cluster.roots)
  const mount = await mountCluster(t, cluster)

  const top = await run('ls', ['-1', mount.mountpoint])
  t.equal(top.code, 0, outcome(top))
  t.same(top.stdout.split('\n').filter(Boolean).sort(), ['docs', 'logs'], 'folders of both file servers at the root')

  const docs = await run('ls', ['-1', mount.at('/docs')])
  t.same(docs.stdout.split('\n').filter(Boolean).sort(), ['guide', 'readme.txt'])

  const long = await run('ls', ['-l', '--time-style=+%s', mount.at('/logs')])
  t.equal(long.code, 0, outcome(long))
  const listed = new Map(long.stdout.split('\n').filter((line) => line.startsWith('-')).map((line) => {
    const fields = line.trim().split(/\s+/)
    return [fields[6], { mode: fields[0], size: Number(fields[4]), seconds: Number(fields[5]) }]
  }))
  t.same([...listed.keys()].sort(), ['app.log', 'empty.log'])
  for (const name of ['app.log', 'empty.log']) {
    const onServer = fs.statSync(path.join(cluster.roots[1], 'logs', name))
    t.same(listed.get(name), { mode: '-rw-r--r--', size: onServer.size, seconds: Math.floor(onServer.mtimeMs / 1000) }, `ls -l of ${name} matches the file on its server`)
  }
  t.equal(listed.get('app.log')?.size, Buffer.byteLength(bigLog))

  for (const file of Object.keys(mtimes)) {
    const stat = await run('stat', ['-c', '%s %.9Y', mount.at('/' + file)])
    t.equal(stat.code, 0, outcome(stat))
    const root = cluster.roots.find((r) => fs.existsSync(path.join(r, file))) as string
    const onServer = fs.statSync(path.join(root, file))
    t.same(parseSizeAndMtime(stat.stdout), { size: onServer.size, mtimeMs: Math.floor(onServer.mtimeMs) }, `stat of ${file}: size and mtime to the millisecond`)
  }

  const folder = await run('stat', ['-c', '%F', mount.at('/docs/guide')])
  t.equal(folder.stdout.trim(), 'directory')

  for (const missing of ['/docs/missing.txt', '/nowhere', '/nowhere/deeper.txt']) {
    const stat = await run('stat', [mount.at(missing)])
    t.not(stat.code, 0, `stat ${missing} fails`)
    t.match(stat.stderr, /No such file or directory/, `stat ${missing} says ENOENT`)
  }
  t.ok(mount.alive(), 'the daemon is still serving')
})

t.test('cat shows content, a second cat of an unchanged file moves no content, head/tail/grep/wc work', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [docsServer, logsServer] = cluster.fileServers
  const mount = await mountCluster(t, cluster)
  const readme = mount.at('/docs/readme.txt')

  const before = await statsOf(docsServer)
  const first = await run('cat', [readme])
  t.equal(first.code, 0, outcome(first))
  t.equal(first.stdout, 'hello\nworld\n')
  const afterFirst = await statsOf(docsServer)
  t.equal(afterFirst.contentTransfers, before.contentTransfers + 1, 'the first cat fetched the file once')

  const second = await run('cat', [readme])
  t.equal(second.stdout, 'hello\nworld\n')
  const afterSecond = await statsOf(docsServer)
  t.equal(afterSecond.contentTransfers, afterFirst.contentTransfers, 'the second cat moved no content')
  t.equal(afterSecond.contentBytes, afterFirst.contentBytes)
  // Close-to-open: the open revalidated the copy (a 304), unless the first one left a callback
  // (the server's promise to say before the file changes), which vouches for it with no request.
  const promised = afterFirst.callbacksGranted > before.callbacksGranted
  t.equal(afterSecond.notModified, afterFirst.notModified + (promised ? 0 : 1), promised ? 'a callback vouched for the copy: no request' : 'the open revalidated the copy with the file server')

  const log = mount.at('/logs/app.log')
  const lines = bigLog.split('\n').slice(0, -1)
  const whole = await run('cat', [log])
  t.equal(whole.code, 0, outcome(whole))
  t.ok(whole.stdout === bigLog, `cat of a ${bigLog.length}-byte file gives every byte`)

  const head = await run('head', ['-n', '3', log])
  t.equal(head.stdout, lines.slice(0, 3).join('\n') + '\n')
  const tail = await run('tail', ['-n', '2', log])
  t.equal(tail.stdout, lines.slice(-2).join('\n') + '\n')
  const grep = await run('grep', ['-n', '^line 12345 ', log])
  t.equal(grep.stdout, '12345:line 12345 of the log\n')
  const miss = await run('grep', ['no such words', log])
  t.equal(miss.code, 1, 'grep finds nothing that is not there')
  const wc = await run('wc', ['-l', '-c', log])
  t.match(wc.stdout, new RegExp(`^\\s*${lines.length}\\s+${Buffer.byteLength(bigLog)}\\s`))
  const empty = await run('wc', ['-c', mount.at('/logs/empty.log')])
  t.match(empty.stdout, /^0\s/, 'an empty file reads as empty')

  const logStats = await statsOf(logsServer)
  t.equal(logStats.contentTransfers, 2, 'app.log and empty.log each moved once, however often they were read')
})

t.test('a read far into a large file still arriving is answered with those bytes alone: tail and dd skip=, then the whole file, all right', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/.keep': '' }])
  const server = cluster.fileServers[0]
  const bytes = crypto.randomBytes(64 * 1024 * 1024)
  await cluster.client().writeFile('/data/big.bin', bytes)
  const mount = await mountCluster(t, cluster)
  const big = mount.at('/data/big.bin')

  const tail = await run('sh', ['-c', `tail -c 100 ${big} | od -An -tx1 -v`])
  t.equal(tail.code, 0, outcome(tail))
  t.equal(tail.stdout.replace(/\s+/g, ''), bytes.subarray(bytes.length - 100).toString('hex'), 'tail: the last 100 bytes')
  const block = 10_000
  const dd = await run('sh', ['-c', `dd if=${big} bs=4096 skip=${block} count=1 status=none | od -An -tx1 -v`])
  t.equal(dd.stdout.replace(/\s+/g, ''), bytes.subarray(block * 4096, (block + 1) * 4096).toString('hex'), 'dd skip=: the block asked for')
  t.ok((await statsOf(server)).rangeReads >= 1, 'read by themselves, not after the whole file')

  const sum = await run('sha256sum', [big])
  t.equal(sum.stdout.split(' ')[0], crypto.createHash('sha256').update(bytes).digest('hex'), 'and the whole file reads right')
})

t.test('a large file not cached here moves nothing at its open: a read at its end moves only its bytes, a read from its start fetches it whole, once', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/small.txt': 'x' }])
  const server = cluster.fileServers[0]
  const bytes = crypto.randomBytes(64 * 1024 * 1024)
  await cluster.client().writeFile('/data/big.bin', bytes)
  const mount = await mountCluster(t, cluster)
  // Deferred only under a callback (the server's promise that the version is current).
  await readUntilCallbackGranted(mount.at('/data/small.txt'), server, 'x')
  const big = mount.at('/data/big.bin')
  const lastBytes = `const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'r'); const size = fs.fstatSync(fd).size
    const last = Buffer.alloc(4096); fs.readSync(fd, last, 0, last.length, size - last.length); fs.closeSync(fd); console.log(last.toString('hex'))`
  const before = await statsOf(server)
  const tail = await run(process.execPath, ['-e', lastBytes, big])
  t.equal(tail.code, 0, outcome(tail))
  t.equal(tail.stdout.trim(), bytes.subarray(bytes.length - 4096).toString('hex'), 'the last 4 KiB')
  const afterTail = await statsOf(server)
  t.equal(afterTail.contentTransfers - before.contentTransfers, 0, 'no transfer of the whole file began')
  t.ok(afterTail.rangeReadBytes - before.rangeReadBytes < 1024 * 1024, `only the bytes read moved (${afterTail.rangeReadBytes - before.rangeReadBytes})`)

  const sum = await run('sha256sum', [big])
  t.equal(sum.stdout.split(' ')[0], crypto.createHash('sha256').update(bytes).digest('hex'), 'a read from the start reads the whole file right')
  const afterSum = await statsOf(server)
  t.equal(afterSum.contentTransfers - afterTail.contentTransfers, 1, 'fetched whole, once')
  const again = await run(process.execPath, ['-e', lastBytes, big])
  t.equal(again.stdout.trim(), bytes.subarray(bytes.length - 4096).toString('hex'), 'the last 4 KiB again')
  const afterAgain = await statsOf(server)
  t.equal(afterAgain.contentTransfers + afterAgain.rangeReads - afterSum.contentTransfers - afterSum.rangeReads, 0, 'from the copy now here: nothing moves')
})

t.test('a large file read by ranges that another mount removes meanwhile: the next read fails with ESTALE, as NFS says it, not ENOENT', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/small.txt': 'x' }])
  const server = cluster.fileServers[0]
  await cluster.client().writeFile('/data/gone.bin', crypto.randomBytes(24 * 1024 * 1024))
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  await readUntilCallbackGranted(a.at('/data/small.txt'), server, 'x')
  const go = path.join(t.testdir(), 'go')
  fs.mkdirSync(t.testdir(), { recursive: true })
  const reader = `const fs = require('fs'); const [file, go] = process.argv.slice(1)
    const fd = fs.openSync(file, 'r'); const buffer = Buffer.alloc(4096)
    console.log(fs.readSync(fd, buffer, 0, 4096, 20 * 1024 * 1024))
    fs.writeFileSync(go + '.ready', '')
    const wait = () => {
      if (!fs.existsSync(go)) return setTimeout(wait, 20)
      try { fs.readSync(fd, buffer, 0, 4096, 10 * 1024 * 1024); console.log('read') } catch (err) { console.log(err.errno) }
      try { fs.readSync(fd, buffer, 0, 4096, 0); console.log('read') } catch (err) { console.log(err.errno) }
    }
    wait()`
  const reading = run(process.execPath, ['-e', reader, a.at('/data/gone.bin'), go], { timeoutMs: 30_000 })
  await waitFor('the first read', async () => fs.existsSync(go + '.ready'), 20_000, 20)
  const removed = await run('rm', [b.at('/data/gone.bin')])
  t.equal(removed.code, 0, outcome(removed))
  fs.writeFileSync(go, '')
  const done = await reading
  t.equal(done.code, 0, outcome(done))
  // Node has no name for ESTALE: its errno.
  const estale = String(-os.constants.errno.ESTALE)
  t.same(done.stdout.trim().split('\n'), ['4096', estale, estale], 'read by ranges, then ESTALE far in and at the start')
})

/** Bytes of the files under `dir` (a mount's cache folder), 0 if it is not there. */
function bytesUnder (dir: string): number {
  if (!fs.existsSync(dir)) return 0
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .reduce((sum, entry) => sum + fs.statSync(path.join(entry.parentPath, entry.name)).size, 0)
}

t.test('a read at the end of a large file reads by ranges without fetching the whole file; grown by another client, the next read sees the new bytes', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/.keep': '' }])
  const bytes = crypto.randomBytes(64 * 1024 * 1024)
  const writer = cluster.client()
  await writer.writeFile('/data/log.bin', bytes)
  const mount = await mountCluster(t, cluster)
  const go = path.join(t.testdir(), 'go')
  // As `tail -f`: the last bytes, then, once told, what the file grew by.
  const follower = `const fs = require('fs'); const [file, go] = process.argv.slice(1)
    const fd = fs.openSync(file, 'r'); const size = fs.fstatSync(fd).size
    const last = Buffer.alloc(100); fs.readSync(fd, last, 0, 100, size - 100); console.log(last.toString('hex'))
    fs.writeFileSync(go + '.ready', '')
    const wait = () => {
      if (!fs.existsSync(go)) return setTimeout(wait, 20)
      const more = Buffer.alloc(fs.fstatSync(fd).size - size); fs.readSync(fd, more, 0, more.length, size)
      console.log(more.toString()); fs.closeSync(fd)
    }
    wait()`
  fs.mkdirSync(t.testdir(), { recursive: true })
  const following = run(process.execPath, ['-e', follower, mount.at('/data/log.bin'), go], { timeoutMs: 30_000 })
  await waitFor('the last bytes read', async () => fs.existsSync(go + '.ready'), 20_000, 20)
  // Long enough for the whole file to arrive, were it still being fetched.
  await sleep(1000)
  t.ok(bytesUnder(mount.cacheDir) < bytes.length / 2, 'the whole file was not fetched into the cache')
  await writer.append('/data/log.bin', 'more\n')
  fs.writeFileSync(go, '')
  const done = await following
  t.equal(done.code, 0, outcome(done))
  const [last, more] = done.stdout.split('\n')
  t.equal(last, bytes.subarray(bytes.length - 100).toString('hex'), 'the last 100 bytes')
  t.equal(more, 'more', 'and, after another client appended, the new bytes')
})

t.test('the cache folder removed under a running mount: files still open and read whole, and copies are kept again', async (t) => {
  const megabyte = crypto.randomBytes(512 * 1024).toString('hex')
  const cluster = await startTestCluster(t, [{ 'data/one.bin': megabyte, 'data/log.txt': 'first\n' }])
  const [server] = cluster.fileServers
  const mount = await mountCluster(t, cluster)
  const file = mount.at('/data/one.bin')
  const first = await run('cat', [file])
  t.equal(first.stdout, megabyte, outcome(first))
  const copies = (): string => path.join(mount.cacheDir, 'mounts', fs.readdirSync(path.join(mount.cacheDir, 'mounts'))[0], 'objects')
  t.ok(fs.readdirSync(copies()).length > 0, 'the first cat left a copy in the mount\'s cache folder')

  // What a user who clears ~/.cache does, or a cleaner of old files.
  fs.rmSync(mount.cacheDir, { recursive: true, force: true })
  const again = await run('cat', [file])
  t.equal(again.code, 0, `the copy gone is no reason for ENOENT: ${outcome(again)}`)
  t.equal(again.stdout, megabyte)
  t.ok(fs.existsSync(copies()), 'the cache folder is made again')
  const before = await statsOf(server)
  const third = await run('cat', [file])
  t.equal(third.stdout, megabyte)
  t.equal((await statsOf(server)).contentTransfers, before.contentTransfers, 'the copy made again serves the next cat: no transfer')

  fs.rmSync(mount.cacheDir, { recursive: true, force: true })
  const append = await run('/bin/sh', ['-c', `echo second >> ${mount.at('/data/log.txt')} && printf new > ${mount.at('/data/new.txt')}`])
  t.equal(append.code, 0, `writes go on: ${outcome(append)}`)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'data', 'log.txt'), 'utf8'), 'first\nsecond\n')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'data', 'new.txt'), 'utf8'), 'new')
  t.match(mount.output(), /the cache folder .* was removed while mounted/, 'the mount\'s log says so')
})

t.test('two mounts given one cache folder, of two clusters with the same paths: each reads its own cluster\'s bytes', { skip: process.getuid?.() !== 0 ? 'dropping the kernel\'s page cache needs root' : false }, async (t) => {
  const ours = crypto.randomBytes(50 * 1024).toString('hex')
  const theirs = crypto.randomBytes(50 * 1024).toString('hex')
  const first = await startTestCluster(t, [{ 'notes/a.txt': ours }])
  const second = await startTestCluster(t, [{ 'notes/a.txt': theirs }])
  const a = await mountCluster(t, first)
  // The default cache folder (~/.cache/dfs) is one for every mount a user makes.
  const b = await mountCluster(t, second, [], { cacheDir: a.cacheDir })
  t.equal((await run('cat', [a.at('/notes/a.txt')])).stdout, ours)
  t.equal((await run('cat', [b.at('/notes/a.txt')])).stdout, theirs)
  // The kernel may have kept the first mount's pages; under memory pressure it drops them,
  // and the next read goes to the mount's copy.
  await fsp.writeFile('/proc/sys/vm/drop_caches', '1\n')
  t.equal((await run('cat', [a.at('/notes/a.txt')])).stdout, ours, 'the first mount still reads its own cluster\'s file')
  t.equal((await run('cat', [b.at('/notes/a.txt')])).stdout, theirs)
})

/** Bytes of the copies (not their records) in the cache folders under `root`. */
function copiesUnder (root: string): number {
  let total = 0
  for (const entry of fs.readdirSync(root, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && path.basename(path.dirname(path.join(entry.parentPath, entry.name))) === 'objects' && !entry.name.endsWith('.json')) {
      total += fs.statSync(path.join(entry.parentPath, entry.name)).size
    }
  }
  return total
}

t.test('--cache-max-size: a mount and the dfs command keep at most that many bytes of copies; a larger file is read whole and not kept', async (t) => {
  const mib = (): string => crypto.randomBytes(512 * 1024).toString('hex')
  const files: Record<string, string> = { 'big.bin': mib() + mib() + mib() + mib() }
  for (let i = 1; i <= 5; i++) files[`f${i}.bin`] = mib()
  const cluster = await startTestCluster(t, [files])
  const mount = await mountCluster(t, cluster, ['--cache-max-size', '3M'])
  for (let i = 1; i <= 5; i++) {
    const read = await run('cat', [mount.at(`/f${i}.bin`)])
    t.ok(read.stdout === files[`f${i}.bin`], `f${i}.bin reads right`)
  }
  t.ok(copiesUnder(mount.cacheDir) <= 3 * 1024 * 1024, `the mount keeps at most 3 MiB of copies (${copiesUnder(mount.cacheDir)} bytes)`)
  const big = await run('cat', [mount.at('/big.bin')])
  t.ok(big.stdout === files['big.bin'], 'a 4 MiB file, larger than the whole cache, reads right')
  t.ok(await waitFor('the copy of big.bin to go', async () => copiesUnder(mount.cacheDir) <= 3 * 1024 * 1024, 10_000), `and is not kept (${copiesUnder(mount.cacheDir)} bytes)`)

  // dfs commands, one after another: each finds the copies of the ones before and keeps within the size too.
  const tokenFile = path.join(mount.base, 'token')
  const cliRoot = path.join(mount.base, 'cli-cache')
  for (let i = 1; i <= 4; i++) {
    const read = await runCli(dfsBin, ['--directory', cluster.directory.url, '--lock', cluster.lock.url, '--token-file', tokenFile, '--cache-dir', cliRoot, '--cache-max-size', '2M', 'cat', `/f${i}.bin`], { env: mount.env })
    t.ok(read.code === 0 && read.stdout === files[`f${i}.bin`], `dfs cat /f${i}.bin: exit ${read.code}`)
  }
  t.ok(copiesUnder(cliRoot) <= 2 * 1024 * 1024, `dfs keeps at most 2 MiB of copies over its runs (${copiesUnder(cliRoot)} bytes)`)
})
