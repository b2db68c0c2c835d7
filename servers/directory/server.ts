import crypto from 'node:crypto'
import type { Express } from 'express'
import { BadRequestError, ConflictError, NotFoundError, ServerUnavailableError } from '../../src/shared/errors'
import { normalizePath, parentOf } from '../../src/shared/paths'
import type {
  DirectoryListAnswer, DropEntryAnswer, FileMeta, FileReportAnswer, LookupAnswer, PlacementAnswer, RegisterAnswer,
  RenameSwitchAnswer, ServerInfo, ServersAnswer
} from '../../src/shared/protocol'
import { DirectoryRoutes } from '../../src/shared/protocol'
import { finishApp, healthAnswer, jsonBody, listen, newApp, silentLogger } from '../common/http'
import { bodyOf, queryOf } from '../common/input'
import { Fields } from '../common/input'
import type { Logger, RunningServer } from '../common/http'
import { Namespace } from './namespace'
import { Placement } from './placement'

export interface DirectoryServerOptions {
  log?: Logger
  /** How long placement waits for a file server's free space. */
  statfsTimeoutMs?: number
}

export function createDirectoryServer (opts: DirectoryServerOptions = {}): Express {
  const log = opts.log ?? silentLogger
  const namespace = new Namespace()
  const placement = new Placement(opts.statfsTimeoutMs)
  const servers = new Map<number, ServerInfo>()
  let nextMachineId = 1

  const serverInfo = (machineId: number): ServerInfo => {
    const server = servers.get(machineId)
    if (!server) throw new NotFoundError(`no file server ${machineId}`, { machineId })
    return server
  }

  const app = newApp()
  app.use(jsonBody)

  // Changes when this server restarts (with an empty map): file servers then join again.
  const bootId = crypto.randomUUID()

  app.get(DirectoryRoutes.health, (_req, res) => {
    res.json(healthAnswer('directory', { bootId, servers: servers.size, files: namespace.fileCount() }))
  })

  // A file server that restarts on the same address keeps its machine id.
  app.post(DirectoryRoutes.register, (req, res) => {
    const url = parseServerUrl(bodyOf(req).string('url', 2048))
    let server = [...servers.values()].find((s) => s.url === url)
    if (!server) {
      server = { machineId: nextMachineId++, url }
      servers.set(server.machineId, server)
      log(`file server ${server.machineId} registered at ${url}`)
    }
    const answer: RegisterAnswer = { machineId: server.machineId }
    res.json(answer)
  })

  app.get(DirectoryRoutes.servers, (_req, res) => {
    const answer: ServersAnswer = { servers: [...servers.values()] }
    res.json(answer)
  })

  app.put(DirectoryRoutes.reportFiles(':machineId'), (req, res) => {
    const server = serverInfo(machineIdParam(req.params.machineId))
    const files = parseFileReport(bodyOf(req).raw('files'))
    namespace.replaceClaims(server.machineId, files)
    log(`file server ${server.machineId} reported ${files.length} entries`)
    const answer: FileReportAnswer = { machineId: server.machineId, files: files.length }
    res.json(answer)
  })

  app.get(DirectoryRoutes.lookup, (req, res) => {
    const path = queryOf(req).path()
    const found = namespace.lookup(path)
    const answer: LookupAnswer = { path, kind: found.kind }
    if (found.machineId !== undefined) answer.server = serverInfo(found.machineId)
    else answer.holders = namespace.holdersOf(path).map(serverInfo)
    res.json(answer)
  })

  app.get(DirectoryRoutes.placement, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    if (namespace.has(path)) throw new ConflictError(`${path} already exists`, { path })
    const parent = parentOf(path)
    // Every server has a root folder, even one with nothing in it yet.
    const candidates = parent === '/' ? [...servers.values()] : namespace.holdersOf(parent).map(serverInfo)
    if (candidates.length === 0) throw new ServerUnavailableError('no file server has registered yet')
    const prefer = query.optionalInt('prefer', { min: 1 })
    const answer: PlacementAnswer = { path, server: await placement.choose(candidates, prefer) }
    res.json(answer)
  })

  app.post(DirectoryRoutes.entries(':machineId'), (req, res) => {
    const server = serverInfo(machineIdParam(req.params.machineId))
    const body = bodyOf(req)
    const path = body.path()
    const kind = body.kind()
    namespace.claimNew(server.machineId, path, kind)
    log(`file server ${server.machineId} created ${path}`)
    const answer: LookupAnswer = kind === 'file' ? { path, kind, server } : { path, kind, holders: namespace.holdersOf(path).map(serverInfo) }
    res.json(answer)
  })

  app.delete(DirectoryRoutes.entries(':machineId'), (req, res) => {
    const server = serverInfo(machineIdParam(req.params.machineId))
    const path = queryOf(req).path()
    namespace.drop(server.machineId, path)
    log(`file server ${server.machineId} dropped ${path}`)
    const answer: DropEntryAnswer = { path, machineId: server.machineId, dropped: true }
    res.json(answer)
  })

  app.post(DirectoryRoutes.rename, (req, res) => {
    const body = bodyOf(req)
    const kind = body.kind()
    const from = body.path('from')
    const to = body.path('to')
    const fromServer = serverInfo(body.int('fromMachineId', { min: 1 }))
    const toServer = serverInfo(body.int('toMachineId', { min: 1 }))
    let files = 1
    if (kind === 'file') {
      const replaces = body.optionalInt('replaces', { min: 1 }) ?? null
      namespace.switchFile(from, fromServer.machineId, to, toServer.machineId, replaces)
    } else {
      if (fromServer.machineId !== toServer.machineId) throw new BadRequestError('a folder is renamed on its own server only', { path: from })
      files = namespace.switchFolder(from, to, fromServer.machineId).length
    }
    log(`renamed ${from} on file server ${fromServer.machineId} to ${to} on file server ${toServer.machineId}`)
    const answer: RenameSwitchAnswer = { from, to, machineId: toServer.machineId, files }
    res.json(answer)
  })

  app.get(DirectoryRoutes.list, (req, res) => {
    const path = queryOf(req).path()
    const entries = namespace.list(path)
    const ids = new Set(entries.flatMap((e) => e.machineIds))
    const answer: DirectoryListAnswer = { path, entries, servers: [...ids].map(serverInfo) }
    res.json(answer)
  })

  finishApp(app, log)
  return app
}

export async function startDirectoryServer (opts: DirectoryServerOptions & { port: number, host?: string }): Promise<RunningServer> {
  return await listen(createDirectoryServer(opts), opts.port, opts.host)
}

function parseServerUrl (value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new BadRequestError(`not a URL: ${value}`)
  }
  if (url.protocol !== 'http:') throw new BadRequestError(`file server URL must be http: ${value}`)
  return url.origin
}

function machineIdParam (value: string | string[] | undefined): number {
  const machineId = Number(value)
  if (!Number.isSafeInteger(machineId) || machineId < 1) throw new BadRequestError(`not a machine id: ${String(value).slice(0, 32)}`)
  return machineId
}

function parseFileReport (value: unknown): FileMeta[] {
  if (!Array.isArray(value)) throw new BadRequestError('files must be a list')
  return value.map((item: unknown): FileMeta => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new BadRequestError('each file must be an object')
    const fields = new Fields(item as Record<string, unknown>, 'body')
    return {
      path: normalizePath((item as { path?: unknown }).path),
      kind: fields.kind('kind', 'file'),
      version: fields.optionalInt('version', { min: 0 }) ?? 0,
      size: fields.optionalInt('size', { min: 0 }) ?? 0,
      mtimeMs: fields.optionalInt('mtimeMs', { min: 0 }) ?? 0
    }
  })
}
