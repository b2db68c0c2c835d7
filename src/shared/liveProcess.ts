import fs from 'node:fs'

/**
 * Whether a process with this pid is alive (a pid file's owner: a lock server's state
 * folder, a mount or a cluster daemon). One that cannot be signalled for want of permission
 * is alive (another user's). One killed whose parent has not reaped it yet (a zombie, as
 * under a container's PID 1 that reaps late) still answers signal 0, but is dead: counted
 * alive, it kept a lock server from starting again after a kill -9.
 */
export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    // /proc/PID/stat is "pid (comm) state ...": comm may hold spaces and ')', so read after the last ')'.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.charAt(stat.lastIndexOf(')') + 2) !== 'Z'
  } catch (err) {
    // No /proc here: the signal's answer is all there is. Else the process went since the signal.
    if (!fs.existsSync('/proc/self')) return true
    return (err as NodeJS.ErrnoException).code !== 'ENOENT'
  }
}
