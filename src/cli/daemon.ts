import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { CliError } from './common'

// Not DFS_-prefixed: the CLIs read DFS_* variables as options.
const READY_ENV = 'NOTIFY_READY_DFS_PARENT'

/**
 * Starts this same command again in the background with `args`, its output going to
 * `logFile`, and waits until it says it is ready (or fails, or exits). The parent then
 * returns, so the shell gets its prompt back only once the service really works.
 */
export async function startDetached (args: string[], logFile: string, waitMs = 30_000): Promise<number> {
  fs.mkdirSync(path.dirname(logFile), { recursive: true })
  const log = fs.openSync(logFile, 'a')
  const child = spawn(process.execPath, [process.argv[1], ...args], {
    detached: true,
    stdio: ['ignore', log, log, 'ipc'],
    env: { ...process.env, [READY_ENV]: '1' }
  })
  fs.closeSync(log)
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new CliError(`the background process did not get ready within ${waitMs / 1000} s; see ${logFile}`)), waitMs)
      child.on('message', (message: { ready?: boolean, error?: string }) => {
        clearTimeout(timer)
        if (message.ready) resolve()
        else reject(new CliError(message.error ?? `failed; see ${logFile}`))
      })
      child.on('exit', (code) => {
        clearTimeout(timer)
        reject(new CliError(`the background process exited (code ${code ?? 'none'}); see ${logFile}`))
      })
    })
  } catch (err) {
    child.kill('SIGTERM')
    throw err
  }
  child.removeAllListeners()
  child.disconnect()
  child.unref()
  return child.pid as number
}

/** In a process started by startDetached: tell the parent the outcome. */
export function notifyParent (outcome: { ready: true } | { error: string }): void {
  // Once only: a daemon that went on in the background (dfs-mount --bg) told its parent already.
  if (process.env[READY_ENV] && process.send && process.connected) {
    process.send(outcome)
    process.disconnect?.()
  }
}

