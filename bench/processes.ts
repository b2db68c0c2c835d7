import { spawn } from 'node:child_process'
import path from 'node:path'

/*
 * Running node programs as child processes, for the benchmark and the tests (which import
 * this; the benchmark never imports from test/).
 */

/** The repository, seen from dist/bench where this runs. */
export const repoRoot = path.resolve(__dirname, '..', '..')

export interface Finished {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** The environment without DFS_* settings, so a developer's own setup cannot steer a run. */
export function cleanEnv (): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('DFS_')))
}

/**
 * Runs `node args...` in the repository, feeds `input` on stdin, and gives back how it
 * ended. Killed after timeoutMs so a hung command fails instead of stalling the run.
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
