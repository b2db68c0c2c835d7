import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import readline from 'node:readline'

/** The repository, seen from dist/test/helpers where this runs. */
export const repoRoot = path.resolve(__dirname, '..', '..', '..')

export interface Finished {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** The environment without DFS_* settings, so a developer's own setup cannot steer a test. */
export function cleanEnv (): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DFS_')))
}

/**
 * Runs `node args...` in the repository, feeds `input` on stdin, and gives back how it
 * ended. Killed after timeoutMs so a hung command fails the test instead of stalling it.
 * `env` replaces cleanEnv(), for a test of what DFS_* variables do.
 */
export async function runNode (args: string[], opts: { input?: string | Buffer, timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<Finished> {
  const child = spawn(process.execPath, args, { cwd: repoRoot, env: opts.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  child.stdin.on('error', () => {}) // a command that exits without reading stdin
  child.stdin.end(opts.input ?? '')
  try {
    return await new Promise<Finished>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
    })
  } finally {
    clearTimeout(timer)
  }
}

export interface Started {
  child: ChildProcess
  /** The first stdout line that matched. */
  line: string
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/**
 * Starts `node args...` and waits for a stdout line matching `pattern` (a server saying it
 * listens, a child saying it holds a lock). Fails with what the process printed if it
 * exits first or stays silent for timeoutMs. `env` replaces cleanEnv(), as for runNode.
 */
export async function startNode (args: string[], pattern: RegExp, timeoutMs = 15_000, env?: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(process.execPath, args, { cwd: repoRoot, env: env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const lines = readline.createInterface({ input: child.stdout! })
  try {
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs)
      lines.on('line', (text) => {
        if (pattern.test(text)) {
          clearTimeout(timer)
          resolve(text)
        }
      })
      void exited.then(({ code, signal }) => {
        clearTimeout(timer)
        reject(new Error(`exited (${code ?? signal}) before printing ${pattern}; stderr: ${stderr}`))
      })
    })
    return { child, line, exited }
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
}

/** Stops a child started by startNode and waits until it is gone. */
export async function stopNode (started: Started, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
  if (started.child.exitCode === null && started.child.signalCode === null) started.child.kill(signal)
  return await started.exited
}
