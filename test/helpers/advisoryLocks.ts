import { spawn } from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { outcome, run } from './mount'
import { cleanEnv } from './processes'
import { waitFor } from './waitFor'

/*
 * Programs that take fcntl and flock locks through a mount, in child processes, so the locks
 * go through the kernel and the binding (mount-locks, mount-advisory-delegation).
 */

export interface Holder {
  /** Resolves once the holder has its lock. */
  holding: Promise<void>
  /** Tells the holder to close its file (giving its lock back); resolves with its exit code. */
  release: () => Promise<number | null>
  pid: number
}

/**
 * A python3 program that opens `file`, runs `lockCode` (with `f` the open file and fcntl
 * imported), says so, and keeps the lock until told to let go on its stdin.
 */
export function holdLock (t: Test, file: string, lockCode: string): Holder {
  const script = `import fcntl, sys\nf = open(${JSON.stringify(file)}, 'r+')\n${lockCode}\nprint('holding', flush=True)\nsys.stdin.readline()\nf.close()\n`
  const child = spawn('python3', ['-c', script], { env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => { child.kill('SIGKILL') })
  const holding = waitFor(`the holder's lock on ${file}`, async () => {
    if (child.exitCode !== null) throw new Error(`the holder exited before it held its lock: ${output}`)
    return output.includes('holding') ? true : undefined
  }, 20_000).then(() => {})
  return {
    holding,
    pid: child.pid ?? 0,
    release: async () => {
      child.stdin.end('\n')
      return await exited
    }
  }
}

/** Waits until a process sleeps in the kernel on a FUSE request (a lock wait), as /proc shows it. */
export async function blockedOnMount (pid: number): Promise<void> {
  await waitFor(`process ${pid} waiting on the mount`, async () => {
    const wchan = await fsp.readFile(`/proc/${pid}/wchan`, 'utf8').catch(() => '')
    return /fuse|request_wait_answer/.test(wchan) ? true : undefined
  }, 20_000)
}

/** python3 that tries each fcntl lock without waiting and prints one word per try. */
export async function tryLocks (file: string, tries: Array<{ name: string, code: string }>): Promise<string[]> {
  const lines = tries.map(({ name, code }) =>
    `try:\n    ${code}\n    print(${JSON.stringify(name)} + ':granted', flush=True)\nexcept OSError as e:\n    print(${JSON.stringify(name)} + ':' + errno.errorcode[e.errno], flush=True)`)
  const script = `import errno, fcntl, struct\nf = open(${JSON.stringify(file)}, 'r+')\n${lines.join('\n')}\n`
  const result = await run('python3', ['-c', script], { timeoutMs: 20_000 })
  if (result.code !== 0) throw new Error(`python3 failed: ${outcome(result)}`)
  return result.stdout.trim().split('\n')
}

/** python3 that waits for an fcntl lock on the first 4 bytes of `file` (F_SETLKW), then prints the file `flag`. */
export function fcntlWaiter (file: string, flag: string): string {
  return `import fcntl\nf = open(${JSON.stringify(file)}, 'r+')\nfcntl.lockf(f, fcntl.LOCK_EX, 4, 0)\nprint(open(${JSON.stringify(flag)}).read(), end='')\n`
}

export interface LockWaiter {
  /** Rewrites the local file the program prints once it has its lock (say, just before the holder lets go). */
  say: (text: string) => void
  /** Resolves with the program's exit code. */
  exited: Promise<number | null>
  /** What it printed (stdout and stderr). */
  output: () => string
}

/**
 * Starts a program that waits for a lock through a mount and then prints a local file
 * (`command(flag)` names it), and resolves once it sleeps in the kernel on the mount. What
 * it prints shows when it got the lock: the test rewrites the file (say) before letting go.
 */
export async function waitingForLock (t: Test, command: (flag: string) => string[]): Promise<LockWaiter> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-locks-'))
  t.teardown(async () => { await fsp.rm(dir, { recursive: true, force: true }) })
  const flag = path.join(dir, 'flag')
  fs.writeFileSync(flag, 'the lock is still held\n')
  const [file, ...args] = command(flag)
  const waiter = spawn(file, args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { waiter.kill('SIGKILL') })
  let output = ''
  waiter.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  waiter.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<number | null>((resolve) => waiter.once('exit', (code) => resolve(code)))
  await blockedOnMount(waiter.pid ?? 0)
  return { say: (text) => fs.writeFileSync(flag, text), exited, output: () => output }
}
