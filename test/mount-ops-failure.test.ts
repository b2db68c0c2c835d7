import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { uploadsLeft } from './helpers/diskImage'
import { startTestCluster } from './helpers/cluster'
import { FileWorker, WorkerError } from './helpers/fileWorkerClient'
import { mountCluster, run, sh, SOFT } from './helpers/mount'
import { localTempDir, quoted, restartFileServer, sha256OfFile, succeeded } from './helpers/mountOps'
import { waitFor } from './helpers/waitFor'

/*
 * Writes on a soft mount (--soft) that meet a file server that is down, or goes down while
 * they are stored: the writer gets EIO, nothing hangs, and once the server is back the file holds either its old
 * bytes or the new ones, whole, never a mix.
 */

// Long enough that only a hang hits it; the mount's own network timeouts are a few seconds.
const NO_HANG_MS = 30_000
const MIB = 1024 * 1024

t.test('overwriting with echo > or cp while the file\'s server is down fails with EIO; once it is back the file is as it was, and the write then works', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'old content\n' }, { 'logs/b.log': 'b\n' }])
  const onDisk = path.join(cluster.roots[0], 'docs/a.txt')
  const mount = await mountCluster(t, cluster, SOFT)
  const file = mount.at('/docs/a.txt')
  const local = await localTempDir(t)
  fs.writeFileSync(path.join(local, 'new.txt'), 'new content from cp\n')
  t.equal((await run('cat', [file])).stdout, 'old content\n', 'cached before the server goes down')

  await cluster.fileServers[0].close()
  const echo = await sh(`echo new > ${quoted(file)}`, { timeoutMs: NO_HANG_MS })
  t.equal(echo.signal, null, 'echo > ended by itself')
  t.not(echo.code, 0, 'echo > fails')
  t.match(echo.stderr, /Input\/output error/, `EIO: ${echo.stderr.trim()}`)
  const cp = await run('cp', [path.join(local, 'new.txt'), file], { timeoutMs: NO_HANG_MS })
  t.equal(cp.signal, null, 'cp ended by itself')
  t.not(cp.code, 0, 'cp over the file fails')
  t.match(cp.stderr, /Input\/output error/, `EIO: ${cp.stderr.trim()}`)
  t.ok(mount.alive(), 'the daemon stays up')
  t.equal(fs.readFileSync(onDisk, 'utf8'), 'old content\n', 'the server\'s disk still has the old file')

  await restartFileServer(t, cluster, 0)
  t.equal((await run('cat', [file], { timeoutMs: NO_HANG_MS })).stdout, 'old content\n', 'back up: the old content, whole')
  succeeded(t, await sh(`echo new > ${quoted(file)}`, { timeoutMs: NO_HANG_MS }), 'echo > works again')
  t.equal(fs.readFileSync(onDisk, 'utf8'), 'new\n', 'and replaced the file')
  succeeded(t, await run('cp', [path.join(local, 'new.txt'), file], { timeoutMs: NO_HANG_MS }), 'so does cp')
  t.equal(fs.readFileSync(onDisk, 'utf8'), 'new content from cp\n', 'with cp\'s bytes')
})

t.test('the server goes down while a writer has the file open: close fails with EIO, the file keeps its old bytes, and the lock is free again', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'old content, long enough to show a torn write\n' }])
  const onDisk = path.join(cluster.roots[0], 'docs/a.txt')
  const old = fs.readFileSync(onDisk, 'utf8')
  const a = await mountCluster(t, cluster, SOFT)
  const b = await mountCluster(t, cluster, SOFT)
  const writer = await FileWorker.start(t, { commandTimeoutMs: NO_HANG_MS })

  // Opened with O_TRUNC, as a shell's > does: the file is emptied in the writer's copy only.
  const fd = await writer.open(a.at('/docs/a.txt'), 'w')
  await writer.write(fd, Buffer.from('NEW'), 0)
  t.equal(fs.readFileSync(onDisk, 'utf8'), old, 'while it is open, the server has the old bytes')
  t.equal((await run('cat', [b.at('/docs/a.txt')])).stdout, old, 'and so does the other mount')

  await cluster.fileServers[0].close()
  const closing = await writer.close(fd).then(() => null, (err: unknown) => err)
  t.type(closing, WorkerError, `close fails: ${String(closing)}`)
  t.equal((closing as WorkerError).code, 'EIO', 'with EIO')

  await restartFileServer(t, cluster, 0)
  t.equal(fs.readFileSync(onDisk, 'utf8'), old, 'back up: the server has the old bytes, whole')
  t.equal((await run('cat', [b.at('/docs/a.txt')], { timeoutMs: NO_HANG_MS })).stdout, old, 'mount B reads them')
  t.equal((await run('cat', [a.at('/docs/a.txt')], { timeoutMs: NO_HANG_MS })).stdout, old, 'so does mount A, whose copy was never stored')
  // The failed writer gave the lock back: another writer need not wait out its lease.
  succeeded(t, await sh(`echo newer > ${quoted(b.at('/docs/a.txt'))}`, { timeoutMs: NO_HANG_MS }), 'mount B overwrites the file')
  t.equal(fs.readFileSync(onDisk, 'utf8'), 'newer\n', 'with its bytes')
})

t.test('the server goes down in the middle of storing a large overwrite: cp fails with EIO, the file keeps its old bytes whole', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/.keep': '' }])
  const root = cluster.roots[0]
  const onDisk = path.join(root, 'docs/big.bin')
  const uploads = path.join(root, '.dfs', 'tmp')
  const mount = await mountCluster(t, cluster, SOFT)
  const local = await localTempDir(t)
  const oldFile = path.join(local, 'old.bin')
  const newFile = path.join(local, 'new.bin')
  fs.writeFileSync(oldFile, crypto.randomBytes(MIB))
  fs.writeFileSync(newFile, crypto.randomBytes(192 * MIB))
  succeeded(t, await run('cp', [oldFile, mount.at('/docs/big.bin')]), 'the old file, through the mount')
  const oldDigest = await sha256OfFile(oldFile)
  t.equal(await sha256OfFile(onDisk), oldDigest, 'the server has it')

  // cp writes into a private copy and stores it whole on close; the server is stopped once
  // the upload of that store has reached its disk.
  const cp = run('cp', [newFile, mount.at('/docs/big.bin')], { timeoutMs: 120_000 })
  const partial = await waitFor('the upload to reach the server\'s disk', async () => {
    for (const name of fs.readdirSync(uploads)) {
      const size = fs.statSync(path.join(uploads, name), { throwIfNoEntry: false })?.size ?? 0
      if (size > 0) return size
    }
    return undefined
  }, 60_000, 2)
  await cluster.fileServers[0].close()
  t.comment(`server stopped with ${partial} bytes of the upload on its disk`)
  const failed = await cp
  t.equal(failed.signal, null, 'cp ended by itself')
  t.not(failed.code, 0, 'cp fails')
  t.match(failed.stderr, /Input\/output error/, `EIO: ${failed.stderr.trim()}`)
  t.equal(await sha256OfFile(onDisk), oldDigest, 'the server\'s file is the old one, whole')

  await restartFileServer(t, cluster, 0)
  t.same(uploadsLeft(root), [], 'no upload is left over')
  const viaMount = await run('sha256sum', [mount.at('/docs/big.bin')], { timeoutMs: NO_HANG_MS })
  t.equal(viaMount.stdout.split(' ')[0], oldDigest, 'the mount reads the old file')
  succeeded(t, await run('cp', [newFile, mount.at('/docs/big.bin')], { timeoutMs: 120_000 }), 'cp again, server up')
  t.equal(await sha256OfFile(onDisk), await sha256OfFile(newFile), 'now the server has the new file, whole')
})
