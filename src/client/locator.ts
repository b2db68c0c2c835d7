import { LRUCache } from 'lru-cache'
import type { DirectoryApi, FileApi, FileServerPool } from '../shared/api'
import { IsDirectoryError, NotFoundError, ServerUnavailableError } from '../shared/errors'
import { normalizePath, parentOf } from '../shared/paths'
import type { LookupAnswer, ServerInfo } from '../shared/protocol'
import type { FolderCopies } from './folderCopies'
import type { MetadataMemo } from './metadataMemo'
import type { SilenceWatch } from './silenceWatch'
import { CLOCK_READ_EACH_CHECK, upToEntries } from './lruOptions'

/**
 * How long a file's location is trusted. Its server says "not found" if the file has gone
 * (the call is then retried on a fresh lookup), so a long time costs no correctness.
 */
const FILE_LOOKUP_TTL_MS = 30_000
const REMEMBERED_PATHS = 100_000

/**
 * The error of a call to a file server the directory has marked down: given at once, so a
 * dead server costs no timeout.
 */
export function serverDownError (server: ServerInfo, path?: string, seenUrl = server.url): ServerUnavailableError {
  const where = `file server ${server.machineId} at ${new URL(seenUrl).host}`
  return new ServerUnavailableError(`${where} is down (no heartbeat to the directory server)${path === undefined ? '' : `: ${path} is out of reach`}`,
    { server: server.url, machineId: server.machineId, state: 'down', ...(path === undefined ? {} : { path }) })
}

/**
 * Finds the file server of a path and runs calls there: lookups through the directory,
 * remembered (a file's for long, a folder's briefly, a miss or a file on a server that is
 * down never), and a call that meets a moved file or a silent server drops the remembered
 * answer, retrying once on a fresh one. A call to a server the directory says is down
 * fails at once. Reads (stat, list, content) go through `readers`, whose shorter timeout
 * bounds how long a hung server can stall them before the directory notices.
 */
export class Locator {
  private readonly lookups = new LRUCache<string, LookupAnswer>({ ...upToEntries(REMEMBERED_PATHS), ...CLOCK_READ_EACH_CHECK })
  /** Lookup answers that came from memory: "not found" from their server calls for a fresh one. */
  private readonly rememberedLookups = new WeakSet<LookupAnswer>()

  /** `memo` is forgotten with the lookups: what was remembered of a path that moved or went silent is stale too. */
  constructor (
    readonly directory: DirectoryApi,
    readonly fileServers: FileServerPool,
    readonly readers: FileServerPool,
    private readonly memo: MetadataMemo,
    private readonly folderTtlMs: number,
    /**
     * Given (a soft mount, the CLI): a read that gets no answer asks the server's /health,
     * and while that does not answer either, further reads of that server fail at once
     * instead of each waiting out its own timeout. A server that is only busy answers it.
     */
    private readonly silence: SilenceWatch | null = null,
    /** Folders' names held under folder callbacks: a lookup of a name in one needs no request. */
    private readonly folders: FolderCopies | null = null
  ) {}

  /** Which server holds a path. */
  async lookup (path: string): Promise<LookupAnswer> {
    const canonical = normalizePath(path)
    const held = this.folders?.lookup(canonical)
    if (held) {
      this.rememberedLookups.add(held)
      return held
    }
    const remembered = this.lookups.get(canonical)
    if (remembered) {
      this.rememberedLookups.add(remembered)
      return remembered
    }
    let answer: LookupAnswer
    try {
      answer = await this.directory.lookup(canonical)
    } catch (err) {
      // A miss in a small folder: its names are held from now on, and the next miss there is answered here
      // (in a large one, once enough lookups there have earned the listing).
      if (err instanceof NotFoundError) await this.folders?.holdIfWorthIt(canonical, err.details.folderEntries).catch(() => {})
      throw err
    }
    // The same for a name found (behind the answer): a folder's answer is trusted only for a
    // second, a file's is asked for again before each change, and the folder's other names
    // (the next file to open, `ls -l`'s lstats) need no lookup either.
    void this.folders?.holdIfWorthIt(canonical, answer.folderEntries).catch(() => {})
    // Asked again each time, so the file is back in service as soon as its server is.
    if (answer.server?.state === 'down') return answer
    // A folder is trusted only briefly: nothing else would notice that it went away.
    this.lookups.set(canonical, answer, { ttl: answer.kind === 'file' ? FILE_LOOKUP_TTL_MS : this.folderTtlMs })
    return answer
  }

  /** A listing told where a file lives: no lookup needed for it for a while. */
  learned (path: string, server: ServerInfo): void {
    if (server.state === 'down') return
    this.lookups.set(path, { path, kind: 'file', server }, { ttl: FILE_LOOKUP_TTL_MS })
  }

  /**
   * A fresh lookup that must find a file: not a remembered answer, which may be old, but the
   * copy of its folder while held under its callback is current (and a server that
   * contradicts it drops it: see onFileServer).
   */
  async lookupFile (path: string): Promise<LookupAnswer> {
    this.forgetRemembered(path)
    const found = await this.lookup(path)
    if (found.kind === 'dir') throw new IsDirectoryError(`is a folder: ${path}`, { path })
    return found
  }

  async lookupOrNull (path: string): Promise<LookupAnswer | null> {
    try {
      return await this.lookup(path)
    } catch (err) {
      if (err instanceof NotFoundError) return null
      throw err
    }
  }

  fileServer (server: ServerInfo): FileApi {
    return this.fileServers.of(server)
  }

  /** A file server's API for reads: the read timeout (DEFAULT_READ_TIMEOUT_MS) rather than the usual one. */
  reader (server: ServerInfo): FileApi {
    return this.readers.of(server)
  }

  /** Forget what is remembered of a path, so the next call asks the servers. */
  forget (path: string): void {
    const canonical = normalizePath(path)
    this.forgetRemembered(canonical)
    // A server contradicted what the folder's copy says, or this client changed the folder:
    // its names are asked for again (the directory breaks the callback for a change anyway).
    this.folders?.drop(parentOf(canonical))
  }

  /**
   * Forget the remembered lookup and metadata of a path, but not its folder's copy: for a
   * change of this client's that the copy takes itself (FolderCopies.changedByMe), or none
   * of the folder's names at all (the file's bytes).
   */
  forgetRemembered (path: string): void {
    this.lookups.delete(normalizePath(path))
    this.memo.forget(path)
  }

  forgetTree (folder: string): void {
    this.forget(folder)
    this.folders?.drop(normalizePath(folder), true)
    this.memo.forgetTree(folder)
    const prefix = folder === '/' ? '/' : folder + '/'
    for (const path of [...this.lookups.keys()]) if (path.startsWith(prefix)) this.lookups.delete(path)
  }

  /**
   * Runs a call on the server that holds a file. If that server no longer has it (the file
   * moved, or the remembered lookup was stale), or does not answer, the lookup is dropped so
   * the next call asks the directory again; the call is retried once on a fresh lookup (for
   * a server that does not answer, only if the answer was a remembered one). A
   * server marked down is not called: UNAVAILABLE at once. `read` picks the read timeout.
   */
  async onFileServer<T> (path: string, found: LookupAnswer, call: (server: FileApi) => Promise<T>, opts: { read?: boolean } = {}): Promise<T> {
    if (!found.server) throw new IsDirectoryError(`is a folder: ${path}`, { path })
    const api = async (server: ServerInfo): Promise<FileApi> => {
      if (server.state === 'down') throw this.downError(server, path)
      if (opts.read === true && this.silence !== null && await this.silence.stillSilent(server)) {
        throw new ServerUnavailableError(`file server ${server.machineId} at ${new URL(this.fileServers.urlOf(server)).host} does not answer, not even /health: ${path} is out of reach`,
          { server: server.url, machineId: server.machineId, path })
      }
      return opts.read === true ? this.reader(server) : this.fileServer(server)
    }
    try {
      return await call(await api(found.server))
    } catch (err) {
      if (!(err instanceof NotFoundError || err instanceof ServerUnavailableError)) throw err
      if (err instanceof ServerUnavailableError && opts.read === true && this.silence !== null) {
        // A server judged silent a moment ago may be back already (restarted): if its /health
        // answers now, the read is tried on it once more instead of failing.
        const silent = await this.silence.confirm(found.server)
        if (!silent) return await call(this.reader(found.server))
      }
      this.forget(path)
      // "Not found" from the server a lookup named, even a fresh one, may mean the file moved
      // since (a drain, a rename): one fresh lookup says where it is now.
      if (!(err instanceof NotFoundError) && !this.rememberedLookups.has(found)) throw err
      // The remembered answer may be stale: the file moved, or its server moved to another
      // URL (same machine id) or is down by now, which is the better error to give.
      const fresh = await this.lookup(path)
      if (err instanceof ServerUnavailableError && fresh.server?.state === 'down') throw this.downError(fresh.server, path)
      if (!fresh.server || fresh.server.url === found.server.url) throw err
      return await call(await api(fresh.server))
    }
  }

  /** serverDownError naming the server where this machine calls it. */
  downError (server: ServerInfo, path?: string): ServerUnavailableError {
    return serverDownError(server, path, this.fileServers.urlOf(server))
  }

  /** Runs a call on every server holding a folder; all are tried, the first failure is thrown. One that is down fails it at once. */
  async onEveryHolder<T> (found: LookupAnswer, call: (server: FileApi) => Promise<T>): Promise<T[]> {
    const down = (found.holders ?? []).find((holder) => holder.state === 'down')
    if (down) throw this.downError(down, found.path)
    const results = await Promise.allSettled((found.holders ?? []).map(async (holder) => await call(this.fileServer(holder))))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
    return results.map((r) => (r as PromiseFulfilledResult<T>).value)
  }
}
