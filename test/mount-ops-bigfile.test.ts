import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, run } from './helpers/mount'
import { localTempDir, sha256OfFile, succeeded } from './helpers/mountOps'
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
  t.comment(`dd of ${SIZE_MIB} MiB into the mount took ${Date.now() - started} ms`)
  t.equal(await sha256OfFile(onDisk), expected, 'the server\'s disk has the same sha256')
  const written = await statsOf(server)
  t.equal(written.appends - before.appends, SIZE_MIB / APPEND_PIECE_MIB, `the writes went out as ${APPEND_PIECE_MIB} MiB appends`)
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
