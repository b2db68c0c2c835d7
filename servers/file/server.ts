import os from 'node:os'
import type { Express, Request, Response } from 'express'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { DirectoryApi, FileServerPool, LockApi } from '../../src/shared/api'
import type { FileListAnswer, FileMeta, FileServerStats, ServerInfo, StatAnswer } from '../../src/shared/protocol'
import { contentHeadersOf, etagOf, FileRoutes, Headers, MAX_CALLBACK_LEASE_MS, MAX_INLINE_BYTES, MAX_RANGE_READ_BYTES } from '../../src/shared/protocol'
import { BadRequestError, ConflictError } from '../../src/shared/errors'
import { Transport } from '../../src/shared/transport'
import { askLockUrl } from '../../src/shared/clusterUrls'
import nodePath from 'node:path'
import { DEFAULT_CALLBACK_LEASE_MS, DEFAULT_HEARTBEAT_MS, DEFAULT_TIMEOUT_MS } from '../../src/shared/defaults'
import { Authenticator, requireCredentials } from '../common/auth'
import { grantCaller, subjectOf, wantsCallback, writerOf } from './callerClient'
import type { RouteRole, ServerAuth } from '../common/auth'
import { fileServerCredential } from '../common/tokens'
import { finishApp, healthAnswer, jsonBody, listen, newApp, silentLogger } from '../common/http'
import type { Logger, RunningServer, ServerTls } from '../common/http'
import { changeIdOf, queryOf } from '../common/input'
import { CallbackTable } from './callbacks'
import { mountCallbackRoutes } from './callbackRoutes'
import { joined } from './context'
import type { MutationContext } from './context'
import { FileStore, STATE_DIR_NAME } from './fileStore'
import { ServerIdentity } from './identity'
import { LeaseGuard } from './leaseGuard'
import { ClusterMembership } from './membership'
import { mountMutationRoutes } from './mutations'
import { mountCreateWithContentRoute } from './createWithContent'
import { KeyRemovals } from './keyRemovals'
import { uploadLimits } from './uploadLimits'
import { StatusRoutes } from '../../src/shared/clusterStatus'
import type { ClientsAnswer } from '../../src/shared/clusterStatus'
import { fileServerFreeBytes, fileServerSizeBytes } from '../common/metrics'
import { recoverRenames, RenameIntents } from './renameIntents'
import { FileServerDrain, mountDrainRoutes } from './drain'

/** GET /content sends a file of at most this many bytes from memory, read whole, rather than streamed. */
const SMALL_CONTENT_BYTES = 64 * 1024

export interface FileServerOptions {
  store: FileStore
  /** The lock server, asked on every write whether the writer's lease is live. */
  lock: LockApi
  /** The directory server, told of every path this server creates or removes. */
  directory?: DirectoryApi
  /** Per request to other servers. */
  timeoutMs?: number
  /** How long a client's callbacks count without a renewal (and the longest a writer waits for a silent one). */
  callbackLeaseMs?: number
  log?: Logger
  /** The cluster key and deny list; absent, the server is open to anyone (--insecure). */
  auth?: ServerAuth
}

/**
 * Who may call which route: any credential reads, lists and keeps callbacks; a write
 * credential changes files; only cluster servers send a file across (PUT /incoming).
 * Every other route needs a valid credential (servers/common/auth.ts).
 */
const ROUTE_ROLES: RouteRole[] = [
  ['post', FileRoutes.append, 'write'],
  ['put', FileRoutes.content, 'write'],
  ['patch', FileRoutes.content, 'write'],
  ['post', FileRoutes.create, 'write'],
  ['put', FileRoutes.create, 'write'],
  ['post', FileRoutes.truncate, 'write'],
  ['post', FileRoutes.unlink, 'write'],
  ['post', FileRoutes.rmdir, 'write'],
  ['post', FileRoutes.utimes, 'write'],
  ['post', FileRoutes.chmod, 'write'],
  ['post', FileRoutes.rename, 'write'],
  ['put', FileRoutes.incoming, 'server'],
  ['post', FileRoutes.incomingAbort, 'server']
]

export interface FileServerApp extends Express {
  /** serverId: this server's identity (ROOT/.dfs/identity.json), once it has one. */
  locals: Express['locals'] & { stats: FileServerStats, publicUrl: string | null, serverId: string | null, callbacks: CallbackTable, drain: FileServerDrain, keyRemovals: KeyRemovals }
}

export function createFileServer (opts: FileServerOptions): FileServerApp {
  const { store, lock } = opts
  const log = opts.log ?? silentLogger
  const stats: FileServerStats = {
    machineId: null, contentTransfers: 0, contentBytes: 0, notModified: 0, appends: 0, overwrites: 0, rangeWrites: 0, rangeBytes: 0, rangeReads: 0, rangeReadBytes: 0, incoming: 0, incomingBytes: 0,
    callbacksGranted: 0, callbacksBroken: 0
  }
  const leases = new LeaseGuard(lock)
  // A peer receives a file across (PUT /incoming) from this server as a cluster member.
  const peers = new FileServerPool(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    opts.auth === undefined ? {} : { credential: opts.auth.key.serverCredential('file') }, opts.directory?.transport.baseUrl)
  // Clients allow MAX_CALLBACK_LEASE_MS on top of a change's deadline for the wait on holders.
  const callbacks = new CallbackTable(Math.min(opts.callbackLeaseMs ?? DEFAULT_CALLBACK_LEASE_MS, MAX_CALLBACK_LEASE_MS), stats)

  const app = newApp('file') as FileServerApp
  app.locals.stats = stats
  app.locals.publicUrl = null
  /** A join's scan and report under way (ClusterMembership): names are not changed meanwhile (see joined()). */
  app.locals.reporting = false
  app.locals.callbacks = callbacks
  app.locals.keyRemovals = new KeyRemovals(async (path) => {
    try {
      await lock.deleteKey(path, { whenFree: true })
    } catch (err) {
      log(`could not remove the lock key of ${path}: ${err instanceof Error ? err.message : String(err)}`)
    }
  })
  app.locals.serverId = null
  requireCredentials(app, opts.auth === undefined ? null : new Authenticator(opts.auth), ROUTE_ROLES)
  const limits = uploadLimits(store)
  app.post(FileRoutes.append, limits)
  app.put(FileRoutes.content, limits)
  app.put(FileRoutes.create, limits)
  app.patch(FileRoutes.content, limits)
  app.put(FileRoutes.incoming, limits)

  app.get(FileRoutes.health, (_req, res) => {
    // Anyone may ask (no credential): no disk path in it.
    res.json(healthAnswer('file', { machineId: stats.machineId, serverId: app.locals.serverId }))
  })

  app.get(FileRoutes.stats, (_req, res) => {
    res.json(stats)
  })

  // For operators (the status page): which clients keep an event channel open here.
  app.get(StatusRoutes.clients, (_req, res) => {
    const answer: ClientsAnswer = { clients: callbacks.connectedClients() }
    res.json(answer)
  })

  app.get(FileRoutes.stat, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const inlineUpTo = query.optionalInt('inline', { min: 0, max: MAX_INLINE_BYTES })
    // Promised before the version is read: a change in between breaks it (see CallbackTable.grant).
    const granted = wantsCallback(req) && grantCaller(callbacks, req, path)
    if (inlineUpTo === undefined) {
      const meta: FileMeta = await store.stat(path)
      if (granted && meta.kind === 'file') res.set(Headers.callback, 'granted')
      res.json(meta)
      return
    }
    const { meta, content } = await store.statWithContent(path, inlineUpTo)
    if (granted && meta.kind === 'file') res.set(Headers.callback, 'granted')
    if (content !== undefined) {
      stats.contentTransfers++
      stats.contentBytes += content.length
    }
    const answer: StatAnswer = content === undefined ? meta : { ...meta, content: content.toString('base64') }
    res.json(answer)
  })

  mountCallbackRoutes(app, callbacks, FileRoutes)

  app.get(FileRoutes.list, async (req, res) => {
    const path = queryOf(req).path()
    const mark = callbacks.mark()
    const answer: FileListAnswer = { path, entries: await store.list(path) }
    // Callbacks on the listed files in bulk, so a client's `ls -l` of the folder, and its
    // stats and opens of them, need no request until one changes (grantUnchanged).
    if (wantsCallback(req)) {
      const prefix = path === '/' ? '/' : path + '/'
      const files = answer.entries.filter((e) => e.kind === 'file').map((e) => prefix + e.name)
      answer.callbacks = callbacks.grantUnchanged(clientOf(req), files, subjectOf(req), mark).map((p) => p.slice(prefix.length))
    }
    res.json(answer)
  })

  app.get(FileRoutes.content, async (req, res) => {
    const path = queryOf(req).path()
    // A writer that fetches under its lease (to start a working copy) makes the lease known
    // here first, so appends without a lease wait for it from now on.
    if (req.get(Headers.lockToken) !== undefined) await leases.require(req, path)
    const range = req.get('range')
    if (range !== undefined) {
      // Part of the version the caller holds (If-Match), read far ahead of its download.
      const { first, length } = rangeOf(range)
      const { meta, bytes } = await store.readRange(path, first, length)
      const ifMatch = req.get('if-match')
      if (ifMatch !== undefined && !matchesEtag(ifMatch, etagOf(meta))) throw new ConflictError(`${path} is no longer the version ${ifMatch}`, { path })
      stats.rangeReads++
      stats.rangeReadBytes += bytes.length
      res.status(206).set(contentHeadersOf(meta)).set({
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(bytes.length),
        'Content-Range': bytes.length === 0 ? `bytes */${meta.size}` : `bytes ${first}-${first + bytes.length - 1}/${meta.size}`
      }).end(bytes)
      return
    }
    const ifNoneMatch = req.get('if-none-match')
    const granted = wantsCallback(req) && grantCaller(callbacks, req, path)
    const describe = (meta: FileMeta): boolean => {
      res.set(contentHeadersOf(meta))
      if (granted) res.set(Headers.callback, 'granted')
      if (!matchesEtag(ifNoneMatch, etagOf(meta))) return false
      stats.notModified++
      res.status(304).end()
      return true
    }
    // The common case, a current copy, needs no open file and no wait for writers.
    const settled = ifNoneMatch ? await store.statSettled(path) : null
    if (settled?.kind === 'file' && describe(settled)) return
    // A small file is read whole, with its open and close on the event loop, and sent in one
    // write: a stream costs four trips through the thread pool and its own machinery.
    const small = await store.statWithContent(path, SMALL_CONTENT_BYTES)
    const { meta, stream } = small.content !== undefined ? { meta: small.meta, stream: null } : await store.openRead(path)
    if (describe(meta) || req.method === 'HEAD') {
      stream?.destroy()
      if (!res.headersSent) res.set({ 'Content-Length': String(meta.size) }).end()
      return
    }
    stats.contentTransfers++
    stats.contentBytes += meta.size
    res.set({ 'Content-Type': 'application/octet-stream', 'Content-Length': String(meta.size) })
    if (stream === null) res.end(small.content)
    else await sendStream(stream, res)
  })

  app.post(FileRoutes.append, async (req, res) => {
    const path = queryOf(req).path()
    // With a lease, the write is fenced by it; without one, it goes in unless a writer holds the key.
    const guard = req.get(Headers.lockToken) !== undefined
      ? async () => await leases.require(req, path)
      : async () => await leases.admitUnlocked(path)
    const meta = await store.append(path, req, guard, changeIdOf(req))
    stats.appends++
    await callbacks.breakAll(path, { path, version: meta.version }, writerOf(callbacks, req))
    res.json(meta)
  })

  // Only the rename request is JSON; every other body here is a file's bytes.
  app.use(FileRoutes.rename, jsonBody)
  const mutationContext: MutationContext = {
    store,
    lock,
    leases,
    stats,
    log,
    ...joined(opts.directory ?? null, (): ServerInfo | null => {
      const url = app.locals.publicUrl
      return stats.machineId === null || url === null ? null : { machineId: stats.machineId, url }
    }, () => app.locals.reporting === true),
    peer: (server) => peers.of(server),
    callbacks,
    renames: RenameIntents.in(nodePath.join(store.root, STATE_DIR_NAME)),
    keyRemovals: app.locals.keyRemovals
  }
  mountMutationRoutes(app, mutationContext)
  mountCreateWithContentRoute(app, mutationContext)
  app.locals.drain = new FileServerDrain(mutationContext)
  mountDrainRoutes(app, mutationContext, app.locals.drain)

  finishApp(app, log)
  return app
}

function clientOf (req: Request): string {
  return req.get(Headers.clientId) as string
}

/**
 * Streams a file's bytes as the answer. A client that hangs up midway (a mount's reader that
 * called the download off to read by ranges, a mount that stopped) is no fault of this
 * server's: the stream just ends, with no error logged nor noted for `dfs status`.
 */
async function sendStream (stream: Readable, res: Response): Promise<void> {
  try {
    await pipeline(stream, res)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err
  }
}

/** `bytes=FIRST-LAST`, one range of at most MAX_RANGE_READ_BYTES: what a client reading ahead of its download asks. */
function rangeOf (header: string): { first: number, length: number } {
  const match = /^bytes=(\d{1,16})-(\d{1,16})$/.exec(header.trim())
  const first = match === null ? NaN : Number(match[1])
  const length = match === null ? NaN : Number(match[2]) - first + 1
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(length) || length < 1 || length > MAX_RANGE_READ_BYTES) {
    throw new BadRequestError(`Range must be bytes=FIRST-LAST, at most ${MAX_RANGE_READ_BYTES} bytes: not ${JSON.stringify(header)}`, { range: header })
  }
  return { first, length }
}

/** If-None-Match (and If-Match) as HTTP has it: a list of tags, weak or strong, or '*'. */
function matchesEtag (header: string | undefined, etag: string): boolean {
  if (!header) return false
  return header.split(',').some((tag) => {
    const bare = tag.trim().replace(/^W\//, '')
    return bare === '*' || bare === etag
  })
}

export interface StartFileServerOptions {
  root: string
  port: number
  host?: string
  directoryUrl: string
  /** Absent: the one the directory server names (src/shared/clusterUrls.ts), asked at the start. */
  lockUrl?: string
  /** Address clients use to reach this server; defaults to the one it listens on. */
  publicUrl?: string
  timeoutMs?: number
  /**
   * How often to send the directory a heartbeat, and to check whether the directory or lock
   * server restarted (and join again). Default DEFAULT_HEARTBEAT_MS.
   */
  heartbeatMs?: number
  log?: Logger
  /** The cluster key and deny list; absent, the server is open to anyone (--insecure). */
  auth?: ServerAuth
  /** It was drained and left the cluster (dfs-serve drain): the process may stop it. */
  onLeft?: () => void
  /** Certificate and key: the server speaks https only. */
  tls?: ServerTls
}

export interface RunningFileServer extends RunningServer {
  machineId: number
  app: FileServerApp
  store: FileStore
}

/**
 * Starts a file server and joins it to the cluster (servers/file/membership.ts). A clash
 * with another server's paths stops the start with the directory server's error.
 */
export async function startFileServer (opts: StartFileServerOptions): Promise<RunningFileServer> {
  const log = opts.log ?? silentLogger
  const store = await FileStore.open(opts.root)
  let identity: ServerIdentity
  try {
    identity = await ServerIdentity.open(nodePath.join(store.root, STATE_DIR_NAME))
  } catch (err) {
    await store.close()
    throw err
  }
  // Registration proves membership with the cluster key; every later call to the directory
  // is signed with this server's own secret, which registration bound to its machine id.
  const serverCredential = opts.auth?.key.serverCredential(`file:${identity.serverId}`)
  const ownCredential = opts.auth === undefined ? undefined : fileServerCredential(identity.serverId, identity.secret)
  const registrar = new DirectoryApi(new Transport('directory server', opts.directoryUrl, opts.timeoutMs, { credential: serverCredential }))
  const directory = new DirectoryApi(new Transport('directory server', opts.directoryUrl, opts.timeoutMs, { credential: ownCredential }))
  let lockUrl: string
  try {
    lockUrl = opts.lockUrl ?? await askLockUrl(registrar)
  } catch (err) {
    await store.close()
    throw err
  }
  if (opts.lockUrl === undefined) log(`lock server at ${lockUrl}, as the directory server names it`)
  const lock = new LockApi(new Transport('lock server', lockUrl, opts.timeoutMs, { credential: serverCredential }))
  // Read before this server answers anything: every intent here is a rename a crash cut short.
  const renames = RenameIntents.in(nodePath.join(store.root, STATE_DIR_NAME))
  const cutShort = await renames.pending()
  const app = createFileServer({ store, lock, directory, timeoutMs: opts.timeoutMs, log, auth: opts.auth })
  app.locals.serverId = identity.serverId
  const running = await listen(app, opts.port, opts.host, opts.tls)
  const removeGauges = watchDiskSpace(store, () => app.locals.stats.machineId)
  const url = opts.publicUrl ?? running.url
  const peers = new FileServerPool(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, { credential: serverCredential }, opts.directoryUrl)
  let renamesRecovered = false
  const membership = new ClusterMembership(directory, lock, store, identity, url, log, (machineId, recordedUrl) => {
    app.locals.publicUrl = recordedUrl
    app.locals.stats.machineId = machineId
  }, registrar, async (machineId) => {
    // Renames a crash cut short are ended before this server reports its files: at the
    // first join only, and only those found before it listened (the others belong to
    // renames this process runs).
    if (renamesRecovered) return
    renamesRecovered = true
    await recoverRenames(renames, cutShort, {
      store, directory, lock, peer: (server) => peers.of(server), machineId, owner: `${os.hostname()}:${process.pid}:rename-recovery`, log
    })
  }, (underWay) => { app.locals.reporting = underWay })
  try {
    const machineId = await membership.join()
    const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS
    membership.watch(heartbeatMs)
    app.locals.drain.hooks = {
      leaving: () => membership.stop(),
      stayed: () => membership.watch(heartbeatMs),
      left: () => opts.onLeft?.()
    }
    return {
      ...running,
      machineId,
      app,
      store,
      close: async (graceMs?: number) => {
        // Event channels are long polls that never end by themselves: closed first.
        app.locals.callbacks.closeAll()
        app.locals.keyRemovals.close()
        membership.stop()
        removeGauges()
        await running.close(graceMs)
        await store.close()
      }
    }
  } catch (err) {
    removeGauges()
    await running.close()
    await store.close()
    throw err
  }
}

/** The free and total space of the server's disk, as gauges read at each scrape. */
function watchDiskSpace (store: FileStore, machineId: () => number | null): () => void {
  const read = (field: 'freeBytes' | 'totalBytes') => async () => {
    const id = machineId()
    if (id === null) return []
    const space = await store.statfs()
    return [{ labels: { machine_id: String(id) }, value: space[field] }]
  }
  const removeFree = fileServerFreeBytes.add(read('freeBytes'))
  const removeSize = fileServerSizeBytes.add(read('totalBytes'))
  return () => {
    removeFree()
    removeSize()
  }
}
