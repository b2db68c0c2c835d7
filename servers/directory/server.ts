import crypto from 'node:crypto'
import type { Express, Response } from 'express'
import { BadRequestError, ConflictError, ForbiddenError, ServerUnavailableError } from '../../src/shared/errors'
import { registeredUrlOf } from '../../src/shared/clusterUrls'
import { normalizePath, parentOf } from '../../src/shared/paths'
import type {
  DirectoryListAnswer, DropEntryAnswer, FileMeta, FileReportAnswer, ForgetServerAnswer, HeartbeatAnswer, LookupAnswer, MovedAnswer, PlacementAnswer,
  RegisterAnswer, RenameSwitchAnswer, ServerInfo, ServersAnswer, ServerState
} from '../../src/shared/protocol'
import { DirectoryRoutes, MAX_CALLBACK_LEASE_MS } from '../../src/shared/protocol'
import { FileServerPool } from '../../src/shared/api'
import { DEFAULT_CALLBACK_LEASE_MS, DEFAULT_SERVER_DOWN_AFTER_MS } from '../../src/shared/defaults'
import { Authenticator, callerOf, isFileServer, requireCredentials } from '../common/auth'
import type { RouteRole, ServerAuth } from '../common/auth'
import { finishApp, healthAnswer, jsonBody, listen, newApp, silentLogger } from '../common/http'
import { bodyOf, queryOf } from '../common/input'
import { Fields } from '../common/input'
import type { Logger, RunningServer, ServerTls } from '../common/http'
import { Namespace } from './namespace'
import { JournaledNamespace } from './namespaceJournal'
import { Placement, STATFS_TIMEOUT_MS } from './placement'
import { ServerRegistry } from './registry'
import { fileServersGauge } from '../common/metrics'
import { noteProblem } from '../common/problems'
import { mountStatusRoutes } from './statusRoutes'
import { mountDrainRoutes } from './drainRoutes'
import { FolderCallbacks } from './folderCallbacks'

export interface DirectoryServerOptions {
  log?: Logger
  /** How long placement waits for a file server's free space. */
  statfsTimeoutMs?: number
  /**
   * Folder of the state file that binds machine ids to file servers (servers.json), so ids
   * survive a restart; null or absent keeps it in memory (an in-process cluster, tests).
   */
  stateDir?: string | null
  /** A file server without a heartbeat for this long is down: no new files, lookups say so. */
  downAfterMs?: number
  /** The cluster key and deny list; absent, the server is open to anyone (--insecure). */
  auth?: ServerAuth
  /**
   * The lock server: asked for the locks held by the status page and `dfs status`, and named
   * in /health to clients not told one (src/shared/clusterUrls.ts); absent: neither.
   */
  lockUrl?: string
  /** How long a client's folder callbacks count without a renewal (and the longest a change waits for a silent client). */
  callbackLeaseMs?: number
}

/**
 * Who may call which route: clients read (lookup, list, servers) and place new files; only
 * cluster servers register, and only the file server bound to a machine id reports, claims,
 * drops, renames and heartbeats for it (checked in the routes: requireBoundServer).
 */
const ROUTE_ROLES: RouteRole[] = [
  ['post', DirectoryRoutes.register, 'server'],
  ['get', DirectoryRoutes.servers, 'read'],
  ['post', DirectoryRoutes.heartbeat(':machineId'), 'server'],
  ['delete', DirectoryRoutes.server(':machineId'), 'server'],
  ['put', DirectoryRoutes.reportFiles(':machineId'), 'server'],
  ['get', DirectoryRoutes.lookup, 'read'],
  ['get', DirectoryRoutes.moved, 'read'],
  ['get', DirectoryRoutes.placement, 'write'],
  ['post', DirectoryRoutes.entries(':machineId'), 'server'],
  ['delete', DirectoryRoutes.entries(':machineId'), 'server'],
  ['post', DirectoryRoutes.rename, 'server'],
  ['get', DirectoryRoutes.list, 'read'],
  ['post', DirectoryRoutes.folderChanged, 'write']
]

/** Each is a value of dfs_file_servers' `state` label, shown even at 0. */
const FILE_SERVER_STATES: ServerState[] = ['up', 'draining', 'down']

/** The directory's app; `stop` ends its liveness watch (the server's close calls it). */
export interface DirectoryServerApp {
  app: Express
  stop: () => void
}

export async function createDirectoryServer (opts: DirectoryServerOptions = {}): Promise<DirectoryServerApp> {
  const log = opts.log ?? silentLogger
  // With a state folder the namespace is journaled there, so a restart answers for every
  // name at once; the file servers' reports still replace what each holds when they join.
  const namespace = (opts.stateDir ?? null) === null ? new Namespace() : JournaledNamespace.open(opts.stateDir as string, log)
  const statfsTimeoutMs = opts.statfsTimeoutMs ?? STATFS_TIMEOUT_MS
  // It asks file servers for their free space and health as a member of the cluster.
  const caller = opts.auth === undefined ? {} : { credential: opts.auth.key.serverCredential('directory') }
  const placement = new Placement(statfsTimeoutMs, caller)
  const downAfterMs = opts.downAfterMs ?? DEFAULT_SERVER_DOWN_AFTER_MS
  const registry = await ServerRegistry.open({ stateDir: opts.stateDir ?? null, downAfterMs })
  // To ask a file server that seems to have moved whether it still serves at its old address.
  const fileServers = new FileServerPool(statfsTimeoutMs, caller)

  const serverInfo = (machineId: number): ServerInfo => registry.info(machineId)

  /** The file server bound to this machine id, and no other caller, may speak for it (403). */
  const requireBoundServer = (res: Response, machineId: number): void => {
    const serverId = registry.serverIdOf(machineId)
    const who = callerOf(res)
    if (!isFileServer(who, serverId)) {
      throw new ForbiddenError(`only file server ${machineId} itself may do this; ${who.subject} is not it`, { machineId })
    }
  }

  const app = newApp('directory')
  const folders = new FolderCallbacks(Math.min(opts.callbackLeaseMs ?? DEFAULT_CALLBACK_LEASE_MS, MAX_CALLBACK_LEASE_MS))
  const auth = opts.auth === undefined ? null : new Authenticator({ ...opts.auth, identitySecret: (serverId) => registry.secretOf(serverId) })
  requireCredentials(app, auth, ROUTE_ROLES)
  app.use(jsonBody)
  folders.mount(app)
  const removeGauge = fileServersGauge.add(() => {
    const states = registry.all().map((s) => s.state)
    return FILE_SERVER_STATES.map((state) => ({ labels: { state }, value: states.filter((s) => s === state).length }))
  })
  // Liveness is computed when asked; this only tells the operator when a server went quiet:
  // every so often, and before each status answer (which would otherwise show a server down
  // without the problem, until the next look).
  const reported = new Set<number>()
  const noteDownServers = (): void => {
    for (const server of registry.all()) {
      if (server.state !== 'down' || server.sinceHeartbeatMs === null) {
        reported.delete(server.machineId)
      } else if (!reported.has(server.machineId)) {
        reported.add(server.machineId)
        // Listings held under folder callbacks name the server as up: they are asked again.
        void folders.changedEverywhere()
        const message = `file server ${server.machineId} at ${server.url} is down: no heartbeat for ${server.sinceHeartbeatMs} ms`
        log(message)
        noteProblem(message)
      }
    }
  }
  mountStatusRoutes(app, { registry, namespace, lockUrl: opts.lockUrl ?? null, caller, noteDownServers })
  mountDrainRoutes(app, { registry, namespace, folders, log, machineIdParam, requireBoundServer })

  // Changes when this server restarts: file servers then join again and report their files.
  const bootId = crypto.randomUUID()

  app.get(DirectoryRoutes.health, (_req, res) => {
    res.json(healthAnswer('directory', {
      bootId,
      servers: registry.size,
      serversUp: registry.up().length,
      files: namespace.fileCount(),
      ...(opts.lockUrl !== undefined ? { lockUrl: opts.lockUrl } : {})
    }))
  })

  // The machine id is bound to the server's own serverId: it survives restarts of either
  // side and a move to another URL.
  app.post(DirectoryRoutes.register, async (req, res) => {
    const body = bodyOf(req)
    // A loopback URL from another machine is recorded at the address it came from.
    const url = registeredUrlOf(parseServerUrl(body.string('url', 2048)), req.socket.remoteAddress)
    const serverId = body.identifier('serverId')
    const wanted = body.optionalInt('machineId', { min: 1 })
    const secret = body.has('secret') ? body.identifier('secret') : undefined
    const who = callerOf(res)
    if (who.serverId !== null && who.serverId !== serverId) throw new ForbiddenError(`${who.subject} may not register as another file server`)
    if (auth !== null && secret === undefined) throw new BadRequestError('a file server registers with its secret (identity.json)')
    const known = registry.byServerId(serverId)
    if (known && known.url !== url && registry.isUp(known.machineId) && await stillServes(fileServers, known, serverId)) {
      // Two live processes with one identity: a root copied with its .dfs folder.
      throw new ConflictError(`file server ${known.machineId} with serverId ${serverId} still serves at ${known.url}; ` +
        'a copy of its root? Remove .dfs/identity.json from the copy', { machineId: known.machineId, url: known.url })
    }
    const { server, was } = await registry.register(serverId, url, wanted, secret)
    if (was === 'new') log(`file server ${server.machineId} registered at ${url}`)
    else if (was === 'moved') log(`file server ${server.machineId} moved to ${url}`)
    // Listings held under folder callbacks name servers by address and state.
    if (was !== 'new') await folders.changedEverywhere()
    else log(`file server ${server.machineId} joined again at ${url}`)
    const answer: RegisterAnswer = { machineId: server.machineId, url }
    res.json(answer)
  })

  app.get(DirectoryRoutes.servers, (_req, res) => {
    const answer: ServersAnswer = { servers: registry.all() }
    res.json(answer)
  })

  app.post(DirectoryRoutes.heartbeat(':machineId'), (req, res) => {
    const machineId = machineIdParam(req.params.machineId)
    requireBoundServer(res, machineId)
    const { server, cameBack } = registry.heartbeat(machineId, bodyOf(req).identifier('serverId'))
    if (cameBack) {
      log(`file server ${machineId} at ${server.url} is up again`)
      void folders.changedEverywhere()
    }
    const answer: HeartbeatAnswer = { machineId, state: 'up', bootId }
    res.json(answer)
  })

  // Only for a server that is gone for good: its names leave the namespace (and listings).
  app.delete(DirectoryRoutes.server(':machineId'), async (req, res) => {
    const machineId = machineIdParam(req.params.machineId)
    // An operator's call (dfs-serve forget-server, with the cluster key), not one file server's on another.
    if (callerOf(res).serverId !== null) throw new ForbiddenError('a file server may not forget another', { machineId })
    const { url } = serverInfo(machineId)
    await registry.forget(machineId)
    const entries = namespace.dropServer(machineId)
    await folders.changedEverywhere()
    log(`file server ${machineId} at ${url} forgotten, with ${entries} entries`)
    const answer: ForgetServerAnswer = { machineId, forgotten: true, entries }
    res.json(answer)
  })

  app.put(DirectoryRoutes.reportFiles(':machineId'), async (req, res) => {
    const server = serverInfo(machineIdParam(req.params.machineId))
    requireBoundServer(res, server.machineId)
    const files = parseFileReport(bodyOf(req).raw('files'))
    namespace.replaceClaims(server.machineId, files)
    await folders.changedEverywhere()
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
    // The client may rather hold the small folder's names, under a callback (see LookupAnswer).
    answer.folderEntries = namespace.namesBeside(path)
    res.json(answer)
  })

  app.get(DirectoryRoutes.moved, (req, res) => {
    const path = queryOf(req).path()
    const answer: MovedAnswer = { path }
    const movedTo = namespace.movedTo(path)
    if (movedTo !== undefined) answer.movedTo = movedTo
    res.json(answer)
  })

  app.get(DirectoryRoutes.placement, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    if (namespace.has(path)) throw new ConflictError(`${path} already exists`, { path })
    const parent = parentOf(path)
    // Every server has a root folder, even one with nothing in it yet.
    const holders = (parent === '/' ? registry.all().map((s) => s.machineId) : namespace.holdersOf(parent)).map(serverInfo)
    if (holders.length === 0) throw new ServerUnavailableError('no file server has registered yet')
    // A server that is down gets nothing new: the entry would be out of reach until it is
    // back; nor does one being drained (its folders are held by others too, see drainRoutes).
    const candidates = holders.filter((s) => s.state === 'up')
    if (candidates.length === 0) {
      throw new ServerUnavailableError(`every file server that holds ${parent} is down or draining (${holders.map((s) => `${s.machineId} ${s.state ?? ''}`.trim()).join(', ')})`, { path })
    }
    const prefer = query.optionalInt('prefer', { min: 1 })
    const answer: PlacementAnswer = { path, server: await placement.choose(candidates, prefer) }
    res.json(answer)
  })

  app.post(DirectoryRoutes.entries(':machineId'), async (req, res) => {
    const server = serverInfo(machineIdParam(req.params.machineId))
    requireBoundServer(res, server.machineId)
    const body = bodyOf(req)
    const path = body.path()
    const kind = body.kind()
    // A client may still place here from a placement it remembers: refused as unavailable,
    // it asks the directory for a placement again, which skips a draining server.
    if (registry.isDraining(server.machineId)) {
      throw new ServerUnavailableError(`file server ${server.machineId} is draining: new entries go to the other servers`, { path, state: 'draining' })
    }
    namespace.claimNew(server.machineId, path, kind)
    await folders.changed([path], false, folders.changerOf(body))
    log(`file server ${server.machineId} created ${path}`)
    const answer: LookupAnswer = kind === 'file' ? { path, kind, server } : { path, kind, holders: namespace.holdersOf(path).map(serverInfo) }
    res.json(answer)
  })

  app.delete(DirectoryRoutes.entries(':machineId'), async (req, res) => {
    const server = serverInfo(machineIdParam(req.params.machineId))
    requireBoundServer(res, server.machineId)
    const query = queryOf(req)
    const path = query.path()
    namespace.drop(server.machineId, path)
    await folders.changed([path], true, folders.changerOf(query))
    log(`file server ${server.machineId} dropped ${path}`)
    const answer: DropEntryAnswer = { path, machineId: server.machineId, dropped: true }
    res.json(answer)
  })

  app.post(DirectoryRoutes.rename, async (req, res) => {
    const body = bodyOf(req)
    const kind = body.kind()
    const from = body.path('from')
    const to = body.path('to')
    const fromServer = serverInfo(body.int('fromMachineId', { min: 1 }))
    const toServer = serverInfo(body.int('toMachineId', { min: 1 }))
    // The server that holds `from` switches the rename (servers/file/rename.ts).
    requireBoundServer(res, fromServer.machineId)
    let files = 1
    if (kind === 'file') {
      const replaces = body.optionalInt('replaces', { min: 1 }) ?? null
      namespace.switchFile(from, fromServer.machineId, to, toServer.machineId, replaces)
    } else {
      if (fromServer.machineId !== toServer.machineId) throw new BadRequestError('a folder is renamed on its own server only', { path: from })
      files = namespace.switchFolder(from, to, fromServer.machineId).length
    }
    await folders.changed([from, to], kind === 'dir')
    log(`renamed ${from} on file server ${fromServer.machineId} to ${to} on file server ${toServer.machineId}`)
    const answer: RenameSwitchAnswer = { from, to, machineId: toServer.machineId, files }
    res.json(answer)
  })

  app.get(DirectoryRoutes.list, (req, res) => {
    const path = queryOf(req).path()
    // Promised before the folder is read: a change in between breaks it.
    folders.grant(req, res, path)
    // A server that left (drained) or was forgotten is out of the registry a moment before its
    // holds are out of the namespace (the registry's state is saved in between): a listing
    // then leaves it out rather than failing for the whole folder.
    const listed = namespace.list(path)
    // Copied only when a holder is gone (rare): each copy of 50,000 entries cost 10-30 ms.
    const entries = listed.every((e) => e.machineIds.every((id) => registry.has(id)))
      ? listed
      : listed.flatMap((e) => {
        const machineIds = e.machineIds.filter((id) => registry.has(id))
        return machineIds.length > 0 || e.kind === 'dir' ? [{ ...e, machineIds }] : []
      })
    const ids = new Set(entries.flatMap((e) => e.machineIds))
    const answer: DirectoryListAnswer = { path, entries, servers: [...ids].map(serverInfo) }
    res.json(answer)
  })

  finishApp(app, log)

  const watch = setInterval(noteDownServers, Math.max(100, Math.floor(downAfterMs / 5)))
  watch.unref()
  return {
    app,
    stop: () => {
      clearInterval(watch)
      removeGauge()
      folders.closeAll()
      if (namespace instanceof JournaledNamespace) namespace.close()
    }
  }
}

export async function startDirectoryServer (opts: DirectoryServerOptions & { port: number, host?: string, tls?: ServerTls }): Promise<RunningServer> {
  const { app, stop } = await createDirectoryServer(opts)
  try {
    const running = await listen(app, opts.port, opts.host, opts.tls)
    return {
      ...running,
      close: async (graceMs?: number) => {
        stop()
        await running.close(graceMs)
      }
    }
  } catch (err) {
    stop()
    throw err
  }
}

/** Whether a file server still answers at its old address as the same server (its /health names its serverId). */
async function stillServes (fileServers: FileServerPool, server: { machineId: number, url: string }, serverId: string): Promise<boolean> {
  try {
    const health = await fileServers.of(server).health()
    return health.serverId === serverId
  } catch {
    return false
  }
}

function parseServerUrl (value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new BadRequestError(`not a URL: ${value}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BadRequestError(`file server URL must be http or https: ${value}`)
  return url.origin
}

function machineIdParam (value: string | string[] | undefined): number {
  const machineId = Number(value)
  if (!Number.isSafeInteger(machineId) || machineId < 1) throw new BadRequestError(`not a machine id: ${String(value).slice(0, 32)}`)
  return machineId
}

/**
 * How deep a reported path may be, in names. A report's size is capped by the JSON body
 * limit (16 MB); its depth here, so a report cannot make the namespace a chain of folders
 * thousands deep that every walk of the tree then follows.
 */
export const MAX_REPORT_DEPTH = 256

function parseFileReport (value: unknown): FileMeta[] {
  if (!Array.isArray(value)) throw new BadRequestError('files must be a list')
  return value.map((item: unknown): FileMeta => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new BadRequestError('each file must be an object')
    const fields = new Fields(item as Record<string, unknown>, 'body')
    const path = normalizePath((item as { path?: unknown }).path)
    const depth = path.split('/').length - 1
    if (depth > MAX_REPORT_DEPTH) throw new BadRequestError(`a reported path is ${depth} names deep, over the limit of ${MAX_REPORT_DEPTH}`, { depth, maxDepth: MAX_REPORT_DEPTH })
    return {
      path,
      kind: fields.kind('kind', 'file'),
      version: fields.optionalInt('version', { min: 0 }) ?? 0,
      size: fields.optionalInt('size', { min: 0 }) ?? 0,
      mtimeMs: fields.optionalInt('mtimeMs', { min: 0 }) ?? 0
    }
  })
}
