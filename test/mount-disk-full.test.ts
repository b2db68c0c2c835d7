import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'
import { quoted } from './helpers/mountOps'

/*
 * A file server whose disk is full, through a real mount: a shell ignores the errors of
 * close(), so a store refused there would lose `echo line >> file` without a word. The
 * mount refuses the write() itself (ENOSPC), which the shell reports, and nothing is half
 * stored. The disk is a small tmpfs (mounting one needs root, as CI runs).
 */

const NOT_ROOT = process.getuid?.() !== 0 ? 'mounting a small tmpfs needs root' : false

/** A tmpfs of `mib` MiB (and `inodes` inodes), unmounted (lazily, after the servers on it close) when the test ends. */
async function smallDisk (t: Test, mib: number, inodes?: number): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-small-disk-'))
  const options = `size=${mib}m` + (inodes === undefined ? '' : `,nr_inodes=${inodes}`)
  const mounted = await run('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir])
  if (mounted.code !== 0) throw new Error(`could not mount a tmpfs: ${outcome(mounted)}`)
  t.teardown(async () => {
    await run('umount', ['-l', dir])
    await fsp.rm(dir, { recursive: true, force: true })
  })
  return dir
}

/** A bash command line (bash's echo says why a write failed). */
async function bash (line: string): ReturnType<typeof run> {
  return await run('bash', ['-c', line])
}

t.test('a full disk: echo >>, echo > and cp fail with "No space left on device", nothing is half stored, and writes go on once there is room', { skip: NOT_ROOT }, async (t) => {
  const disk = await smallDisk(t, 16)
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'first\n', 'old.txt': 'old\n' }], {}, { rootsIn: disk })
  const mount = await mountCluster(t, cluster)
  const root = cluster.roots[0]
  const todo = mount.at('/notes/todo.txt')
  const warm = await bash(`echo warm >> ${quoted(todo)}`)
  t.equal(warm.code, 0, `an append while there is room: ${outcome(warm)}`)

  // Filled beside the root, to the last page.
  const filler = path.join(disk, 'filler')
  await run('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k'], { timeoutMs: 60_000 })
  t.equal((await fsp.statfs(disk)).bavail, 0, 'the disk is full')

  const append = await bash(`echo second >> ${quoted(todo)}`)
  t.not(append.code, 0, 'echo >> fails')
  t.match(append.stderr, /No space left on device/, `and says why: ${outcome(append)}`)
  const create = await bash(`echo new > ${quoted(mount.at('/new.txt'))}`)
  t.not(create.code, 0, 'echo > of a new file fails')
  t.match(create.stderr, /No space left on device/, `and says why: ${outcome(create)}`)
  fs.writeFileSync(path.join(os.tmpdir(), `dfs-disk-full-${process.pid}`), Buffer.alloc(200_000, 'x'))
  const copy = await run('cp', [path.join(os.tmpdir(), `dfs-disk-full-${process.pid}`), mount.at('/copy.bin')])
  fs.rmSync(path.join(os.tmpdir(), `dfs-disk-full-${process.pid}`))
  t.not(copy.code, 0, 'cp fails')
  t.match(copy.stderr, /No space left on device/, `and says why: ${outcome(copy)}`)
  // A rename records its intent first, which needs room: refused as such, not as EIO.
  const rename = await run('mv', [mount.at('/old.txt'), mount.at('/older.txt')])
  t.notMatch(rename.stderr, /Input\/output error/, `a rename is not an I/O error: ${outcome(rename)}`)
  t.equal(fs.readFileSync(path.join(root, 'notes/todo.txt'), 'utf8'), 'first\nwarm\n', 'the file is as it was on the server')

  fs.rmSync(filler)
  const again = await bash(`echo second >> ${quoted(todo)} && echo new > ${quoted(mount.at('/new.txt'))}`)
  t.equal(again.code, 0, `with room again, both work: ${outcome(again)}`)
  t.equal(fs.readFileSync(path.join(root, 'notes/todo.txt'), 'utf8'), 'first\nwarm\nsecond\n', 'the append landed once')
  t.equal(fs.readFileSync(path.join(root, 'new.txt'), 'utf8'), 'new\n', 'and the new file holds its bytes')
})

t.test('a disk out of inodes: echo > of a new file fails with "No space left on device"; appends to a file there still land', { skip: NOT_ROOT }, async (t) => {
  const disk = await smallDisk(t, 16, 400)
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'first\n' }], {}, { rootsIn: disk })
  const mount = await mountCluster(t, cluster)
  // Every inode left taken, beside the root.
  const filler = path.join(disk, 'filler')
  fs.mkdirSync(filler)
  for (let i = 0; ; i++) {
    try {
      fs.writeFileSync(path.join(filler, String(i)), '')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break
      throw err
    }
  }
  t.equal((await fsp.statfs(disk)).ffree, 0, 'no inode is free')

  const create = await bash(`echo new > ${quoted(mount.at('/notes/new.txt'))}`)
  t.not(create.code, 0, 'echo > of a new file fails')
  t.match(create.stderr, /No space left on device/, `and says why: ${outcome(create)}`)
  const append = await bash(`echo second >> ${quoted(mount.at('/notes/todo.txt'))}`)
  t.equal(append.code, 0, `an append needs no inode: ${outcome(append)}`)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'notes/todo.txt'), 'utf8'), 'first\nsecond\n', 'and lands')

  fs.rmSync(filler, { recursive: true })
  const again = await bash(`echo new > ${quoted(mount.at('/notes/new.txt'))}`)
  t.equal(again.code, 0, `with inodes free again, the new file is made: ${outcome(again)}`)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'notes/new.txt'), 'utf8'), 'new\n')
})

t.test('a file larger than the mount\'s cache disk is read all the same (by ranges); a write in place to it keeps only the blocks it reads, and a read that needs the whole copy fails instead of waiting for ever', { skip: NOT_ROOT }, async (t) => {
  const cacheDisk = await smallDisk(t, 16)
  const cluster = await startTestCluster(t, [{ 'data/big.bin': '' }])
  const bytes = crypto.randomBytes(40 * 1024 * 1024)
  fs.writeFileSync(path.join(cluster.roots[0], 'data', 'big.bin'), bytes)
  const mount = await mountCluster(t, cluster, [], { cacheDir: path.join(cacheDisk, 'cache') })
  const big = mount.at('/data/big.bin')
  const expected = crypto.createHash('sha256').update(bytes).digest('hex')
  for (const pass of ['first', 'second']) {
    const read = await run('sha256sum', [big], { timeoutMs: 60_000 })
    t.equal(read.code, 0, `the ${pass} read succeeds: ${outcome(read)}`)
    t.equal(read.stdout.split(' ')[0], expected, `and has every byte (${pass} read)`)
  }
  t.match(mount.output(), /the cache folder .* could not hold a copy of \/data\/big\.bin \(ENOSPC\): reading it from its server by ranges/, 'the mount says why it reads by ranges')
  // A write in place keeps only the blocks it reads here (a partial copy): it fits.
  const onServer = path.join(cluster.roots[0], 'data', 'big.bin')
  const write = await run('dd', ['if=/dev/zero', `of=${big}`, 'bs=1', 'count=1', 'seek=10', 'conv=notrunc'], { timeoutMs: 30_000 })
  t.equal(write.code, 0, `a write in place of one byte succeeds: ${outcome(write)}`)
  bytes[10] = 0
  t.ok(fs.readFileSync(onServer).equals(bytes), 'and lands')
  // Reading all of it through a handle that writes in place needs it all here: no room, so
  // that read fails at once (a server that does not answer would be waited for); the byte
  // the handle wrote still lands at its close.
  const script = `import os, sys
f = open(sys.argv[1], 'r+b', buffering=0)
f.seek(20); f.write(b'\\x01')
try:
    f.seek(0); f.read(); print('read')
except OSError as e:
    print(os.strerror(e.errno))
f.close()`
  const readAll = await run('python3', ['-c', script, big], { timeoutMs: 30_000 })
  t.equal(readAll.signal, null, 'the read does not hang')
  t.equal(readAll.stdout.trim(), 'Input/output error', `it fails: ${outcome(readAll)}`)
  t.match(mount.output(), /EIO \(the cache folder \S+\/work could not hold a copy of \/data\/big\.bin \(ENOSPC\)\)/, 'the mount logs the EIO with its cause: the work folder\'s disk')
  bytes[20] = 1
  t.ok(fs.readFileSync(onServer).equals(bytes), 'and the byte written through that handle lands at its close')
})
