import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { claimFolder } from '../shared/folderClaim'
import { CliError } from './common'

/*
 * A cache folder names each copy by its path alone, so two processes in one folder served
 * each other's bytes: two clusters' /notes/a.txt were one file, and a slow fetch of an old
 * version could land over the newer copy another mount had just kept. So every mount and
 * every dfs command takes a folder of its own inside the cache root (--cache-dir, by default
 * ~/.cache/dfs), claimed with a pid file for as long as it runs.
 */

/** The pid file in a claimed cache folder. */
const OWNER_FILE = 'owner.pid'
/** Folders for dfs commands run at once: cli, cli-2, ... (each is kept and reused). */
const COMMAND_FOLDERS = 16

/**
 * The cache folder of the mount of `directoryUrl` at `mountpoint`: ROOT/mounts/NAME-HASH,
 * the same at every remount, so the copies kept there are found again (each is still
 * checked against its file's version before use).
 */
export function mountCacheFolder (root: string, directoryUrl: string, mountpoint: string): string {
  const key = crypto.createHash('sha256').update(`${directoryUrl}\n${mountpoint}`).digest('hex').slice(0, 16)
  const name = path.basename(mountpoint).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40) || 'root'
  const folder = path.join(root, 'mounts', `${name}-${key}`)
  const claim = claimCacheFolder(folder)
  if (!claim.claimed) {
    throw new CliError(`the cache folder ${folder} of a mount of ${directoryUrl} at ${mountpoint} is in use by another process (pid ${claim.pid ?? 'starting'}): is a dfs-mount of it still running?`)
  }
  return folder
}

/** A cache folder for one dfs command: ROOT/cli, or while that is in use by another command, the first of cli-2, cli-3, ... that is free. */
export function commandCacheFolder (root: string): string {
  for (let n = 1; n <= COMMAND_FOLDERS; n++) {
    const folder = path.join(root, n === 1 ? 'cli' : `cli-${n}`)
    if (claimCacheFolder(folder).claimed) return folder
  }
  throw new CliError(`every command cache folder in ${root} is in use (${COMMAND_FOLDERS} dfs commands at once): wait for some to end`)
}

function claimCacheFolder (folder: string): ReturnType<typeof claimFolder> {
  try {
    fs.mkdirSync(folder, { recursive: true })
  } catch (err) {
    throw new CliError(`cannot make the cache folder ${folder}: ${(err as Error).message}`)
  }
  const claim = claimFolder(folder, OWNER_FILE)
  // Let go when the process ends, however it ends but kill -9 (whose pid file the next claim takes over).
  if (claim.claimed) process.once('exit', claim.release)
  return claim
}

/** A cache folder no process has used for this long is removed by the next mount's sweep. */
export const STALE_CACHE_MS = 30 * 24 * 3600 * 1000
/** Where dfs kept its copies before each process had a folder of its own: nothing uses these now. */
const OLD_LAYOUT = ['objects', 'tmp', 'work']

/**
 * Removes from the cache root the folders nobody has used for STALE_CACHE_MS: those of mounts
 * at mount points or of clusters no longer mounted (each may hold up to the cache budget),
 * of dfs commands, and the old layout's. A folder's mtime is when a process last claimed or
 * let go of it (its pid file), or last added or removed a copy in it. Each folder of a
 * process is claimed before it goes, so one in use is never touched. Answers what it removed.
 */
export async function sweepCacheRoot (root: string, now = Date.now()): Promise<string[]> {
  const stale = (folder: string): boolean => {
    try {
      return now - fs.statSync(folder).mtimeMs > STALE_CACHE_MS
    } catch {
      return false
    }
  }
  const removed: string[] = []
  const remove = async (folder: string): Promise<void> => {
    await fs.promises.rm(folder, { recursive: true, force: true })
    removed.push(folder)
  }
  for (const name of OLD_LAYOUT) {
    const folder = path.join(root, name)
    if (stale(folder)) await remove(folder)
  }
  const mounts = path.join(root, 'mounts')
  const ofProcesses = [
    ...namesIn(root).filter((name) => /^cli(-\d+)?$/.test(name)).map((name) => path.join(root, name)),
    ...namesIn(mounts).map((name) => path.join(mounts, name))
  ]
  for (const folder of ofProcesses) {
    if (!stale(folder)) continue
    const claim = claimFolder(folder, OWNER_FILE)
    if (!claim.claimed) continue
    try {
      await remove(folder)
    } finally {
      claim.release()
    }
  }
  return removed
}

function namesIn (folder: string): string[] {
  try {
    return fs.readdirSync(folder)
  } catch {
    return []
  }
}
