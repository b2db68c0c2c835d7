import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { findFusermount, INSTALL_HINT } from '../../src/fuse/loadFuse'
import { isMounted } from '../../src/fuse/mount'
import type { TestCluster } from './cluster'
import { cleanEnv, repoRoot } from './processes'
import type { Finished } from './processes'
import { within } from './waitFor'

/*
 * The test process never mounts and never touches a mount itself: the daemon is a child
 * process, and every file operation on the mount runs in a child process of its own with a
 * timeout, so a hung FUSE request fails one test instead of freezing the whole run.
 */

export const dfsBin = path.join(repoRoot, 'bin', 'dfs')
export const dfsMountBin = path.join(repoRoot, 'bin', 'dfs-mount')
export const dfsUmountBin = path.join(repoRoot, 'bin', 'dfs-umount')

const MOUNT_DEADLINE_MS = 20_000
const STOP_DEADLINE_MS = 15_000
const POLL_MS = 50

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))


/** Throws at once, naming what is missing, when this machine cannot mount FUSE at all. */
export function requireFuse (): void {
  const missing: string[] = []
  if (!fs.existsSync('/dev/fuse')) missing.push('/dev/fuse (no FUSE device in this machine or container; run it with --device /dev/fuse)')
  if (!findFusermount()) missing.push('fusermount')
  if (missing.length > 0) throw new Error(`FUSE mount tests cannot run: missing ${missing.join(' and ')}; ${INSTALL_HINT}`)
}

export interface CommandOptions {
  /** Killed (SIGKILL) after this long, so a hung syscall on the mount fails the test. */
  timeoutMs?: number
  cwd?: string
  env?: NodeJS.ProcessEnv
}

/** Runs a program and tells how it ended; a non-zero exit is an answer, not an exception. */
export async function run (file: string, args: string[], opts: CommandOptions = {}): Promise<Finished> {
  return await new Promise((resolve) => {
    execFile(file, args, {
      cwd: opts.cwd ?? repoRoot,
      env: opts.env ?? cleanEnv(),
      timeout: opts.timeoutMs ?? 10_000,
      killSignal: 'SIGKILL',
      maxBuffer: 16 * 1024 * 1024,
      encoding: 'utf8'
    }, (err, stdout, stderr) => {
      const failure = err as (NodeJS.ErrnoException & { code?: number | string, signal?: NodeJS.Signals | null }) | null
      resolve({
        code: failure ? (typeof failure.code === 'number' ? failure.code : null) : 0,
        signal: failure?.signal ?? null,
        stdout,
        stderr
      })
    })
  })
}

/** Runs a shell command line (`echo x >> f`, a loop of writes) in a child shell. */
export async function sh (script: string, opts: CommandOptions = {}): Promise<Finished> {
  return await run('/bin/sh', ['-c', script], opts)
}

/** dfs-mount options for a soft mount that gives up on a silent server quickly (EIO instead of waiting). */
export const SOFT = ['--soft', '--soft-timeout-ms', '300']

/** Runs a dfs CLI (bin/dfs-mount, bin/dfs-umount) with node, under the given environment. */
export async function runCli (bin: string, args: string[], opts: CommandOptions = {}): Promise<Finished> {
  return await run(process.execPath, [bin, ...args], { timeoutMs: 30_000, ...opts })
}

/** What a finished command printed and how it ended, for assertion messages. */
export function outcome (result: Finished): string {
  const clip = (text: string): string => (text.length > 300 ? `${text.slice(0, 300)}...` : text).trim()
  return `exit ${result.code ?? result.signal}; stdout: ${clip(result.stdout)}; stderr: ${clip(result.stderr)}`
}

export interface MountPlace {
  /** The fresh temp folder holding all of the below. */
  base: string
  /** Absolute path of an empty folder to mount on. */
  mountpoint: string
  cacheDir: string
  /** The environment to run dfs-mount and dfs-umount in: their state and logs stay in base. */
  env: NodeJS.ProcessEnv
}

/**
 * A fresh temp folder with an empty mount point. At teardown, failed test or not, whatever is
 * still mounted there is detached (fusermount -u -z; a detached daemon notices and exits) and
 * the folder is removed. Never throws: tap skips the remaining teardowns (the cluster's among
 * them) after one that does; a mount that cannot be removed is reported loudly instead.
 */
export async function mountPlace (t: Test): Promise<MountPlace> {
  requireFuse()
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-mount-test-'))
  const mountpoint = path.join(base, 'mnt')
  await fsp.mkdir(mountpoint)
  t.teardown(async () => {
    try {
      if (await isMounted(mountpoint)) await run('fusermount', ['-u', '-z', mountpoint])
      if (await isMounted(mountpoint)) {
        process.stderr.write(`LEFTOVER MOUNT: cannot unmount ${mountpoint}; run fusermount -u -z ${mountpoint}\n`)
        return
      }
      await fsp.rm(base, { recursive: true, force: true })
    } catch (err) {
      process.stderr.write(`teardown of ${mountpoint} failed: ${String(err)}\n`)
    }
  })
  return { base, mountpoint, cacheDir: path.join(base, 'cache'), env: { ...cleanEnv(), XDG_STATE_HOME: path.join(base, 'state') } }
}

/** The dfs-mount options that point at a test cluster, with its write token in a file of the mount place. */
export function clusterArgs (cluster: TestCluster, place: MountPlace): string[] {
  const tokenFile = path.join(place.base, 'token')
  fs.writeFileSync(tokenFile, cluster.credentials.write + '\n', { mode: 0o600 })
  return ['--directory', cluster.directory.url, '--lock', cluster.lock.url, '--cache-dir', place.cacheDir, '--token-file', tokenFile]
}

/**
 * Daemons still running when the test process exits without its teardowns (tap's timeout
 * ends it with SIGTERM) are told to unmount, so no mount outlives the run.
 */
const liveDaemons = new Set<ChildProcess>()
process.once('exit', () => {
  for (const daemon of liveDaemons) daemon.kill('SIGTERM')
})

export interface TestMount extends MountPlace {
  daemon: ChildProcess
  /** Resolves once the daemon has exited. */
  exited: Promise<void>
  /** The path of a dfs path on this mount: at('/docs/a.txt'). */
  at: (dfsPath: string) => string
  /** Everything the daemon printed so far, to explain a failure. */
  output: () => string
  alive: () => boolean
}

/**
 * Mounts the cluster with `dfs-mount --foreground` in a child process, at a mount place of its
 * own, and waits until the kernel lists the mount; fails early with what dfs-mount printed if
 * it exits first. At teardown the daemon gets SIGTERM (it unmounts), then SIGKILL if it does
 * not exit; the mount place's teardown removes whatever is still mounted.
 */
export async function mountCluster (t: Test, cluster: TestCluster, extraArgs: string[] = [], opts: { cacheDir?: string } = {}): Promise<TestMount> {
  const place = await mountPlace(t)
  // A cache folder of the test's own (on a small disk) in place of the mount place's.
  if (opts.cacheDir !== undefined) place.cacheDir = opts.cacheDir
  const daemon = spawn(process.execPath, [dfsMountBin, place.mountpoint, '--foreground', ...clusterArgs(cluster, place), ...extraArgs], {
    cwd: repoRoot,
    env: place.env,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  daemon.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  daemon.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()))
  const alive = (): boolean => daemon.exitCode === null && daemon.signalCode === null
  liveDaemons.add(daemon)
  void exited.then(() => liveDaemons.delete(daemon))

  t.teardown(async () => {
    if (!alive()) return
    daemon.kill('SIGTERM')
    if (!(await within(exited, STOP_DEADLINE_MS))) {
      process.stderr.write(`dfs-mount did not stop on SIGTERM within ${STOP_DEADLINE_MS} ms; killing it. It printed: ${output}\n`)
      daemon.kill('SIGKILL')
      await exited
    }
  })

  const deadline = Date.now() + MOUNT_DEADLINE_MS
  while (!(await isMounted(place.mountpoint))) {
    if (!alive()) throw new Error(`dfs-mount exited (${daemon.exitCode ?? daemon.signalCode}) before mounting ${place.mountpoint}: ${output.trim()}`)
    if (Date.now() > deadline) throw new Error(`${place.mountpoint} was not mounted within ${MOUNT_DEADLINE_MS} ms; dfs-mount printed: ${output.trim()}`)
    await sleep(POLL_MS)
  }
  return {
    ...place,
    daemon,
    exited,
    at: (dfsPath) => path.join(place.mountpoint, dfsPath),
    output: () => output,
    alive
  }
}

/** The pid of the daemon that `dfs-mount` (run in the background) names in its output. */
export function daemonPidOf (stdout: string): number {
  return Number(/daemon pid (\d+)/.exec(stdout)?.[1])
}

/** Whether a process is gone; a zombie has exited too (in a container, pid 1 may reap it late). */
export function hasExited (pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}
