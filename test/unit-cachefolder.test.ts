import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { commandCacheFolder, mountCacheFolder, STALE_CACHE_MS, sweepCacheRoot } from '../src/cli/cacheFolder'
import { localTempDir } from './helpers/mountOps'

/*
 * Each mount and each dfs command takes a cache folder of its own inside the cache root,
 * claimed with a pid file: two processes in one folder served each other's copies
 * (mount-read has the mounts that showed it).
 */

/** A pid nobody has any more: a process that ran and was reaped. */
function deadPid (): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout)
}

t.test('a mount\'s folder: by its mount point and cluster, the same at a remount, one process at a time', async (t) => {
  const cache = await localTempDir(t)
  const folder = mountCacheFolder(cache, 'http://dir.example:7070', '/home/alice/dfs')
  t.match(folder, new RegExp(`^${cache}/mounts/dfs-[0-9a-f]{16}$`))
  t.equal(fs.readFileSync(path.join(folder, 'owner.pid'), 'utf8'), String(process.pid), 'claimed with this process\'s pid')
  t.not(mountCacheFolder(cache, 'http://other.example:7070', '/home/alice/dfs'), folder, 'another cluster at the same mount point: another folder')
  t.not(mountCacheFolder(cache, 'http://dir.example:7070', '/mnt/dfs'), folder, 'another mount point: another folder')
  t.throws(() => mountCacheFolder(cache, 'http://dir.example:7070', '/home/alice/dfs'), new RegExp(`is in use by another process \\(pid ${process.pid}\\)`), 'a second claim while the first holds it is refused')

})

t.test('a pid file left by a killed process is taken over', async (t) => {
  const cache = await localTempDir(t)
  const folder = path.join(cache, 'cli')
  fs.mkdirSync(folder, { recursive: true })
  fs.writeFileSync(path.join(folder, 'owner.pid'), String(deadPid()))
  t.equal(commandCacheFolder(cache), folder, 'the dead owner\'s folder is this command\'s')
  t.equal(fs.readFileSync(path.join(folder, 'owner.pid'), 'utf8'), String(process.pid))
  t.equal(commandCacheFolder(cache), path.join(cache, 'cli-2'), 'a command running beside it takes the next folder')
  t.equal(commandCacheFolder(cache), path.join(cache, 'cli-3'))
})

t.test('a live process\'s folder is not taken', async (t) => {
  const cache = await localTempDir(t)
  const folder = path.join(cache, 'cli')
  fs.mkdirSync(folder, { recursive: true })
  // PID 1 is alive for as long as the machine runs.
  fs.writeFileSync(path.join(folder, 'owner.pid'), '1')
  t.equal(commandCacheFolder(cache), path.join(cache, 'cli-2'))
  t.equal(fs.readFileSync(path.join(folder, 'owner.pid'), 'utf8'), '1', 'its pid file is left alone')
})

t.test('a mount sweeps the cache root of folders unused for 30 days: its own and live ones stay', async (t) => {
  const cache = await localTempDir(t)
  const old = (Date.now() - STALE_CACHE_MS - 24 * 3600 * 1000) / 1000
  const make = (name: string, opts: { stale: boolean, owner?: number }): string => {
    const folder = path.join(cache, name)
    fs.mkdirSync(path.join(folder, 'objects'), { recursive: true })
    fs.writeFileSync(path.join(folder, 'objects', 'copy'), 'bytes')
    if (opts.owner !== undefined) fs.writeFileSync(path.join(folder, 'owner.pid'), String(opts.owner))
    if (opts.stale) fs.utimesSync(folder, old, old)
    return folder
  }
  const gone = [
    make('mounts/old-mount-0123456789abcdef', { stale: true }),
    make('mounts/killed-0123456789abcdef', { stale: true, owner: deadPid() }),
    make('cli-3', { stale: true }),
    make('objects', { stale: true })
  ]
  const kept = [
    make('mounts/recent-0123456789abcdef', { stale: false }),
    make('mounts/running-0123456789abcdef', { stale: true, owner: 1 }),
    make('tmp', { stale: false }),
    make('keep-me', { stale: true })
  ]
  const mine = mountCacheFolder(cache, 'http://dir.example:7070', '/mnt/dfs')
  fs.utimesSync(mine, old, old)
  const removed = await sweepCacheRoot(cache)
  t.same(removed.sort(), [...gone].sort(), 'the stale folders of no live process, and the old layout\'s, are removed')
  for (const folder of gone) t.notOk(fs.existsSync(folder), `${path.relative(cache, folder)} is gone`)
  for (const folder of kept) t.ok(fs.existsSync(path.join(folder, 'objects', 'copy')), `${path.relative(cache, folder)} stays`)
  t.ok(fs.existsSync(path.join(mine, 'owner.pid')), 'the sweeping mount\'s own folder stays claimed')
  t.equal(fs.readFileSync(path.join(cache, 'mounts/running-0123456789abcdef', 'owner.pid'), 'utf8'), '1', 'a live owner\'s pid file is left alone')
})
