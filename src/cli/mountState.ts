import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { DEFAULT_MOUNT_STATE_DIR } from '../shared/defaults'

/** Where a mount's daemon records its pid and writes its log, so dfs-umount can find it. */
export function mountStateOf (mountpoint: string): { stateFile: string, logFile: string } {
  const slug = path.basename(mountpoint).replace(/[^A-Za-z0-9._-]/g, '_') + '-' + crypto.createHash('sha256').update(mountpoint).digest('hex').slice(0, 8)
  return { stateFile: path.join(DEFAULT_MOUNT_STATE_DIR, `${slug}.json`), logFile: path.join(DEFAULT_MOUNT_STATE_DIR, `${slug}.log`) }
}

/**
 * A mount point as the kernel names it in /proc/mounts: absolute, with the symbolic links
 * among its parent folders resolved (/home is a link to /var/home on some systems). As typed,
 * a mount made through such a link looked unmounted to the daemon's own check, which then
 * unmounted it two seconds later; dfs-umount could not find it either. Only the parent is
 * resolved: the mount point itself may be a live mount, whose stat would wait on its daemon.
 */
export function canonicalMountpoint (given: string): string {
  const absolute = path.resolve(given)
  try {
    return path.join(fs.realpathSync.native(path.dirname(absolute)), path.basename(absolute))
  } catch {
    // A parent that does not exist: the mount fails on it with its own message.
    return absolute
  }
}
