import fsp from 'node:fs/promises'
import path from 'node:path'
import { fusermount, isMounted } from '../fuse/mount'
import { CliError, runMain } from './common'
import { isAlive } from '../shared/liveProcess'
import { mountStateOf } from './mountState'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

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
  const mountpoint = path.resolve(argv[0])
  const { stateFile } = mountStateOf(mountpoint)
  if (!(await isMounted(mountpoint))) {
    await fsp.rm(stateFile, { force: true })
    throw new CliError(`${mountpoint} is not mounted`)
  }
  let pid: number | null = null
  try {
    pid = (JSON.parse(await fsp.readFile(stateFile, 'utf8')) as { pid: number }).pid
  } catch {
    // No state file (mounted by another user or by hand): fusermount below still unmounts.
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
