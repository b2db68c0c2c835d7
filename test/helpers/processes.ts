import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import readline from 'node:readline'
import { cleanEnv, repoRoot } from '../../bench/processes'

// Shared with the benchmark, which may not import from test/.
export { cleanEnv, repoRoot, runNode } from '../../bench/processes'
export type { Finished } from '../../bench/processes'

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
