import fsp from 'node:fs/promises'
import path from 'node:path'
import { DEFAULT_HOST, DEFAULT_PORTS } from '../src/shared/defaults'
import type { ServerAuth } from './common/auth'
import type { Logger, RunningServer } from './common/http'
import { silentLogger } from './common/http'
import { startDirectoryServer } from './directory/server'
import { startFileServer } from './file/server'
import type { RunningFileServer } from './file/server'
import { startLockServer } from './lock/server'

export interface ClusterOptions {
  /** One file server per root folder. */
  roots: string[]
  host?: string
  /** 0 everywhere picks free ports (tests); the defaults are the documented fixed ports. */
  directoryPort?: number
  lockPort?: number
  /** Port of the first file server; the others count up from it (0: free ports for all). */
  firstFilePort?: number
  leaseMs?: number
  /** The directory server's state folder (machine ids of the file servers); absent: kept in memory. */
  directoryStateDir?: string
  /** The lock server's state folder (its journal); without one, locks are kept in memory only. */
  lockStateDir?: string
  log?: Logger
  /** The cluster key every server checks credentials with; absent, the servers are open to anyone. */
  auth?: ServerAuth
}

export interface RunningCluster {
  directory: RunningServer
  lock: RunningServer
  fileServers: RunningFileServer[]
  /** Stops every server, file servers first; graceMs as RunningServer.close has it. */
  close: (graceMs?: number) => Promise<void>
}

/** A directory server, a lock server and a file server per root, in this process. */
export async function startCluster (opts: ClusterOptions): Promise<RunningCluster> {
  const log = opts.log ?? silentLogger
  const host = opts.host ?? DEFAULT_HOST
  const started: RunningServer[] = []
  try {
    // The lock server first: the directory server's status shows the locks it holds.
    const lock = await startLockServer({ port: opts.lockPort ?? DEFAULT_PORTS.lock, host, leaseMs: opts.leaseMs, stateDir: opts.lockStateDir, log, auth: opts.auth })
    started.push(lock)
    const directory = await startDirectoryServer({ port: opts.directoryPort ?? DEFAULT_PORTS.directory, host, stateDir: opts.directoryStateDir, lockUrl: lock.url, log, auth: opts.auth })
    started.push(directory)
    const fileServers: RunningFileServer[] = []
    const firstFilePort = opts.firstFilePort ?? DEFAULT_PORTS.firstFile
    for (const [i, root] of opts.roots.entries()) {
      const server = await startFileServer({
        root,
        port: firstFilePort === 0 ? 0 : firstFilePort + i,
        host,
        directoryUrl: directory.url,
        lockUrl: lock.url,
        log,
        auth: opts.auth
      })
      started.push(server)
      fileServers.push(server)
    }
    return { directory, lock, fileServers, close: async (graceMs?: number) => await closeAll(started, graceMs) }
  } catch (err) {
    await closeAll(started)
    throw err
  }
}

/** One after another, file servers first (their requests in flight may still call the others), within one grace period. */
async function closeAll (servers: RunningServer[], graceMs?: number): Promise<void> {
  const until = graceMs === undefined ? null : Date.now() + graceMs
  for (const server of [...servers].reverse()) await server.close(until === null ? undefined : Math.max(1, until - Date.now()))
}

/**
 * Copies the sample data into the demo's working folder unless it is there already, so
 * appends made in the demo never change the files in the repository.
 */
export async function prepareDemoData (sampleDir: string, workDir: string, reset: boolean): Promise<string[]> {
  if (reset) await fsp.rm(workDir, { recursive: true, force: true })
  const servers = (await fsp.readdir(sampleDir)).sort()
  for (const server of servers) {
    const target = path.join(workDir, server)
    try {
      await fsp.access(target)
    } catch {
      await fsp.cp(path.join(sampleDir, server), target, { recursive: true })
    }
  }
  return servers.map((server) => path.join(workDir, server))
}
