import crypto from 'node:crypto'
import os from 'node:os'
import path from 'node:path'

/** Where a mount's daemon records its pid and writes its log, so dfs-umount can find it. */
export function mountStateOf (mountpoint: string): { stateFile: string, logFile: string } {
  const base = process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state')
  const slug = path.basename(mountpoint).replace(/[^A-Za-z0-9._-]/g, '_') + '-' + crypto.createHash('sha256').update(mountpoint).digest('hex').slice(0, 8)
  const dir = path.join(base, 'dfs', 'mounts')
  return { stateFile: path.join(dir, `${slug}.json`), logFile: path.join(dir, `${slug}.log`) }
}
