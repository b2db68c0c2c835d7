import fs from 'node:fs'
import os from 'node:os'
import nodePath from 'node:path'
import type { Readable } from 'node:stream'
import { IsDirectoryError, NotFoundError, ServerUnavailableError } from '../errors'
import { normalizePath, parentOf, joinPath } from '../paths'
import type { DirectoryListAnswer, FileListAnswer, FileMeta, LookupAnswer, ServerInfo } from '../protocol'
import { DEFAULT_PORTS, DirectoryRoutes, FileRoutes, Headers } from '../protocol'
import { DEFAULT_TIMEOUT_MS, ServiceClient } from '../serviceClient'
import { LocalCache } from './localCache'
import type { CachedFile } from './localCache'
import { LockClient } from './lockClient'

export interface DfsClientOptions {
  directoryUrl?: string
  lockUrl?: string
  /** Where fetched copies are kept; shared safely by several clients of one user. */
  cacheDir?: string
  cacheBytes?: number
  /** Per request: a server silent for this long is reported as not answering. */
  timeoutMs?: number
  /** How long a writer waits for a key someone else holds. */
  lockTimeoutMs?: number
  /** Lease to ask the lock server for; default: the lock server's own (30 s). */
  leaseMs?: number
  /**
   * How long a stat or listing may be answered from memory. Opening a file always checks
   * the version with its server (close-to-open), whatever this says.
   */
  metaTtlMs?: number
  owner?: string
}

export const defaultClientOptions = {
  directoryUrl: `http://127.0.0.1:${DEFAULT_PORTS.directory}`,
  lockUrl: `http://127.0.0.1:${DEFAULT_PORTS.lock}`,
  cacheDir: nodePath.join(process.env.XDG_CACHE_HOME ?? nodePath.join(os.homedir(), '.cache'), 'dfs'),
  timeoutMs: DEFAULT_TIMEOUT_MS,
  lockTimeoutMs: 10_000
}

export type ListEntry = FileMeta & { name: string }

interface Remembered<T> { value: T, until: number }

/**
 * The client proxy: one object that hides the directory, lock and file servers. Reads are
 * served from a local copy while its version matches the file server's (checked with a
 * conditional GET that carries no body when nothing changed); writes take the file's lock,
 * go to the file server, bring the local copy forward and give the lock back.
 */
export class DfsClient {
  readonly cache: LocalCache
  readonly locks: LockClient
  private readonly directory: ServiceClient
  private readonly fileServers = new Map<string, ServiceClient>()
  private readonly timeoutMs: number
  private readonly metaTtlMs: number
  private readonly lookups = new Map<string, Remembered<LookupAnswer>>()
  private readonly metas = new Map<string, Remembered<FileMeta>>()

  constructor (opts: DfsClientOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? defaultClientOptions.timeoutMs
    this.metaTtlMs = opts.metaTtlMs ?? 1000
    this.directory = new ServiceClient('directory server', opts.directoryUrl ?? defaultClientOptions.directoryUrl, this.timeoutMs)
    this.cache = new LocalCache(opts.cacheDir ?? defaultClientOptions.cacheDir, opts.cacheBytes)
    this.locks = new LockClient(new ServiceClient('lock server', opts.lockUrl ?? defaultClientOptions.lockUrl, this.timeoutMs), {
      lockTimeoutMs: opts.lockTimeoutMs ?? defaultClientOptions.lockTimeoutMs,
      leaseMs: opts.leaseMs,
      owner: opts.owner
    })
  }

  /** Which server holds a path. Answers are remembered briefly; a miss is never remembered. */
  async lookup (path: string): Promise<LookupAnswer> {
    const canonical = normalizePath(path)
    const remembered = this.lookups.get(canonical)
    if (remembered && remembered.until > Date.now()) return remembered.value
    const answer = await this.directory.get<LookupAnswer>(DirectoryRoutes.lookup, { path: canonical })
    this.lookups.set(canonical, { value: answer, until: Date.now() + Math.max(this.metaTtlMs, 1000) })
    return answer
  }

  /** Size, version and mtime of a file or folder, at most metaTtlMs old. */
  async stat (path: string): Promise<FileMeta> {
    const canonical = normalizePath(path)
    const remembered = this.metas.get(canonical)
    if (remembered && remembered.until > Date.now()) return remembered.value
    return await this.statFresh(canonical)
  }

  /** Size, version and mtime as the file server has them now. */
  async statFresh (path: string): Promise<FileMeta> {
    const canonical = normalizePath(path)
    const found = await this.lookup(canonical)
    if (found.kind === 'dir') return this.remember({ path: canonical, kind: 'dir', version: 0, size: 0, mtimeMs: 0 })
    const meta = await this.onFileServer(canonical, found, async (server) => await server.get<FileMeta>(FileRoutes.stat, { path: canonical }))
    return this.remember(meta)
  }

  /** The entries of a folder, with sizes and versions from the file servers that hold them. */
  async list (path: string): Promise<ListEntry[]> {
    const folder = normalizePath(path)
    const answer = await this.directory.get<DirectoryListAnswer>(DirectoryRoutes.list, { path: folder })
    const byServer = new Map<number, ServerInfo>(answer.servers.map((s) => [s.machineId, s]))
    const listings = new Map<number, Promise<Map<string, ListEntry>>>()
    const listingOf = async (machineId: number): Promise<Map<string, ListEntry>> => {
      let listing = listings.get(machineId)
      if (!listing) {
        const server = this.fileServer(byServer.get(machineId) as ServerInfo)
        listing = server.get<FileListAnswer>(FileRoutes.list, { path: folder })
          .then((l) => new Map(l.entries.map((e) => [e.name, e])))
        listings.set(machineId, listing)
      }
      return await listing
    }
    const entries = await Promise.all(answer.entries.map(async (entry): Promise<ListEntry> => {
      const childPath = joinPath(folder, entry.name)
      if (entry.kind === 'dir') {
        // A folder may span servers; any one that answers gives it a time, and a server
        // that is down must not hide the folder.
        const seen = await Promise.allSettled(entry.machineIds.map(async (id) => (await listingOf(id)).get(entry.name)))
        const mtimeMs = Math.max(0, ...seen.map((s) => (s.status === 'fulfilled' ? s.value?.mtimeMs ?? 0 : 0)))
        return { name: entry.name, path: childPath, kind: 'dir', version: 0, size: 0, mtimeMs }
      }
      const found = (await listingOf(entry.machineIds[0])).get(entry.name)
      if (!found) throw new NotFoundError(`no such file: ${childPath}`, { path: childPath })
      return { ...found, name: entry.name, path: childPath }
    }))
    for (const entry of entries) this.remember(entry)
    return entries
  }

  /**
   * A local copy of the file at its current version: the cached one if the file server says
   * it is current (no content moves), else a fresh one fetched as a stream.
   */
  async fetch (path: string): Promise<CachedFile> {
    const canonical = normalizePath(path)
    const found = await this.lookup(canonical)
    if (found.kind === 'dir') throw new IsDirectoryError(`is a folder: ${canonical}`, { path: canonical })
    const cached = await this.cache.get(canonical)
    const result = await this.onFileServer(canonical, found, async (server) => {
      const ifNoneMatch = this.cache.etagOf(cached)
      const res = await server.send({
        method: 'GET',
        url: FileRoutes.content,
        params: { path: canonical },
        responseType: 'stream',
        headers: ifNoneMatch ? { 'If-None-Match': ifNoneMatch } : {}
      })
      if (res.status === 304 && cached) {
        (res.data as Readable).resume()
        return cached
      }
      const meta: FileMeta = {
        path: canonical,
        kind: 'file',
        version: Number(res.headers[Headers.version]),
        size: Number(res.headers['content-length']),
        mtimeMs: Number(res.headers[Headers.mtime])
      }
      try {
        return await this.cache.store(canonical, meta, res.data as Readable)
      } catch (err) {
        throw server.unavailable(err)
      }
    })
    this.remember(result.meta)
    return result
  }

  async readFile (path: string): Promise<Buffer> {
    return await fs.promises.readFile((await this.fetch(path)).file)
  }

  async createReadStream (path: string): Promise<Readable> {
    return fs.createReadStream((await this.fetch(path)).file)
  }

  /**
   * Appends under the file's lock. The lock is given back whatever happens; the local copy
   * moves forward by the same bytes when it was current, else it is dropped.
   */
  async append (path: string, data: Buffer | string | Readable): Promise<FileMeta> {
    const canonical = normalizePath(path)
    const found = await this.lookup(canonical)
    if (found.kind === 'dir') throw new IsDirectoryError(`is a folder: ${canonical}`, { path: canonical })
    const body = typeof data === 'string' ? Buffer.from(data) : data
    const meta = await this.locks.withLock(canonical, async (lease) => {
      return await this.onFileServer(canonical, found, async (server) => await server.json<FileMeta>({
        method: 'POST',
        url: FileRoutes.append,
        params: { path: canonical },
        data: body,
        headers: { 'Content-Type': 'application/octet-stream', [Headers.lockToken]: String(lease.token) }
      }))
    })
    if (Buffer.isBuffer(body)) await this.cache.applyAppend(canonical, body, meta)
    else await this.cache.invalidate(canonical)
    return this.remember(meta)
  }

  /** Forget what is remembered of a path, so the next call asks the servers. */
  forget (path: string): void {
    const canonical = normalizePath(path)
    this.metas.delete(canonical)
    this.lookups.delete(canonical)
    this.metas.delete(parentOf(canonical))
  }

  private remember (meta: FileMeta): FileMeta {
    if (this.metaTtlMs > 0) this.metas.set(meta.path, { value: meta, until: Date.now() + this.metaTtlMs })
    return meta
  }

  private fileServer (server: ServerInfo): ServiceClient {
    let client = this.fileServers.get(server.url)
    if (!client || client.name !== `file server ${server.machineId}`) {
      client = new ServiceClient(`file server ${server.machineId}`, server.url, this.timeoutMs)
      this.fileServers.set(server.url, client)
    }
    return client
  }

  /**
   * Runs a call on the server that holds a file. If that server no longer has it (the file
   * moved, or the remembered lookup was stale), or does not answer, the lookup is dropped so
   * the next call asks the directory again.
   */
  private async onFileServer<T> (path: string, found: LookupAnswer, call: (server: ServiceClient) => Promise<T>): Promise<T> {
    if (!found.server) throw new IsDirectoryError(`is a folder: ${path}`, { path })
    try {
      return await call(this.fileServer(found.server))
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof ServerUnavailableError) this.forget(path)
      throw err
    }
  }
}
