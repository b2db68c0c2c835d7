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
