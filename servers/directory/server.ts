import express from 'express'
import type { Express } from 'express'
import { BadRequestError, NotFoundError } from '../../src/errors'
import { normalizePath } from '../../src/paths'
import type { DirectoryListAnswer, FileMeta, LookupAnswer, RegisterAnswer, ServerInfo, ServersAnswer } from '../../src/protocol'
import { DirectoryRoutes } from '../../src/protocol'
import { finishApp, jsonBody, listen, pathParam, silentLogger } from '../common/http'
import type { Logger, RunningServer } from '../common/http'
import { Namespace } from './namespace'

export interface DirectoryServerOptions {
  log?: Logger
}

export function createDirectoryServer (opts: DirectoryServerOptions = {}): Express {
  const log = opts.log ?? silentLogger
  const namespace = new Namespace()
  const servers = new Map<number, ServerInfo>()
  let nextMachineId = 1

  const serverInfo = (machineId: number): ServerInfo => {
    const server = servers.get(machineId)
    if (!server) throw new NotFoundError(`no file server ${machineId}`, { machineId })
    return server
  }

  const app = express()
  app.disable('x-powered-by')
  app.use(jsonBody)

  app.get(DirectoryRoutes.health, (_req, res) => {
    res.json({ service: 'directory', servers: servers.size, files: namespace.fileCount() })
  })

  // A file server that restarts on the same address keeps its machine id.
  app.post(DirectoryRoutes.register, (req, res) => {
    const url = parseServerUrl(req.body?.url)
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
    const server = serverInfo(Number(req.params.machineId))
    const files = parseFileReport(req.body?.files)
    namespace.replaceClaims(server.machineId, files)
    log(`file server ${server.machineId} reported ${files.length} entries`)
    res.json({ machineId: server.machineId, files: files.length })
  })

  app.get(DirectoryRoutes.lookup, (req, res) => {
    const path = pathParam(req)
    const found = namespace.lookup(path)
    const answer: LookupAnswer = { path, kind: found.kind }
    if (found.machineId !== undefined) answer.server = serverInfo(found.machineId)
    res.json(answer)
  })

  app.get(DirectoryRoutes.list, (req, res) => {
    const path = pathParam(req)
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

function parseServerUrl (value: unknown): string {
  if (typeof value !== 'string') throw new BadRequestError('url is missing')
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new BadRequestError(`not a URL: ${value}`)
  }
  if (url.protocol !== 'http:') throw new BadRequestError(`file server URL must be http: ${value}`)
  return url.origin
}

function parseFileReport (value: unknown): FileMeta[] {
  if (!Array.isArray(value)) throw new BadRequestError('files must be a list')
  return value.map((item: Partial<FileMeta>) => {
    if (item === null || typeof item !== 'object') throw new BadRequestError('each file must be an object')
    const kind = item.kind === 'dir' ? 'dir' : 'file'
    return {
      path: normalizePath(item.path),
      kind,
      version: Number(item.version) || 0,
      size: Number(item.size) || 0,
      mtimeMs: Number(item.mtimeMs) || 0
    }
  })
}
