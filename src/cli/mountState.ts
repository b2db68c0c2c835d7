import crypto from 'node:crypto'
import path from 'node:path'
import { DEFAULT_MOUNT_STATE_DIR } from '../shared/defaults'

/** Where a mount's daemon records its pid and writes its log, so dfs-umount can find it. */
export function mountStateOf (mountpoint: string): { stateFile: string, logFile: string } {
  const slug = path.basename(mountpoint).replace(/[^A-Za-z0-9._-]/g, '_') + '-' + crypto.createHash('sha256').update(mountpoint).digest('hex').slice(0, 8)
  return { stateFile: path.join(DEFAULT_MOUNT_STATE_DIR, `${slug}.json`), logFile: path.join(DEFAULT_MOUNT_STATE_DIR, `${slug}.log`) }
}
