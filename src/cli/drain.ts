import { DirectoryApi } from '../shared/api'
import { DrainApi } from '../shared/drainProtocol'
import type { DrainProgress } from '../shared/drainProtocol'
import { ServerUnavailableError } from '../shared/errors'
import type { ServerStatus } from '../shared/protocol'
import type { CallerIdentity } from '../shared/transport'
import { Transport } from '../shared/transport'
import { CliError } from './common'

/*
 * `dfs-serve drain <server>`: an operator's command (with the cluster key, like
 * forget-server). It marks the file server draining at the directory (no new files go
 * there), starts the move on the file server, prints its progress, and succeeds once the
 * directory no longer lists the server. src/shared/drainProtocol.ts has the routes.
 */

/** How often the file server is asked how far it got. */
const PROGRESS_EVERY_MS = 500

export interface DrainCommand {
  directory: string
  timeoutMs: number
  /** A machine id, or the file server's URL as the directory lists it. */
  server: string
  cancel: boolean
  caller: CallerIdentity
  out: (line: string) => void
}

export async function drainCommand (cmd: DrainCommand): Promise<void> {
  const directory = new DirectoryApi(new Transport('directory server', cmd.directory, cmd.timeoutMs, cmd.caller))
  const marks = new DrainApi(directory.transport)
  const server = whichServer((await directory.servers()).servers, cmd.server)
  if (cmd.cancel) {
    await marks.mark(server.machineId, false)
    cmd.out(`file server ${server.machineId} is back in service; files moved before stay where they went`)
    return
  }
  await marks.mark(server.machineId, true)
  cmd.out(`file server ${server.machineId} at ${server.url} is draining: no new files go there`)
  const fileServer = new DrainApi(new Transport(`file server ${server.machineId}`, server.url, cmd.timeoutMs, cmd.caller))
  let progress: DrainProgress | null = await fileServer.start()
  let shown = ''
  while (progress !== null && progress.state === 'moving') {
    const line = progressLine(progress)
    if (line !== shown) cmd.out(line)
    shown = line
    await new Promise((resolve) => setTimeout(resolve, PROGRESS_EVERY_MS))
    // Once it has left, the server ends its process: no answer then is no failure by itself.
    progress = await fileServer.progress().catch((err: unknown) => {
      if (err instanceof ServerUnavailableError) return null
      throw err
    })
  }
  if (progress?.state === 'failed') {
    throw new CliError(`the drain of file server ${server.machineId} stopped after ${progress.moved} files, ${progress.remaining} left: ${progress.message ?? 'no reason given'}; ` +
      'it stays draining: run dfs-serve drain again to go on, or with --cancel to put it back in service')
  }
  // The directory has the last word: the server is gone from it, or the drain did not finish.
  const still = (await directory.servers()).servers.find((s) => s.machineId === server.machineId)
  if (still !== undefined) {
    throw new CliError(`file server ${server.machineId} stopped answering before it left (now ${still.state}); run dfs-serve drain again once it is up`)
  }
  cmd.out(`file server ${server.machineId} drained${progress === null ? '' : `: ${progress.moved} files moved`}; it left the cluster`)
}

function progressLine (progress: DrainProgress): string {
  const waiting = progress.waitingForLocks
  return `moved ${progress.moved} files, ${progress.remaining} remaining` +
    (waiting.length > 0 ? `; waiting for the locks of ${waiting.slice(0, 3).join(', ')}${waiting.length > 3 ? ', ...' : ''}` : '')
}

function whichServer (servers: ServerStatus[], named: string): ServerStatus {
  let found: ServerStatus | undefined
  if (/^\d+$/.test(named)) {
    found = servers.find((s) => s.machineId === Number(named))
  } else {
    let origin: string
    try {
      origin = new URL(named).origin
    } catch {
      throw new CliError(`name the file server by its machine id or URL (see dfs status), not "${named}"`)
    }
    found = servers.find((s) => s.url === origin)
  }
  if (found === undefined) throw new CliError(`no file server ${named} is registered at the directory server (see dfs status)`)
  return found
}
