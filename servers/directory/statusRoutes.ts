import fs from 'node:fs'
import path from 'node:path'
import type { Express } from 'express'
import { StatusApi, StatusRoutes } from '../../src/shared/clusterStatus'
import type { ClusterStatus, HeldLock, ServerReport } from '../../src/shared/clusterStatus'
import type { ServerStatus } from '../../src/shared/protocol'
import { Transport } from '../../src/shared/transport'
import type { CallerIdentity } from '../../src/shared/transport'
import { FileServerPool } from '../../src/shared/api'
import { recentProblems } from '../common/problems'
import type { Namespace } from './namespace'
import type { ServerRegistry } from './registry'

/** How long the status waits for each server it asks; a slower one shows as not answering. */
const ASK_TIMEOUT_MS = 1500

/** The page, read once: plain HTML and a little script, no build step (servers/directory/status.html). */
const PAGE_FILE = path.resolve(__dirname, '..', '..', '..', 'servers', 'directory', 'status.html')

export interface StatusSources {
  registry: ServerRegistry
  namespace: Namespace
  /** The lock server, asked for the locks held; null: not known to this directory server. */
  lockUrl: string | null
  /** Notes servers that went down since the last look, so the status lists them as problems at once. */
  noteDownServers?: () => void
  /** Sent with the calls to the other servers (their credentials, once they ask for one). */
  caller?: CallerIdentity
}

/**
 * GET /status (the page) and GET /status/cluster (what it shows, and what `dfs status`
 * prints): the file servers with their free space, files, clients and last heartbeat; the
 * locks held; the latest problems. Asks the other servers at the time, in parallel, each
 * with a short deadline, so a hung server makes the status slower by at most that.
 */
export function mountStatusRoutes (app: Express, sources: StatusSources): void {
  const pool = new FileServerPool(ASK_TIMEOUT_MS, sources.caller)
  const lock = sources.lockUrl === null ? null : new StatusApi(new Transport('lock server', sources.lockUrl, ASK_TIMEOUT_MS, sources.caller))
  let page: string | null = null

  app.get(StatusRoutes.page, (_req, res) => {
    page ??= fs.readFileSync(PAGE_FILE, 'utf8')
    // The page holds no data: it may be cached, it reads the data itself.
    res.set({ 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' }).send(page)
  })

  app.get(StatusRoutes.cluster, async (_req, res) => {
    sources.noteDownServers?.()
    const servers = sources.registry.all()
    const filesOf = sources.namespace.filesPerServer()
    const [reports, locks] = await Promise.all([
      Promise.all(servers.map(async (server) => await reportOf(server, filesOf.get(server.machineId) ?? 0))),
      lock === null
        ? { held: null, error: 'the directory server was not told where the lock server is (--lock)' }
        : lock.heldLocks().then((a) => ({ held: a.locks, error: undefined }), (err: Error) => ({ held: null as HeldLock[] | null, error: err.message }))
    ])
    const clients = new Map<string, number[]>()
    for (const { clientIds, report } of reports) {
      for (const id of clientIds) clients.set(id, [...clients.get(id) ?? [], report.machineId])
    }
    const answer: ClusterStatus = {
      generatedAtMs: Date.now(),
      servers: reports.map((r) => r.report),
      locks: locks.held,
      clients: [...clients].map(([clientId, machineIds]) => ({ clientId, machineIds })).sort((a, b) => a.clientId.localeCompare(b.clientId)),
      problems: recentProblems()
    }
    if (locks.error !== undefined) answer.locksError = locks.error
    res.set('Cache-Control', 'no-store').json(answer)
  })

  async function reportOf (server: ServerStatus, files: number): Promise<{ report: ServerReport, clientIds: string[] }> {
    const report: ServerReport = { ...server, freeBytes: null, totalBytes: null, files, clients: null }
    // A server that is down is not asked: it would only cost the deadline.
    if (server.state === 'down') return { report, clientIds: [] }
    const api = pool.of(server)
    const [space, clients] = await Promise.allSettled([api.statfs(), new StatusApi(api.transport).clients()])
    if (space.status === 'fulfilled') {
      report.freeBytes = space.value.freeBytes
      report.totalBytes = space.value.totalBytes
    }
    const clientIds = clients.status === 'fulfilled' ? clients.value.clients : []
    if (clients.status === 'fulfilled') report.clients = clientIds.length
    return { report, clientIds }
  }
}
