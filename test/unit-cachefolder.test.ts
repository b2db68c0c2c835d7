import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { commandCacheFolder, mountCacheFolder } from '../src/cli/cacheFolder'
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
