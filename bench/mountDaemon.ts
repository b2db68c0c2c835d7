import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { isMounted, lazyUnmount } from '../src/fuse/mount'
import { cleanEnv, repoRoot } from './processes'

/*
 * A node program that serves a FUSE mount in the foreground, as a child process of the
 * benchmark: the dfs mount (bin/dfs-mount) and the passthrough (bench/passthrough.ts). The
 * benchmark reads the mounts through its workloads' processes and never serves one itself.
 */

const MOUNT_DEADLINE_MS = 20_000
const STOP_DEADLINE_MS = 15_000

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

export interface MountDaemon {
  /** What it is called in messages: dfs-mount, passthrough. */
  name: string
  mountpoint: string
  child: ChildProcess
  exited: Promise<void>
  alive: () => boolean
  output: () => string
}

/** `node args...` in the repository, once the kernel lists a mount at `mountpoint`. */
export async function startMountDaemon (name: string, mountpoint: string, args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<MountDaemon> {
  const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const daemon = { name, mountpoint, child, exited, alive: () => child.exitCode === null && child.signalCode === null, output: () => output }
  const deadline = Date.now() + MOUNT_DEADLINE_MS
  while (!(await isMounted(mountpoint))) {
    if (!daemon.alive()) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before mounting: ${output.trim()}`)
    if (Date.now() > deadline) {
      await stopMountDaemon(mountpoint, daemon)
      throw new Error(`${name}: not mounted within ${MOUNT_DEADLINE_MS} ms; it printed: ${output.trim()}`)
    }
    await sleep(50)
  }
  return daemon
}

/**
 * SIGTERM to the daemon (it unmounts itself), SIGKILL if it has not ended in time, then a
 * lazy unmount if the mount is still there. True when no mount is left. Safe to call twice.
 */
export async function stopMountDaemon (mountpoint: string, daemon: MountDaemon | null): Promise<boolean> {
  if (daemon?.alive() === true) {
    daemon.child.kill('SIGTERM')
    const stopped = await Promise.race([daemon.exited.then(() => true), sleep(STOP_DEADLINE_MS).then(() => false)])
    if (!stopped) {
      daemon.child.kill('SIGKILL')
      await daemon.exited
    }
  }
  if (await isMounted(mountpoint)) await lazyUnmount(mountpoint)
  return !(await isMounted(mountpoint))
}
