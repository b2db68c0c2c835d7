import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'
import { mountDeviceOf, READ_AHEAD_KB } from '../src/fuse/mount'
import { localTempDir, operationLines, readUntilCallbackGranted, sha256OfFile, succeeded } from './helpers/mountOps'
import { statsOf } from './helpers/wire'

const SIZE_MIB = 256
/** What the open-file table holds back before it sends an append (src/client/openFiles.ts). */
const APPEND_PIECE_MIB = 8
const SLOW_MS = 240_000

/** The first word sha256sum printed. */
const digestIn = (stdout: string): string => stdout.trim().split(/\s+/)[0]

t.test(`a ${SIZE_MIB} MiB file written with dd arrives whole: sha256 through both mounts and on the server's disk; a 1 MiB patch in the middle goes back as one range write on close`, async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/.keep': '' }])
  const server = cluster.fileServers[0]
  const onDisk = path.join(cluster.roots[0], 'docs/big.bin')
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const local = await localTempDir(t)
  const original = path.join(local, 'big.bin')
  const patched = path.join(local, 'patched.bin')
  const patch = path.join(local, 'patch.bin')

  succeeded(t, await run('dd', ['if=/dev/urandom', `of=${original}`, 'bs=1M', `count=${SIZE_MIB}`, 'status=none'], { timeoutMs: SLOW_MS }), 'random data generated locally')
  const expected = await sha256OfFile(original)

  const before = await statsOf(server)
  const started = Date.now()
  succeeded(t, await run('dd', [`if=${original}`, `of=${a.at('/docs/big.bin')}`, 'bs=1M', 'status=none'], { timeoutMs: SLOW_MS }), 'dd into mount A')
  const ddMs = Date.now() - started
  t.comment(`dd of ${SIZE_MIB} MiB into the mount took ${ddMs} ms`)
  t.equal(await sha256OfFile(onDisk), expected, 'the server\'s disk has the same sha256')
  const written = await statsOf(server)
  // Write-behind also sends what a handle holds once its writes pause for 1 s, which a busy
  // machine can make dd do: at most one more append per second of the copy (CI once saw 33).
  const appends = written.appends - before.appends
  const pieces = SIZE_MIB / APPEND_PIECE_MIB
  t.ok(appends >= pieces && appends <= pieces + Math.ceil(ddMs / 1000), `the writes went out as ${APPEND_PIECE_MIB} MiB appends: ${appends} for ${pieces} pieces in ${ddMs} ms`)
  t.equal(written.overwrites, before.overwrites, 'and no whole-file store')

  const viaA = await run('sha256sum', [a.at('/docs/big.bin')], { timeoutMs: SLOW_MS })
  succeeded(t, viaA, 'sha256sum through mount A')
  t.equal(digestIn(viaA.stdout), expected, 'mount A reads the same bytes')
  const viaB = await run('sha256sum', [b.at('/docs/big.bin')], { timeoutMs: SLOW_MS })
  succeeded(t, viaB, 'sha256sum through mount B')
  t.equal(digestIn(viaB.stdout), expected, 'mount B reads the same bytes')

  // One MiB in the middle: a working copy of the whole file, of which only the changed MiB
  // goes back on close, as one range write.
  succeeded(t, await run('dd', ['if=/dev/urandom', `of=${patch}`, 'bs=1M', 'count=1', 'status=none']), 'a random patch')
  succeeded(t, await run('cp', [original, patched]), 'a local copy to patch')
  succeeded(t, await run('dd', [`if=${patch}`, `of=${patched}`, 'bs=1M', 'seek=100', 'conv=notrunc', 'status=none']), 'patch the local copy')
  const expectedPatched = await sha256OfFile(patched)
  const beforePatch = await statsOf(server)
  const patchStarted = Date.now()
  succeeded(t, await run('dd', [`if=${patch}`, `of=${b.at('/docs/big.bin')}`, 'bs=1M', 'seek=100', 'conv=notrunc', 'status=none'], { timeoutMs: SLOW_MS }), 'the same patch through mount B')
  t.comment(`the 1 MiB patch, sent as a range write on close, took ${Date.now() - patchStarted} ms`)
  t.equal(await sha256OfFile(onDisk), expectedPatched, 'the server has the patched file')
  const afterPatch = await statsOf(server)
  t.equal(afterPatch.rangeWrites - beforePatch.rangeWrites, 1, 'stored as one range write')
  t.ok(afterPatch.rangeBytes - beforePatch.rangeBytes < 2 * 1024 * 1024, `of the changed MiB only (${afterPatch.rangeBytes - beforePatch.rangeBytes} bytes sent)`)
  t.equal(afterPatch.overwrites, beforePatch.overwrites, 'not as a whole-file write')
  t.equal(afterPatch.appends, beforePatch.appends, 'not as appends')
  const patchedViaA = await run('sha256sum', [a.at('/docs/big.bin')], { timeoutMs: SLOW_MS })
  t.equal(digestIn(patchedViaA.stdout), expectedPatched, 'mount A reads the patched file at its next open')
  succeeded(t, await run('cmp', [patched, b.at('/docs/big.bin')], { timeoutMs: SLOW_MS }), 'cmp local vs mount B')
})

/**
 * Python run on a file through a mount: `f` is the file opened r+b (no truncation), `out`
 * what the script prints back (hex of what it read).
 */
async function onFile (file: string, body: string): Promise<string> {
  const script = `import os, sys\nf = open(sys.argv[1], 'r+b', buffering=0)\nout = []\n${body}\nf.close()\nprint(' '.join(out))`
  const done = await run('python3', ['-c', script, file], { timeoutMs: 60_000 })
  if (done.code !== 0) throw new Error(outcome(done))
  return done.stdout.trim()
}

t.test('a write in place into a large file not cached here fetches only the blocks it reads: dd conv=notrunc, a read-modify-write, a cut and a regrowth all land right', async (t) => {
  const MiB = 1024 * 1024
  const cluster = await startTestCluster(t, [{ 'data/small.txt': 'x' }])
  const server = cluster.fileServers[0]
  const onDisk = path.join(cluster.roots[0], 'data/image.bin')
  const model = crypto.randomBytes(48 * MiB)
  await cluster.client().writeFile('/data/image.bin', model)
  const mount = await mountCluster(t, cluster)
  // dd opens O_RDWR: its open starts no download only under a callback (see mount-read).
  await readUntilCallbackGranted(mount.at('/data/small.txt'), server, 'x')
  const image = mount.at('/data/image.bin')
  const local = await localTempDir(t)
  const matchesModel = async (what: string): Promise<void> => {
    t.equal(await sha256OfFile(onDisk), crypto.createHash('sha256').update(model).digest('hex'), `${what}: the server's disk holds the model's bytes`)
  }

  // dd writes without reading: no block of the file moves here.
  const patch = crypto.randomBytes(4096)
  const patchFile = path.join(local, 'patch.bin')
  fs.writeFileSync(patchFile, patch)
  const before = await statsOf(server)
  succeeded(t, await run('dd', [`if=${patchFile}`, `of=${image}`, 'bs=4096', 'seek=5000', 'conv=notrunc', 'status=none']), 'dd conv=notrunc of 4 KiB at 20,480,000')
  patch.copy(model, 5000 * 4096)
  await matchesModel('dd')
  const afterDd = await statsOf(server)
  t.equal(afterDd.contentTransfers - before.contentTransfers, 0, 'the file was not fetched whole')
  t.ok(afterDd.rangeReadBytes - before.rangeReadBytes <= 1, `nothing of it was read but the byte that confirms its version (${afterDd.rangeReadBytes - before.rangeReadBytes})`)
  t.equal(afterDd.rangeWrites - before.rangeWrites, 1, 'and the 4 KiB went back as a range write')

  // A read-modify-write across a block boundary, and a read of a block written in part.
  const at = 40 * MiB - 50
  const read = await onFile(image, `f.seek(${at}); old = f.read(100); out.append(old.hex()); f.seek(${at}); f.write(old[::-1]); f.seek(${at} - 10); out.append(f.read(120).hex())`)
  const [old, around] = read.split(' ')
  t.equal(old, model.subarray(at, at + 100).toString('hex'), 'the bytes read are the version\'s')
  Buffer.from(model.subarray(at, at + 100)).reverse().copy(model, at)
  t.equal(around, model.subarray(at - 10, at + 110).toString('hex'), 'a read across the write shows the written bytes amid the version\'s')
  await matchesModel('read-modify-write')
  const afterRmw = await statsOf(server)
  t.equal(afterRmw.contentTransfers - before.contentTransfers, 0, 'still no whole fetch')
  t.ok(afterRmw.rangeReadBytes - afterDd.rangeReadBytes <= 2 * MiB + 1, `two blocks read (${afterRmw.rangeReadBytes - afterDd.rangeReadBytes} bytes)`)

  // Cut to 30 MiB + 7, a write past the end (a hole of zeros between), a read of the last
  // bytes kept: then cut to 1 MiB and grown to 20 MiB by a write, which stores the copy whole.
  const cut = 30 * MiB + 7
  const tail = await onFile(image, `f.truncate(${cut}); f.seek(${cut} + 1000); f.write(b'end'); f.seek(${cut} - 5); out.append(f.read(10).hex())`)
  t.equal(tail, model.subarray(cut - 5, cut).toString('hex') + '0000000000', 'the last bytes kept, then the hole\'s zeros')
  const regrown = Buffer.alloc(cut + 1003)
  model.copy(regrown, 0, 0, cut)
  regrown.write('end', cut + 1000)
  let current = regrown
  t.equal(await sha256OfFile(onDisk), crypto.createHash('sha256').update(current).digest('hex'), 'cut and written past its end: the server has it right')
  await onFile(image, `f.truncate(${MiB}); f.seek(${20 * MiB}); f.write(b'far')`)
  current = Buffer.concat([current.subarray(0, MiB), Buffer.alloc(20 * MiB - MiB), Buffer.from('far')])
  t.equal(await sha256OfFile(onDisk), crypto.createHash('sha256').update(current).digest('hex'), 'cut to 1 MiB and grown to 20 MiB (stored whole): the server has it right')
  const sum = await run('sha256sum', [image])
  t.equal(digestIn(sum.stdout), crypto.createHash('sha256').update(current).digest('hex'), 'and the mount reads it so')
})

t.test('a 1 MiB write() reaches the mount as one write of 1 MiB, not eight of 128 KiB (FUSE_MAX_PAGES), for new files and appends alike', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/log.bin': '' }])
  const logDir = await localTempDir(t)
  const log = path.join(logDir, 'mount.log')
  const mount = await mountCluster(t, cluster, ['--log', log, '--log-level', 'debug'])
  const local = await localTempDir(t)
  const source = path.join(local, 'four.bin')
  succeeded(t, await run('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', 'count=4', 'status=none']), 'random data generated locally')
  succeeded(t, await run('dd', [`if=${source}`, `of=${mount.at('/docs/new.bin')}`, 'bs=1M', 'conv=fsync', 'status=none']), 'dd of 4 MiB into a new file')
  succeeded(t, await run('dd', [`if=${source}`, `of=${mount.at('/docs/log.bin')}`, 'bs=1M', 'oflag=append', 'conv=notrunc,fsync', 'status=none']), 'dd of 4 MiB appended')
  const expected = await sha256OfFile(source)
  for (const name of ['new.bin', 'log.bin']) {
    t.equal(await sha256OfFile(path.join(cluster.roots[0], 'docs', name)), expected, `${name} is whole on the server`)
    const writes = await operationLines(log, 'write', `/docs/${name}`)
    t.equal(writes.length, 4, `${name}: four write operations (${writes.length})`)
    t.ok(writes.every((line) => line.includes(`/docs/${name} 1048576"`)), `${name}: each of 1 MiB`)
  }
})

// sysfs takes the setting from root only; elsewhere the mount reads as before.
t.test('a cold sequential read comes in requests of 1 MiB: the mount raises the kernel\'s read-ahead from 128 KiB', { skip: process.getuid?.() === 0 ? false : 'needs root (the read-ahead is set in sysfs)' }, async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/.keep': '' }])
  const local = await localTempDir(t)
  const source = path.join(local, 'sixteen.bin')
  succeeded(t, await run('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', 'count=16', 'status=none']), 'random data generated locally')
  const writer = await mountCluster(t, cluster)
  succeeded(t, await run('cp', [source, writer.at('/docs/sixteen.bin')]), 'copied in through one mount')
  const logDir = await localTempDir(t)
  const log = path.join(logDir, 'mount.log')
  const reader = await mountCluster(t, cluster, ['--log', log, '--log-level', 'debug'])
  const device = mountDeviceOf(fs.readFileSync('/proc/self/mountinfo', 'utf8'), reader.mountpoint)
  t.ok(device, `the reading mount is in /proc/self/mountinfo (${device})`)
  t.equal(fs.readFileSync(`/sys/class/bdi/${device}/read_ahead_kb`, 'utf8').trim(), String(READ_AHEAD_KB), 'its read-ahead is 1 MiB')
  const read = await run('sha256sum', [reader.at('/docs/sixteen.bin')])
  t.equal(digestIn(read.stdout), await sha256OfFile(source), `the other mount reads it back whole (${outcome(read)})`)
  const reads = await operationLines(log, 'read', '/docs/sixteen.bin')
  // In 128 KiB requests it would take 128.
  t.ok(reads.length > 0 && reads.length <= 24, `16 MiB read in ${reads.length} requests`)
})
