import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { DEFAULT_MOUNT_STATE_DIR } from '../shared/defaults'

/** Where a mount's daemon records its pid and writes its log, so dfs-umount can find it. */
export function mountStateOf (mountpoint: string): { stateFile: string, logFile: string } {
  const slug = path.basename(mountpoint).replace(/[^A-Za-z0-9._-]/g, '_') + '-' + crypto.createHash('sha256').update(mountpoint).digest('hex').slice(0, 8)
  return { stateFile: path.join(DEFAULT_MOUNT_STATE_DIR, `${slug}.json`), logFile: path.join(DEFAULT_MOUNT_STATE_DIR, `${slug}.log`) }
}

/** Links followed at most at the mount point's own name (a loop of links ends there). */
const MOUNTPOINT_LINKS = 8

/**
 * A mount point as the kernel names it in /proc/mounts: absolute, with symbolic links
 * resolved (/home is a link to /var/home on some systems). As typed, a mount made through
 * such a link looked unmounted to the daemon's own check, which then unmounted it two seconds
 * later; dfs-umount could not find it either. The parent folders go through realpath; the
 * name itself only through readlink, which never looks inside a mount: it may be a live one,
 * whose stat would wait on its daemon.
 */
export function canonicalMountpoint (given: string): string {
  let absolute = path.resolve(given)
  for (let links = 0; ; links++) {
    let resolved: string
    try {
      resolved = path.join(fs.realpathSync.native(path.dirname(absolute)), path.basename(absolute))
    } catch {
      // A parent that does not exist: the mount fails on it with its own message.
      return absolute
    }
    let target: string
    try {
      target = fs.readlinkSync(resolved)
    } catch {
      return resolved // not a link (EINVAL), or not there: the mount says so
    }
    if (links === MOUNTPOINT_LINKS) return resolved
    absolute = path.resolve(path.dirname(resolved), target)
  }
}
