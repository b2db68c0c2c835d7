import fs from 'node:fs'
import fsp from 'node:fs/promises'
import { fusermount, isMounted } from '../fuse/mount'
import { CliError, runMain } from './common'
import { isAlive } from '../shared/liveProcess'
import { canonicalMountpoint, mountStateOf } from './mountState'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Whether `pid` is a live dfs-mount daemon started with --bg: a state file left by a daemon
 * that died may name a pid the system has given to another process since.
 */
function isWaitingDaemon (pid: number): boolean {
  if (!isAlive(pid)) return false
  try {
    const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    return args.some((arg) => /(dfs-mount|mount\.js)$/.test(arg)) && args.includes('--bg')
  } catch {
    return false
  }
}

/**
 * Asks the mount's daemon to unmount (it sends pending writes first); a mount whose daemon
 * died (a stale mount) or does not answer is detached with fusermount.
 */
async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv.length !== 1 || argv[0].startsWith('-')) {
    if (argv[0] === '--help' || argv[0] === '-h') {
      process.stdout.write('dfs-umount <mountpoint>\n\nUnmounts a dfs mount, also one whose daemon died.\n')
      return
    }
    throw new CliError('usage: dfs-umount MOUNTPOINT')
  }
  const mountpoint = canonicalMountpoint(argv[0])
  const { stateFile } = mountStateOf(mountpoint)
  let pid: number | null = null
  try {
    pid = (JSON.parse(await fsp.readFile(stateFile, 'utf8')) as { pid: number }).pid
  } catch {
    // No state file (mounted by another user or by hand): fusermount below still unmounts.
  }
  if (!(await isMounted(mountpoint))) {
    // A dfs-mount --bg daemon still waiting for its cluster: it is stopped, and nothing mounts later.
    const waiting = pid !== null && isWaitingDaemon(pid) ? pid : null
    if (waiting !== null) process.kill(waiting, 'SIGTERM')
    for (let waited = 0; waiting !== null && waited < 5000 && isAlive(waiting); waited += 100) await sleep(100)
    await fsp.rm(stateFile, { force: true })
    if (waiting === null) throw new CliError(`${mountpoint} is not mounted`)
    process.stdout.write(`stopped the dfs-mount daemon (pid ${waiting}) that was waiting for its cluster to mount ${mountpoint}\n`)
    return
  }
  if (pid !== null && isAlive(pid)) {
    process.kill(pid, 'SIGTERM')
    for (let waited = 0; waited < 15_000 && (await isMounted(mountpoint)); waited += 100) await sleep(100)
  }
  if (await isMounted(mountpoint)) {
    const failure = await fusermount(['-u', mountpoint])
    if (failure !== null && (await isMounted(mountpoint))) {
      // Busy or stale: detach now; the kernel lets go once the last user closes.
      const lazyFailure = await fusermount(['-u', '-z', mountpoint])
      if (lazyFailure !== null) throw new CliError(`cannot unmount ${mountpoint}: ${lazyFailure}`)
    }
  }
  await fsp.rm(stateFile, { force: true })
  process.stdout.write(`unmounted ${mountpoint}\n`)
}

runMain('dfs-umount', main)
