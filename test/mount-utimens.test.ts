import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { loadFuse, PATCHED_BUILD_HINT, REQUIRED_PATCH_LEVEL } from '../src/fuse/loadFuse'
import { startTestCluster } from './helpers/cluster'
import { dfsMountBin, mountCluster, mountPlace, outcome, run, runCli } from './helpers/mount'
import { localTempDir, succeeded } from './helpers/mountOps'
import { repoRoot } from './helpers/processes'

/*
 * dfs mounts through fuse-native patched at install (patches/fuse-native+2.2.6.patch, built by
 * scripts/build-fuse-native.js): its utimens passes the mtime (upstream passes the atime twice)
 * and UTIME_NOW / UTIME_OMIT, so touch -m, touch -a and cp -p keep the times they ask for.
 * Times are read back with stat in a child process, as everything on a mount is.
 */

const fuseNativeDir = path.join(repoRoot, 'node_modules', 'fuse-native')

/** Seconds.milliseconds, as `stat -c %.3Y` prints an mtime. */
const statSeconds = (iso: string): string => (Date.parse(iso) / 1000).toFixed(3)

async function mtimeOf (file: string): Promise<string> {
  const result = await run('stat', ['-c', '%.3Y', file])
  if (result.code !== 0) throw new Error(`stat ${file}: ${outcome(result)}`)
  return result.stdout.trim()
}

t.test('the fuse-native that loads is the patched build from build/Release, not the prebuilt binary', async (t) => {
  // The same resolution require('fuse-native') does (index.js: require('node-gyp-build')(__dirname)).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require(require.resolve('node-gyp-build', { paths: [fuseNativeDir] })) as { resolve: (dir: string) => string }
  t.equal(path.relative(fuseNativeDir, nodeGypBuild.resolve(fuseNativeDir)), path.join('build', 'Release', 'fuse.node'), 'node-gyp-build picks build/Release/fuse.node')
  const Fuse = loadFuse()
  t.equal(Fuse.DFS_PATCH_LEVEL, REQUIRED_PATCH_LEVEL, 'the loaded binding carries the dfs patch level')
  t.equal(Fuse.UTIME_NOW, 'now', 'the patched index.js names UTIME_NOW')
  t.equal(Fuse.UTIME_OMIT, 'omit', 'the patched index.js names UTIME_OMIT')
})

t.test('dfs-mount refuses the unpatched prebuilt binary with a one-line hint', async (t) => {
  const place = await mountPlace(t)
  // PREBUILDS_ONLY makes node-gyp-build skip build/Release and load prebuilds/linux-x64, the
  // binary fuse-native ships. The directory URL answers nothing, so a dfs-mount that went past
  // the check would fail differently instead of mounting.
  const result = await runCli(dfsMountBin, [place.mountpoint, '--foreground', '--directory', 'http://127.0.0.1:9', '--lock', 'http://127.0.0.1:9', '--cache-dir', place.cacheDir], {
    env: { ...place.env, PREBUILDS_ONLY: '1' }
  })
  t.not(result.code, 0, `dfs-mount fails: ${outcome(result)}`)
  t.match(result.stderr, PATCHED_BUILD_HINT, 'and says to run npm install')
  t.equal(result.stderr.trim().split('\n').length, 1, 'in one line')
})

t.test('touch -m -d, touch -a -d, touch -m and cp -p set the mtime they ask for', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n', 'docs/b.txt': 'beta\n' }])
  const root = cluster.roots[0]
  const mount = await mountCluster(t, cluster)
  const a = mount.at('/docs/a.txt')

  // touch -m: atime UTIME_OMIT. Unpatched, libfuse 2 never calls utimens for it.
  const first = '2001-02-03T04:05:06.789Z'
  t.not(await mtimeOf(a), statSeconds(first), 'a.txt starts with another mtime')
  succeeded(t, await run('touch', ['-m', '-d', '2001-02-03 04:05:06.789 UTC', a]), 'touch -m -d')
  t.equal(await mtimeOf(a), statSeconds(first), 'stat shows the mtime touch -m set, to the millisecond')
  t.equal(fs.statSync(path.join(root, 'docs/a.txt')).mtimeMs, Date.parse(first), 'the server\'s file has it')

  // touch -a: mtime UTIME_OMIT, so the mtime stays.
  succeeded(t, await run('touch', ['-a', '-d', '1995-06-07 08:09:10 UTC', a]), 'touch -a -d')
  t.equal(await mtimeOf(a), statSeconds(first), 'touch -a leaves the mtime as it was')

  // touch -m without a date: mtime UTIME_NOW, atime UTIME_OMIT.
  const before = Date.now()
  succeeded(t, await run('touch', ['-m', a]), 'touch -m')
  const after = Date.now()
  const now = Number(await mtimeOf(a)) * 1000
  t.ok(now >= Math.floor(before / 1000) * 1000 && now <= after, `touch -m sets the mtime to now (${before} <= ${now} <= ${after})`)

  // cp -p sets both times at once; they differ, so an mtime taken from the atime shows.
  const local = await localTempDir(t)
  const source = path.join(local, 'source.txt')
  fs.writeFileSync(source, 'kept times\n')
  const sourceMtime = '2003-04-05T06:07:08.250Z'
  fs.utimesSync(source, new Date('1996-01-02T03:04:05Z'), new Date(sourceMtime))
  const copy = mount.at('/docs/copy.txt')
  succeeded(t, await run('cp', ['-p', source, copy]), 'cp -p into the mount')
  t.equal(await mtimeOf(copy), statSeconds(sourceMtime), 'the copy has the source\'s mtime')
  t.equal(fs.statSync(path.join(root, 'docs/copy.txt')).mtimeMs, Date.parse(sourceMtime), 'so does the server\'s file')
})
