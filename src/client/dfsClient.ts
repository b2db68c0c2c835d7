import crypto from 'node:crypto'
import os from 'node:os'
import fs from 'node:fs'
import nodePath from 'node:path'
import { Readable } from 'node:stream'
import { AdvisoryLockApi, DirectoryApi, FileServerPool, LockApi } from '../shared/api'
import type { Bytes, FileApi } from '../shared/api'
import { DEFAULT_META_TTL_MS, DEFAULT_READ_TIMEOUT_MS, defaultClientOptions } from '../shared/defaults'
import {
  BadPathError, BadRequestError, ConflictError, CrossServerError, IsDirectoryError, LeaseError, LockedError, NotDirectoryError, NotFoundError,
  NotEmptyError, ServerUnavailableError, StaleHandleError, localCacheFailure
} from '../shared/errors'
import { normalizePath, parentOf, joinPath } from '../shared/paths'
import type { FileListAnswer, FileMeta, LockLease, LookupAnswer, MetaKind, RenameAnswer, ServerInfo } from '../shared/protocol'
import { etagOf, MAX_RANGE_READ_BYTES } from '../shared/protocol'
import { Transport } from '../shared/transport'
import { encodeRanges } from '../shared/rangeFrames'
import type { ByteRange } from '../shared/rangeFrames'
import type { CallerIdentity } from '../shared/transport'
import { claimedRights } from '../shared/tokenClaims'
import { LRUCache } from 'lru-cache'
import { LocalCache } from './localCache'
import { BytesReader, DescriptorReader } from './copyReader'
import { RangeReader } from './rangeReader'
import { RecentBytes } from './recentBytes'
import { monotonicMs, waitAtMost } from '../shared/clock'
import { CallbackRegistry } from './callbacks'
import { DelegationChannel } from './delegationChannel'
import { retryAppendWhileUnavailable, retryReadWhileUp, retryWhileUnavailable } from './retry'
import type { RetryPolicy } from './retry'
import type { CachedFile } from './localCache'
import { AdvisoryLocks } from './advisoryLocks'
import { LockClient } from './lockClient'
import type { HeldLock } from './lockClient'
import { FolderCopies } from './folderCopies'
import { FreeSpaceWatch } from './freeSpaceWatch'
import { Locator } from './locator'
import { MetadataMemo } from './metadataMemo'
import { countCacheLookup } from './metrics'
import { PROBE_TIMEOUT_MS, SILENT, SilenceWatch } from './silenceWatch'
import { leaseCredentialOf } from '../shared/leaseCredential'
import { ShownLeases } from './shownLeases'
import type { LeaseCredential } from '../shared/leaseCredential'
import { CLOCK_READ_EACH_CHECK, upToEntries } from './lruOptions'
import type { StartingPoint } from './workingCopy'
import type { OpenedForReading } from './openFiles'

export interface DfsClientOptions {
  directoryUrl?: string
  lockUrl?: string
  /** Where fetched copies are kept; shared safely by several clients of one user. */
  cacheDir?: string
  cacheBytes?: number
  /** Per request: a server silent for this long is reported as not answering. */
  timeoutMs?: number
  /**
   * The same for reads on a file server (stat, list, content), so that a hung one fails them
   * soon even before the directory has marked it down; at most timeoutMs. Default 2000.
   */
  readTimeoutMs?: number
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
  /** Sent with every call (credential, client id). */
  caller?: CallerIdentity
  /**
   * How long an append or a store of written data keeps trying while a server does not
   * answer: Infinity waits as a hard NFS mount does (the mount's default), 0 fails at once.
   */
  retryWritesForMs?: number
  /**
   * How long a stat or open tries again while the file server it needs does not answer:
   * the mount's read wait on a hard mount (2 s), as long as the directory does not mark the
   * server down (then EIO at once); 0 (the default) fails after one read timeout.
   */
  retryReadsForMs?: number
  /**
   * The same while the directory server does not answer (default: retryReadsForMs). A hard
   * mount waits for it as writes do: it answers for every name, and an `echo >>` begun in
   * its outage (an open of the file) must land once it is back rather than fail.
   */
  retryNamespaceReadsForMs?: number
  /**
   * Ask file servers for callbacks (a long-lived client such as a mount): while a server has
   * promised to tell this client before a file changes, opening and stat-ing it cost no
   * request. Off for one-shot clients (the CLI).
   */
  callbacks?: boolean
  log?: (line: string) => void
}

/**
 * An entry of a folder listing. `unavailable`: its file server is down or does not answer,
 * so only the directory's knowledge is here (name and kind; size, version and mtime 0);
 * stat, open and read of it fail with ServerUnavailableError. It is listed all the same: a
 * listing without it would tell `rsync --delete` that the file is gone.
 */
export type ListEntry = FileMeta & { name: string, unavailable?: true }

/**
 * The cached copy is current; or the copy arriving now (a download another open started) is
 * of the current version, `arriving`; or here is the current version's body, from this
 * server (`stale`: a copy of an older version is here).
 */
type Revalidated = { cached: CachedFile } | { arriving: FileMeta } | { meta: FileMeta, body: Readable, server: FileApi, stale: boolean }

/** For a change the caller makes while holding the file's lease itself (client.locks.acquire). */
export interface LeaseOption {
  lease?: LockLease | HeldLock
}

/** The cluster's disk space: the sum over the file servers that answered. */
export interface ClusterStatfs {
  totalBytes: number
  freeBytes: number
  /** File servers counted. */
  servers: number
  /** File servers that did not answer, not counted. */
  unreachable: number
}

/** How long a folder's placement is reused for new entries (the roomiest server may change). */
const PLACEMENT_TTL_MS = 10_000

/** A file up to this size comes with a stat when there is no copy of it here (GET /stat?inline=). */
const INLINE_STAT_BYTES = 16 * 1024

/** Tries of opening a copy found current that is dropped each time before it opens (see openForReading). */
const COPY_OPEN_ATTEMPTS = 3

/** Slowest server-to-server copy a rename waits for (bytes per ms), on top of the usual timeout. */
const SLOWEST_COPY_BYTES_PER_MS = 1000
/** A folder rename records a new version per file it moves: give it time. */
const SLOW_FOLDER_RENAME_MS = 60_000

/**
 * The client proxy: one object that hides the directory, lock and file servers. Reads are
 * served from a local copy while its version matches the file server's (checked with a
 * conditional GET that carries no body when nothing changed); writes take the file's lock,
 * go to the file server, bring the local copy forward and give the lock back.
 */
export class DfsClient {
  readonly cache: LocalCache
  readonly locks: LockClient
  /** The fcntl and flock locks programs take through a mount, held on the lock server. */
  readonly advisoryLocks: AdvisoryLocks
  private readonly directory: DirectoryApi
  private readonly locator: Locator
  private readonly memo: MetadataMemo
  private readonly timeoutMs: number
  /**
   * Where new entries of a folder went last: asked of the directory once per folder and
   * kept briefly, so tar -x or cp -r costs one request per file created, not two.
   */
  private readonly placements = new LRUCache<string, ServerInfo>({ ...upToEntries(10_000), ttl: PLACEMENT_TTL_MS, ...CLOCK_READ_EACH_CHECK })
  /** Listings under way: concurrent callers share one. */
  private readonly listings = new Map<string, Promise<ListEntry[]>>()
  /** Small files' bytes just had in memory: an open under a callback reads them with no disk step. */
  private readonly recentBytes = new RecentBytes()
  private readonly writeRetry: RetryPolicy
  private readonly readRetry: RetryPolicy
  private readonly namespaceReadRetryMs: number
  /** Servers that do not answer even /health: listings and folder times do not wait for them. */
  private readonly silence: SilenceWatch
  private readonly callbacks: CallbackRegistry | null
  /** Who hears of files another client renamed (see onRenamedElsewhere). */
  private readonly renameWatchers: Array<(from: string, to: string) => void> = []
  /** Who hears that a file's callback stopped vouching for its attributes (see onVouchEnded). */
  private readonly vouchWatchers: Array<(path: string) => void> = []
  /** Folder callbacks of the directory server, under the same client id, and the folders' names they keep current. */
  private readonly folderCallbacks: CallbackRegistry | null
  private readonly folders: FolderCopies | null
  /** The lock server's event channel, under the same client id: it recalls what it delegated here (null without callbacks). */
  readonly delegations: DelegationChannel | null
  /** Leases file servers have seen with a create of this client (a fetch under one may trust the file's callback). */
  private readonly shownLeases = new ShownLeases()
  /** The file servers' free space as last measured: a write() that cannot be stored is refused (ENOSPC) then, not at close. */
  private readonly freeSpace = new FreeSpaceWatch()
  /** Who this client is to the servers: its credential, read at each call. */
  private readonly caller: CallerIdentity

  /** How long reads wait for the directory server in particular (retryNamespaceReadsForMs). */
  private namespaceWait (): { server: string, forMs: number } {
    return { server: this.directory.transport.baseUrl, forMs: this.namespaceReadRetryMs }
  }

  constructor (opts: DfsClientOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? defaultClientOptions.timeoutMs
    const metaTtlMs = opts.metaTtlMs ?? DEFAULT_META_TTL_MS
    this.writeRetry = { forMs: opts.retryWritesForMs ?? 0, log: opts.log }
    this.readRetry = { forMs: opts.retryReadsForMs ?? 0, log: opts.log }
    this.namespaceReadRetryMs = opts.retryNamespaceReadsForMs ?? this.readRetry.forMs
    // A file changed elsewhere: the brief memory of its stat must not answer for it either
    // (else a stat on this mount shows a file another removed a moment ago).
    this.callbacks = opts.callbacks === true
      ? new CallbackRegistry(opts.log, monotonicMs, undefined, {
        onBreak: async (path, change) => {
          this.memo.forget(path)
          if (change.renamedTo !== undefined) for (const watcher of this.renameWatchers) watcher(path, change.renamedTo)
        },
        onEnded: (path) => { for (const watcher of this.vouchWatchers) watcher(path) }
      })
      : null
    const caller: CallerIdentity = { clientId: this.callbacks?.clientId, ...opts.caller }
    this.caller = caller
    const directoryUrl = opts.directoryUrl ?? defaultClientOptions.directoryUrl
    this.directory = new DirectoryApi(new Transport('directory server', directoryUrl, this.timeoutMs, caller))
    this.memo = new MetadataMemo(metaTtlMs)
    this.folderCallbacks = this.callbacks === null ? null : new CallbackRegistry(opts.log, monotonicMs, this.callbacks.clientId)
    this.folders = this.folderCallbacks === null ? null : new FolderCopies(this.directory, this.folderCallbacks)
    const readTimeoutMs = Math.min(opts.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS, this.timeoutMs)
    // File servers at the URLs the directory hands out, as seen from here (src/shared/clusterUrls.ts).
    this.silence = new SilenceWatch(new FileServerPool(PROBE_TIMEOUT_MS, caller, directoryUrl))
    this.locator = new Locator(this.directory, new FileServerPool(this.timeoutMs, caller, directoryUrl), new FileServerPool(readTimeoutMs, caller, directoryUrl), this.memo, Math.max(metaTtlMs, 1000),
      this.readRetry.forMs === 0 ? this.silence : null, this.folders)
    this.cache = new LocalCache(opts.cacheDir ?? defaultClientOptions.cacheDir, opts.cacheBytes, opts.log)
    const lockServer = new Transport('lock server', opts.lockUrl ?? defaultClientOptions.lockUrl, this.timeoutMs, caller)
    const lockApi = new LockApi(lockServer)
    this.delegations = this.callbacks === null ? null : new DelegationChannel(lockApi, this.callbacks.clientId, opts.log)
    this.advisoryLocks = new AdvisoryLocks(new AdvisoryLockApi(lockServer), {
      session: caller.clientId ?? crypto.randomBytes(12).toString('base64url'), leaseMs: opts.leaseMs, log: opts.log, channel: this.delegations,
      retry: this.writeRetry
    })
    this.locks = new LockClient(lockApi, {
      lockTimeoutMs: opts.lockTimeoutMs ?? defaultClientOptions.lockTimeoutMs,
      leaseMs: opts.leaseMs,
      owner: opts.owner,
      delegations: this.delegations
    })
  }

  /** Which server holds a path. Answers are remembered briefly; a miss is never remembered. */
  async lookup (path: string): Promise<LookupAnswer> {
    return await this.locator.lookup(path)
  }

  /** Size, version and mtime of a file or folder, at most metaTtlMs old, or as a callback vouches for it now. */
  async stat (path: string): Promise<FileMeta> {
    const canonical = normalizePath(path)
    const known = this.knownAttributes(canonical)
    if (known) return known
    // A name that the held copy of its folder no longer has is gone (NotFoundError here).
    this.folders?.lookup(canonical)
    const folder = parentOf(canonical)
    if (canonical !== '/' && this.memo.wasListed(folder)) {
      // A listing that cannot be had now (the directory is down) is no answer: the stat
      // below waits for it as a hard mount does, or fails as a soft one does.
      const listing = await this.listShared(folder).catch((err: unknown) => {
        if (err instanceof ServerUnavailableError) return []
        throw err
      })
      const entry = listing.find((e) => e.path === canonical)
      // One whose server is out of reach is asked for below, and fails as unavailable.
      if (entry && entry.unavailable !== true) return entry
    }
    return await this.statFresh(canonical)
  }

  /**
   * What stat would answer with no request (a callback's promise, a held folder's
   * attributes, the memo), or undefined: the mount answers a getattr from it at once, with
   * no promise made (`ls -l` asks once per entry).
   */
  statKnown (path: string): FileMeta | undefined {
    return this.knownAttributes(normalizePath(path))
  }

  private knownAttributes (canonical: string): FileMeta | undefined {
    const promised = this.callbacks?.current(canonical) ?? this.folders?.attributes(canonical)
    if (promised) return promised
    // A folder held without its attributes yet: read them now, under its callback, to keep them.
    if (this.folders?.copyOf(canonical) !== undefined) return undefined
    // Nor is a name missing from the held copy of its folder answered from the memo: another
    // mount removed it a moment ago (stat then says so).
    return this.folders?.lacks(canonical) === true ? undefined : this.memo.get(canonical)
  }

  /**
   * Size, version and mtime as the file server has them now: from its callback promise while
   * it holds one (no request; a change is answered only after this client heard of it),
   * else asked. Never from the memo, which may be a moment old.
   */
  async statCurrent (path: string): Promise<FileMeta> {
    const canonical = normalizePath(path)
    return this.callbacks?.current(canonical) ?? await this.statFresh(canonical)
  }

  /** Size, version and mtime as the file server has them now. */
  async statFresh (path: string): Promise<FileMeta> {
    const canonical = normalizePath(path)
    return await retryReadWhileUp(`stat of ${canonical}`, this.readRetry, async () => await this.statFreshOnce(canonical), this.namespaceWait())
  }

  private async statFreshOnce (canonical: string): Promise<FileMeta> {
    const found = await this.lookup(canonical)
    if (found.kind === 'dir') {
      // Its holders give it a time (the latest) and mode, so touch and chmod on a folder
      // show; a holder that is down must not hide the folder (nor be waited for), and no
      // answer at all is 0 (now).
      const held = this.folders?.copyOf(canonical)
      const up = (found.holders ?? []).filter((holder) => holder.state !== 'down')
      const seen = await Promise.allSettled(up.map(async (holder) => await this.silence.unlessSilent(holder, this.locator.reader(holder).stat(canonical))))
      // Every holder says it has no such folder: the lookup was remembered from before another
      // client removed it. Gone, and forgotten here, not shown as a folder of time 0.
      if (seen.length > 0 && seen.every((s) => s.status === 'rejected' && s.reason instanceof NotFoundError)) {
        this.forget(canonical)
        throw (seen[0] as PromiseRejectedResult).reason
      }
      const answers = seen.flatMap((s) => (s.status === 'fulfilled' && s.value !== SILENT ? [s.value] : []))
      const mtimeMs = Math.max(0, ...answers.map((meta) => meta.mtimeMs))
      const meta = this.memo.remember({ path: canonical, kind: 'dir', version: 0, size: 0, mtimeMs, mode: answers[0]?.mode })
      if (answers.length === up.length) this.folders?.keepAttributes(canonical, held, meta)
      return meta
    }
    const meta = await this.locator.onFileServer(canonical, found, async (server) => {
      if (!this.callbacks?.ready(server)) return await server.stat(canonical)
      // With no copy here, a small file comes with the stat (the kernel's before an open):
      // under the callback, the open that follows then costs no request.
      const inline = await this.cache.get(canonical) === null ? INLINE_STAT_BYTES : undefined
      const askedAt = monotonicMs()
      const answer = await server.statWithCallback(canonical, inline)
      if (answer.callback) this.callbacks.granted(server, canonical, answer.meta, askedAt)
      // Kept in memory, not written to the cache: the kernel's open follows at once and reads
      // them from there (openForReading); a copy on disk is made only for a reader that needs
      // one (fetch). Once the callback lapses, such a small file costs a request either way.
      if (answer.content !== undefined) this.recentBytes.remember(canonical, answer.meta, answer.content)
      return answer.meta
    }, { read: true })
    return this.memo.remember(meta)
  }

  /** The entries of a folder, with sizes and versions from the file servers that hold them. */
  async list (path: string): Promise<ListEntry[]> {
    return await this.listShared(normalizePath(path))
  }

  /** One listing per folder at a time: concurrent callers share it. */
  private async listShared (folder: string): Promise<ListEntry[]> {
    let listing = this.listings.get(folder)
    if (!listing) {
      listing = this.listNow(folder).finally(() => this.listings.delete(folder))
      this.listings.set(folder, listing)
    }
    return await listing
  }

  /**
   * The directory's names, with each file's meta from its server. A server that is down or
   * does not answer (null below) does not shorten the listing: its files are listed from
   * what the directory knows, marked `unavailable`.
   */
  private async listNow (folder: string): Promise<ListEntry[]> {
    const started = Date.now()
    // Waited for as a stat waits for the directory (a hard mount: a cut connection is asked again).
    const answer = await retryReadWhileUp(`listing of ${folder}`, this.readRetry,
      async () => this.folders === null ? await this.directory.list(folder) : await this.folders.list(folder), this.namespaceWait())
    const byServer = new Map<number, ServerInfo>(answer.servers.map((s) => [s.machineId, s]))
    const listings = new Map<number, Promise<Map<string, ListEntry> | null>>()
    const startListing = (machineId: number): void => {
      if (listings.has(machineId)) return
      const server = byServer.get(machineId) as ServerInfo
      // One that is stopped or cut off is not waited for: listed from the directory's names.
      listings.set(machineId, server.state === 'down'
        ? Promise.resolve(null)
        : this.silence.unlessSilent(server, this.listWithCallbacks(server, folder)).then((l) => l === SILENT ? null : new Map(l.entries.map((e) => [e.name, e])), (err: unknown) => {
          if (err instanceof ServerUnavailableError) return null
          throw err
        }))
    }
    // Entries known here are filled in at once (a file under a callback, a folder seen a
    // moment ago); the others wait for their servers' listings, each server listed once. No
    // promise per entry: in a folder of 50,000 names those kept the event loop for seconds,
    // long enough for the servers to forget this client's callbacks (renewals not sent).
    const entries: Array<ListEntry | null> = new Array(answer.entries.length).fill(null)
    const unknown: number[] = []
    answer.entries.forEach((entry, at) => {
      const childPath = joinPath(folder, entry.name)
      const known = entry.kind === 'file' ? this.callbacks?.current(childPath) : this.memo.get(childPath)
      if (known?.kind === entry.kind) {
        entries[at] = { ...known, name: entry.name, path: childPath }
        return
      }
      unknown.push(at)
      // A folder may span servers (any one that answers gives it a time); a file is on its first.
      if (entry.kind === 'dir') entry.machineIds.forEach(startListing)
      else startListing(entry.machineIds[0])
    })
    const settled = await Promise.allSettled(listings.values())
    const listed = new Map([...listings.keys()].map((id, i) => [id, settled[i]]))
    for (const at of unknown) {
      const entry = answer.entries[at]
      const childPath = joinPath(folder, entry.name)
      if (entry.kind === 'dir') {
        // A server that is down or failed must not hide the folder. Its mode is the first
        // holder's, as statFresh has it (chmod sets it on every holder).
        const found = entry.machineIds.flatMap((id) => {
          const result = listed.get(id)
          const meta = result?.status === 'fulfilled' ? result.value?.get(entry.name) : undefined
          return meta === undefined ? [] : [meta]
        })
        const mtimeMs = Math.max(0, ...found.map((meta) => meta.mtimeMs))
        entries[at] = { name: entry.name, path: childPath, kind: 'dir', version: 0, size: 0, mtimeMs, mode: found[0]?.mode }
        continue
      }
      const server = byServer.get(entry.machineIds[0]) as ServerInfo
      const result = listed.get(server.machineId) as PromiseSettledResult<Map<string, ListEntry> | null>
      if (result.status === 'rejected') throw result.reason
      if (result.value === null) {
        entries[at] = { name: entry.name, path: childPath, kind: 'file', version: 0, size: 0, mtimeMs: 0, unavailable: true }
        continue
      }
      const found = result.value.get(entry.name)
      // Mapped but not on disk yet (being created, or removed mid-listing): not there for us either.
      if (!found) continue
      this.locator.learned(childPath, server)
      entries[at] = { ...found, name: entry.name, path: childPath }
    }
    const present = entries.filter((e): e is ListEntry => e !== null)
    // A listing that took long (a folder of tens of thousands of files) is trusted for twice
    // as long as it took: else an `ls -l` walk of it lists it again every second, and the walk
    // costs many listings instead of one.
    const ttlMs = Math.max(this.memo.ttlMs, 2 * (Date.now() - started))
    for (const entry of present) if (entry.unavailable !== true) this.memo.remember(entry, ttlMs)
    this.memo.listed(folder)
    return present
  }

  /** A file server's part of a folder, with callbacks on its files in bulk when the server's channel is open. */
  private async listWithCallbacks (server: ServerInfo, folder: string): Promise<FileListAnswer> {
    const reader = this.locator.reader(server)
    if (!this.callbacks?.ready(reader)) return await reader.list(folder)
    const askedAt = monotonicMs()
    const answer = await reader.list(folder, { callbacks: true })
    const granted = new Set(answer.callbacks ?? [])
    for (const entry of answer.entries) {
      if (granted.has(entry.name)) this.callbacks.granted(reader, joinPath(folder, entry.name), { ...entry, path: joinPath(folder, entry.name) }, askedAt)
    }
    return answer
  }

  /**
   * A local copy of the file at its current version: the cached one if the file server says
   * it is current (no content moves), else a fresh one fetched as a stream, or one made of
   * the bytes held in memory (startingPoint).
   */
  async fetch (path: string, opts: LeaseOption = {}): Promise<CachedFile> {
    const start = await this.wholeStartingPoint(path, opts)
    if (!('data' in start)) return start
    return await this.cache.storeBytes(normalizePath(path), start.meta, start.data)
  }

  /**
   * The file at its current version, as a working copy starts from it
   * (WorkingCopyBackend.startingPoint): a small file's bytes held in memory, of the version a
   * callback vouches for, as they are; else a local copy, as fetch() gives it. With
   * `partialAbove` and a lease, a larger file with no current copy here starts with none of
   * its bytes (partialStart): the working copy fetches what it reads.
   */
  async startingPoint (path: string, opts: LeaseOption & { partialAbove?: number } = {}): Promise<StartingPoint> {
    const { partialAbove, lease } = opts
    if (partialAbove !== undefined && lease !== undefined) {
      const canonical = normalizePath(path)
      const partial = await retryWhileUnavailable(`start of a write in place of ${canonical}`, this.writeRetry, async () => await this.partialStart(canonical, lease, partialAbove))
      if (partial !== null) return partial
    }
    return await this.wholeStartingPoint(path, opts)
  }

  /** The start of a working copy with every byte of the version: as startingPoint, never partial. */
  private async wholeStartingPoint (path: string, opts: LeaseOption): Promise<CachedFile | { meta: FileMeta, data: Buffer }> {
    const canonical = normalizePath(path)
    const token = credentialOf(opts.lease)
    const recent = this.recentOf(canonical, token)
    if (recent !== undefined) {
      countCacheLookup(true)
      return { meta: recent.meta, data: recent.data }
    }
    // The start of a write: waited for as a store is (a hard mount does not fail a write
    // because the file's server is restarting), where a read gives up after the read wait.
    return await retryWhileUnavailable(`fetch of ${canonical} to write it`, this.writeRetry, async () => {
      let answer = await this.revalidate(canonical, token, true)
      // A copy of this version arriving for a reader here: once in place, it is the start.
      while ('arriving' in answer) {
        const joined = this.cache.joinArrival(canonical, answer.arriving)
        try {
          await joined?.download.waitFor(Infinity)
        } finally {
          await joined?.reader.close()
          joined?.download.cancel()
        }
        answer = await this.revalidate(canonical, token, joined !== null)
      }
      if ('cached' in answer) return answer.cached
      try {
        return await this.cache.store(canonical, answer.meta, answer.body)
      } catch (err) {
        // A cache folder that cannot hold the copy is no server's fault: waiting would not help.
        throw localCacheFailure(err, this.cache.dir, canonical) ?? answer.server.unavailable(err)
      }
    })
  }

  /**
   * Whether `meta` is a file larger than `above` of which this client has no copy of that
   * version, in the cache or arriving: one to read or change by ranges rather than fetch whole.
   */
  private async largeWithNoCopy (canonical: string, meta: FileMeta, above: number): Promise<boolean> {
    return meta.kind === 'file' && meta.size > above && this.cache.arrivingVersion(canonical) === undefined &&
      this.cache.etagOf(await this.cache.get(canonical)) !== etagOf(meta)
  }

  /**
   * The start of a partial working copy of a file larger than `above` with no current copy
   * here: its version, confirmed current under the lease by a read of its first byte (which
   * also makes the lease known to the server, so appends without it wait from then on, as a
   * fetch under it does), and no more bytes. Null where a whole copy is the start: one here
   * is current or arriving, the file is smaller, or it moved on meanwhile.
   */
  private async partialStart (canonical: string, lease: LockLease | HeldLock, above: number): Promise<{ meta: FileMeta, partial: true } | null> {
    const meta = await this.statCurrent(canonical)
    if (!await this.largeWithNoCopy(canonical, meta, above)) return null
    try {
      await this.readRange(canonical, meta, 0, 1, { lease })
    } catch (err) {
      if (err instanceof ConflictError) return null
      throw err
    }
    return { meta, partial: true }
  }

  /**
   * Opens the current version for reading, as fetch() does, but answers as soon as a new
   * copy starts arriving: `download` (null for a cached copy) says how far it has come, and
   * a reader waits only for the bytes it reads.
   *
   * `rangesAbove`: a file larger than this with no current copy here, whose version a
   * callback vouches for, is opened with no request and no transfer, read by ranges
   * (`byRanges`): the caller fetches the whole copy only once a read shows it is wanted
   * (OpenFileTable.read), so a `tail` of a large log or a zip's index at its end moves only
   * what is read, not the whole file beside it.
   */
  async openForReading (path: string, opts: { rangesAbove?: number } = {}): Promise<OpenedForReading> {
    const canonical = normalizePath(path)
    // A small file whose bytes came lately (with a stat, the kernel's just before this open,
    // or as this client made it), at the version a callback vouches for now: read from memory.
    const recent = this.recentOf(canonical)
    if (recent !== undefined) {
      countCacheLookup(true)
      return { reader: new BytesReader(recent.data), meta: recent.meta, download: null }
    }
    if (opts.rangesAbove !== undefined) {
      const promised = this.callbacks?.current(canonical)
      if (promised !== undefined && await this.largeWithNoCopy(canonical, promised, opts.rangesAbove)) {
        return { reader: this.rangeReaderOf(canonical, promised), meta: promised, download: null, byRanges: true }
      }
    }
    // A copy still arriving for another open is offered too: two opens of a large file not
    // cached here fetch it once.
    let answer = await this.revalidate(canonical, undefined, true)
    // The copy found current may be dropped before it is opened (an append of another client
    // made it old), or the one arriving may have just become the cached one: then the server
    // is asked again.
    for (let attempt = 1; 'cached' in answer || 'arriving' in answer; attempt++) {
      if ('arriving' in answer) {
        const joined = this.cache.joinArrival(canonical, answer.arriving)
        if (joined !== null) return { ...joined, meta: answer.arriving }
      } else {
        const reader = openCopy(answer.cached.file, attempt < COPY_OPEN_ATTEMPTS)
        if (reader !== null) return { reader, meta: answer.cached.meta, download: null }
      }
      answer = await this.revalidate(canonical, undefined, attempt < COPY_OPEN_ATTEMPTS)
    }
    const { server } = answer
    if (answer.meta.size <= INLINE_STAT_BYTES && !answer.stale) {
      // A small file with no copy here (its attributes came with a listing, so no stat
      // brought its bytes): read into memory and kept there, as a stat's inline bytes are.
      // A copy on disk would cost a file made, written through a stream, renamed and
      // recorded: about 1 ms of the mount's time per file that `grep -r` or `cat *` opens.
      const data = await bodyOf(answer.body, answer.meta).catch((err: unknown) => { throw server.unavailable(err) })
      this.recentBytes.remember(canonical, answer.meta, data)
      return { reader: new BytesReader(data), meta: answer.meta, download: null }
    }
    try {
      const { reader, download } = await this.cache.storeArriving(canonical, answer.meta, answer.body,
        (err) => localCacheFailure(err, this.cache.dir, canonical) ?? server.unavailable(err))
      return { reader, meta: answer.meta, download }
    } catch (err) {
      // The cache folder cannot take a copy at all (its disk is full): read by ranges, with none.
      const local = localCacheFailure(err, this.cache.dir, canonical)
      if (local === null) throw err
      answer.body.destroy()
      this.logLine(`${local.message}: reading it from its server by ranges`)
      return { reader: this.rangeReaderOf(canonical, answer.meta), meta: answer.meta, download: null }
    }
  }

  /** A line for the client's log (a mount's), if it has one. */
  logLine (line: string): void {
    this.writeRetry.log?.(line)
  }

  /**
   * A reader of `meta`'s version by ranges, with no copy (a tail far ahead of its download,
   * a cache with no room): StaleHandleError once the file is another (OpenFileTable.read
   * then opens it again).
   */
  rangeReaderOf (path: string, meta: FileMeta): RangeReader {
    return new RangeReader(async (position, length) => {
      try {
        return await this.readRange(path, meta, position, length)
      } catch (err) {
        if (err instanceof ConflictError) throw new StaleHandleError(`${meta.path} changed since it was opened (it is read by ranges of the version opened)`, { path: meta.path })
        if (err instanceof NotFoundError) throw new StaleHandleError(`${meta.path} was removed since it was opened (it is read by ranges, with no copy here)`, { path: meta.path })
        throw err
      }
    })
  }

  /**
   * The bytes held in memory of the version a callback vouches for now; under a lease only
   * once the server has seen that lease, as revalidateOnce trusts a callback.
   */
  private recentOf (canonical: string, token?: LeaseCredential): { meta: FileMeta, data: Buffer } | undefined {
    if (token !== undefined && !this.shownLeases.holdsBackFor(canonical, token)) return undefined
    return this.recentBytes.of(canonical, this.callbacks?.current(canonical))
  }

  /**
   * Asks the file's server whether the cached copy is current: it is, or here is the current
   * body. `joinArriving`: a copy still arriving here may be the answer too (see Revalidated).
   */
  private async revalidate (canonical: string, token?: LeaseCredential, joinArriving = false): Promise<Revalidated> {
    return await retryReadWhileUp(`open of ${canonical}`, this.readRetry, async () => await this.revalidateOnce(canonical, token, joinArriving), this.namespaceWait())
  }

  private async revalidateOnce (canonical: string, token: LeaseCredential | undefined, joinArriving: boolean): Promise<Revalidated> {
    const found = await this.lookup(canonical)
    if (found.kind === 'dir') throw new IsDirectoryError(`is a folder: ${canonical}`, { path: canonical })
    const cached = await this.cache.get(canonical)
    // With no copy on disk, a small file's bytes held in memory (read with no callback) are
    // offered instead: a 304 then costs no content, as it would for a copy. Else the version
    // of a copy still arriving, if the caller can read that.
    const held = cached === null ? this.recentBytes.any(canonical) : undefined
    const arriving = cached === null && held === undefined && joinArriving ? this.cache.arrivingVersion(canonical) : undefined
    const etag = this.cache.etagOf(cached) ?? (held !== undefined ? etagOf(held.meta) : arriving !== undefined ? etagOf(arriving) : undefined)
    // The file's server promised to say before it changes, and has not: the copy is current.
    // Under a lease only once the server has seen that lease (ShownLeases): a fetch under a
    // lease is also what tells the server to hold back appends made without it.
    const promised = token === undefined || this.shownLeases.holdsBackFor(canonical, token) ? this.callbacks?.current(canonical) : undefined
    if (promised && cached && etag === etagOf(promised)) {
      countCacheLookup(true)
      return { cached }
    }
    let current = false
    const answer = await this.locator.onFileServer(canonical, found, async (server): Promise<Revalidated> => {
      const callback = this.callbacks?.ready(server) === true
      const askedAt = monotonicMs()
      const content = await server.content(canonical, { ifNoneMatch: etag, token, callback })
      const meta = content.current ? (cached?.meta ?? held?.meta ?? arriving) : content.meta
      if (meta === undefined) throw new Error(`${server.transport.where} answered 304 without a validator`)
      if (content.callback) this.callbacks?.granted(server, canonical, meta, askedAt)
      current = content.current
      if (!content.current) return { meta, body: content.body, server, stale: cached !== null }
      if (cached === null && held === undefined) return { arriving: meta }
      // The held bytes are current: handed on as a body, which the caller keeps as it would
      // a fetched one (in memory again, or as a copy on disk).
      return cached !== null ? { cached } : { meta, body: Readable.from([(held as { data: Buffer }).data]), server, stale: false }
    }, { read: true })
    this.memo.remember('cached' in answer ? answer.cached.meta : 'arriving' in answer ? answer.arriving : answer.meta)
    countCacheLookup(current)
    return answer
  }

  /**
   * Up to `length` bytes of `meta`'s version from `position`, by themselves (a read far
   * ahead of the copy still arriving), fewer at the end of the file; ConflictError once the
   * file is another version (its bytes must not be mixed in).
   */
  async readRange (path: string, meta: FileMeta, position: number, length: number, opts: LeaseOption = {}): Promise<Buffer> {
    const canonical = normalizePath(path)
    const found = await this.lookup(canonical)
    return await this.locator.onFileServer(canonical, found, async (server) =>
      await server.contentRange(canonical, etagOf(meta), position, Math.min(length, MAX_RANGE_READ_BYTES), credentialOf(opts.lease)), { read: true })
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
    const body = typeof data === 'string' ? Buffer.from(data) : data
    const changeId = newChangeId()
    const askedAt = monotonicMs()
    const appendOnce = async (): Promise<FileMeta> => {
      const found = await this.lookup(canonical)
      if (found.kind === 'dir') throw new IsDirectoryError(`is a folder: ${canonical}`, { path: canonical })
      const send = async (token?: LeaseCredential): Promise<FileMeta> =>
        await this.locator.onFileServer(canonical, found, async (server) => await server.append(canonical, body, { token, changeId }))
      // A lease kept here: the file server would refuse an append without it (LOCKED).
      if (this.locks.kept?.keeps(canonical) === true) return await this.locks.withLock(canonical, async (lease) => await send(leaseCredentialOf(lease)))
      try {
        // One request: the file server puts appends in order itself.
        return await send()
      } catch (err) {
        // Someone holds the key (a store of the whole file is under way): append under it once it is ours.
        if (!(err instanceof LockedError)) throw err
        return await this.locks.withLock(canonical, async (lease) => await send(leaseCredentialOf(lease)))
      }
    }
    // A stream cannot be sent twice; bytes in memory can, and the change id makes that safe.
    const meta = Buffer.isBuffer(body) ? await retryAppendWhileUnavailable(`append to ${canonical}`, this.writeRetry, appendOnce) : await appendOnce()
    if (Buffer.isBuffer(body)) {
      this.cache.applyAppend(canonical, body, meta)
      this.recentBytes.appended(canonical, body, meta, INLINE_STAT_BYTES)
    } else {
      await this.cache.invalidate(canonical)
    }
    return this.changedBytes(canonical, askedAt, meta)
  }

  // ---- changes to the namespace and whole files --------------------------------------
  // Each starts from a fresh lookup (a remembered one may be up to a second old, and a
  // change made on a stale answer would go to the wrong server) and forgets what it touched.

  /**
   * Creates an empty file; ConflictError (EEXIST) if the path exists as anything. `mode`:
   * its permission bits (the file server's default without).
   */
  async create (path: string, mode?: number): Promise<FileMeta> {
    return await this.createEntry(normalizePath(path), 'file', { mode })
  }

  /** Creates a folder; ConflictError (EEXIST) if the path exists as anything. */
  async mkdir (path: string, mode?: number): Promise<FileMeta> {
    return await this.createEntry(normalizePath(path), 'dir', { mode })
  }

  /** Creates a symbolic link at `path` to `target`, stored as given (relative or absolute, never resolved). */
  async symlink (target: string, path: string): Promise<FileMeta> {
    return await this.createEntry(normalizePath(path), 'symlink', { target })
  }

  /** A symbolic link's target; BadRequestError (EINVAL) for anything else, as readlink(2). */
  async readlink (path: string): Promise<string> {
    const meta = await this.stat(path)
    if (meta.kind !== 'symlink' || meta.target === undefined) throw new BadRequestError(`not a symbolic link: ${meta.path}`, { path: meta.path })
    return meta.target
  }

  /** Removes a file, its lock key and its directory entry; IsDirectoryError for a folder. */
  async unlink (path: string, opts: LeaseOption = {}): Promise<void> {
    const canonical = normalizePath(path)
    // A try that got no answer may have removed it: a later one that finds nothing is done.
    await this.changeWhileUnavailable(`unlink of ${canonical}`, async () => await this.unlinkOnce(canonical, opts), goneAlready)
  }

  private async unlinkOnce (canonical: string, opts: LeaseOption): Promise<void> {
    const found = await this.locator.lookupFile(canonical)
    const askedAt = monotonicMs()
    this.shownLeases.forget(canonical)
    // The key goes with the file (the server says so): the lease it came under ends with it, with no release.
    let keyGone = false
    // A lease this client kept from an earlier use of the path stays kept past the unlink,
    // and its key until it is given back: a program that makes the file again at once
    // (sqlite's journal, at every transaction) creates and writes it with no acquire, and its
    // file server asks the lock server nothing (it knows the lease). Recalled, or idle for a
    // few seconds, it goes. A file nobody here holds a lease on (rm) goes with no lease at
    // all if nobody holds one anywhere (one request: no acquire, no release); else under
    // the lease, taken for the unlink alone, which ends with the key.
    let keptPast = false
    const remove = async (token: LeaseCredential | undefined, keepLease = false): Promise<void> => {
      const answer = await this.locator.onFileServer(canonical, found, async (server) => await server.unlink(canonical, token, { keepLease }))
      keyGone = answer.keyRemoved === true
      keptPast = keepLease && !keyGone
    }
    const keepable = (held: HeldLock): boolean => held.reused === true && held.lease.delegated === true && this.locks.kept !== null
    try {
      const given = opts.lease
      if (given !== undefined) {
        // A handle still open gave its lease (libfuse's hidden rename): kept as well, and
        // given back to the kept leases by that handle's close.
        await remove(leaseCredentialOf('lease' in given ? given.lease : given), 'lease' in given && keepable(given))
      } else if (this.locks.kept?.keeps(canonical) !== true && await this.removedWithoutLease(remove)) {
        // Gone, and its key with it: nothing to give back.
      } else {
        const held = await this.locks.acquire(canonical)
        try {
          await remove(leaseCredentialOf(held.lease), keepable(held))
        } finally {
          await held.release({ keep: keptPast ? undefined : false, keyGone })
        }
      }
    } catch (err) {
      // It may have happened all the same (the answer was lost): the folder's copy cannot say.
      this.forget(canonical)
      throw err
    }
    // A lease kept on the path (taken by a handle still open, which gave it for this unlink) goes too.
    if (!keptPast) await this.locks.kept?.giveBack(canonical, { keyGone })
    this.changedName(canonical, askedAt, null)
    await this.cache.invalidate(canonical)
  }

  /** An unlink sent with no lease: true once done, false if a lease holds the file (LOCKED), for the caller to take it. */
  private async removedWithoutLease (remove: (token: undefined) => Promise<void>): Promise<boolean> {
    try {
      await remove(undefined)
      return true
    } catch (err) {
      if (err instanceof LockedError) return false
      throw err
    }
  }

  /**
   * Removes an empty folder from every file server that holds it. NotEmptyError if anything
   * is in it on any server; NotDirectoryError for a file.
   */
  async rmdir (path: string): Promise<void> {
    const canonical = normalizePath(path)
    if (canonical === '/') throw new BadPathError('the root folder cannot be removed', { path: canonical })
    await this.changeWhileUnavailable(`rmdir of ${canonical}`, async () => await this.rmdirOnce(canonical), goneAlready)
  }

  private async rmdirOnce (canonical: string): Promise<void> {
    this.forget(canonical)
    const found = await this.lookup(canonical)
    if (found.kind !== 'dir') throw new NotDirectoryError(`not a folder: ${canonical}`, { path: canonical })
    const listing = await this.directory.list(canonical)
    if (listing.entries.length > 0) throw new NotEmptyError(`${canonical} is not empty`, { path: canonical })
    try {
      await this.locator.onEveryHolder(found, async (server) => await server.rmdir(canonical))
    } finally {
      this.forget(canonical)
    }
  }

  /**
   * Renames a file or folder, replacing a file at `to`. A file may move to another file
   * server (the one holding `to`'s folder); a folder moves only within its one server, else
   * CrossServerError (EXDEV). Answers the meta at `to`, whose version is above what `from`
   * and `to` had before.
   */
  async rename (from: string, to: string): Promise<FileMeta> {
    const source = normalizePath(from)
    const target = normalizePath(to)
    // A try that got no answer may have moved it: a later one that finds no source but the target is done.
    return await this.changeWhileUnavailable(`rename of ${source}`, async () => await this.renameOnce(source, target), async (err) => {
      if (!(err instanceof NotFoundError)) return undefined
      const there = await this.statFresh(target).catch(() => undefined)
      return there === undefined ? undefined : { answer: there }
    })
  }

  private async renameOnce (source: string, target: string): Promise<FileMeta> {
    this.forget(source)
    this.forget(target)
    this.shownLeases.forget(source)
    this.shownLeases.forget(target)
    const found = await this.lookup(source)
    if (source === target) return await this.statFresh(source)
    if (found.kind === 'dir') return await this.renameFolder(source, target, found)
    const { size } = await this.locator.onFileServer(source, found, async (server) => await server.stat(source))
    const timeout = this.timeoutMs * 3 + Math.ceil(size / SLOWEST_COPY_BYTES_PER_MS)
    let answer: RenameAnswer | undefined
    // A destination that appears after we looked is a conflict; once more, locking it too.
    for (let attempt = 1; answer === undefined; attempt++) {
      const dest = await this.locator.lookupOrNull(target)
      if (dest?.kind === 'dir') throw new IsDirectoryError(`${target} is a folder`, { path: target })
      try {
        answer = await this.underLeases(dest ? [source, target] : [source], async (tokens) => {
          return await this.locator.onFileServer(source, found, async (server) =>
            await server.rename({ from: source, to: target, toToken: tokens.get(target) }, tokens.get(source), timeout))
        })
      } catch (err) {
        this.forget(target)
        if (!(err instanceof ConflictError) || dest !== null || attempt > 1) throw err
      }
    }
    this.forget(source)
    this.forget(target)
    const meta = answer.meta as FileMeta
    await this.cache.move(source, target, answer.fromVersion ?? -1, meta)
    return this.memo.remember(meta)
  }

  /** Cuts or extends (with zeros) a file to `size` bytes under its lock. */
  async truncate (path: string, size: number, opts: LeaseOption = {}): Promise<FileMeta> {
    if (!Number.isSafeInteger(size) || size < 0) throw new BadRequestError(`size must be a whole number of at least 0, not ${size}`)
    const canonical = normalizePath(path)
    let askedAt = 0
    // Cutting to the same size again changes nothing: safe to send again.
    const meta = await this.changeWhileUnavailable(`truncate of ${canonical}`, async () => {
      const found = await this.locator.lookupFile(canonical)
      askedAt = monotonicMs()
      return await this.underLease(canonical, opts.lease, async (token) => {
        return await this.locator.onFileServer(canonical, found, async (server) => await server.truncate(canonical, size, token))
      })
    })
    await this.cache.applyTruncate(canonical, meta)
    return this.changedBytes(canonical, askedAt, meta)
  }

  /**
   * Replaces a file's content whole under its lock, creating the file first if it does not
   * exist. Other clients see the old bytes or the new, never a mix. The local copy becomes
   * the written bytes when they were given as a Buffer or string.
   */
  async writeFile (path: string, data: Buffer | string | Readable, opts: LeaseOption = {}): Promise<FileMeta> {
    const canonical = normalizePath(path)
    this.forget(canonical)
    let found = await this.locator.lookupOrNull(canonical)
    if (!found) {
      try {
        await this.create(canonical)
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err // made by someone else meanwhile: overwrite theirs
      }
      found = await this.lookup(canonical)
    }
    if (found.kind === 'dir') throw new IsDirectoryError(`is a folder: ${canonical}`, { path: canonical })
    const body = typeof data === 'string' ? Buffer.from(data) : data
    const meta = await this.putContent(canonical, found, body, opts.lease)
    if (Buffer.isBuffer(body)) await this.keepCopy(canonical, async () => await this.cache.store(canonical, meta, Readable.from([body])))
    else await this.cache.invalidate(canonical)
    return meta
  }

  /**
   * Store-on-close for a caller that holds the file's lease itself (client.locks.acquire):
   * uploads the local file whole with that lease and makes it the local cache copy of the
   * new version, copied, or moved when `moveIntoCache` (the caller then gives the file up).
   * The lease is not released.
   */
  async storeWithLease (path: string, localFile: string, lease: LockLease | HeldLock, opts: { moveIntoCache?: boolean } = {}): Promise<FileMeta> {
    const canonical = normalizePath(path)
    const found = await this.locator.lookupFile(canonical)
    const meta = await this.putContent(canonical, found, fs.createReadStream(localFile), lease)
    await this.keepCopy(canonical, async () => opts.moveIntoCache === true
      ? await this.cache.adopt(canonical, meta, localFile)
      : await this.cache.store(canonical, meta, fs.createReadStream(localFile)))
    return meta
  }

  /** Takes the file's lock for a caller that writes under it (a working copy); renewed until released. */
  async lock (path: string): Promise<HeldLock> {
    const canonical = normalizePath(path)
    // Taken to write: waited for as a store is while the lock server does not answer.
    return await retryWhileUnavailable(`lock of ${canonical}`, this.writeRetry, async () => await this.locks.acquire(canonical))
  }

  /** Where the open-file table keeps working copies: beside the cache, on the same disk. */
  get workDir (): string {
    return nodePath.join(this.cache.dir, 'work')
  }

  /** Makes a local file, just stored as `meta`, the cached copy (moved, not copied). */
  async keepAsCached (path: string, meta: FileMeta, localFile: string): Promise<void> {
    await this.cache.adopt(normalizePath(path), meta, localFile)
  }

  /**
   * Sends only the ranges a working copy changed since its last store, under its lease, as
   * one version above `fromVersion` (PATCH /content). Null when the server cannot take them
   * as such (the lease was lost, or the file moved past `fromVersion`): the caller then
   * stores the copy whole, which knows what to do in those cases.
   */
  async storeRanges (path: string, ranges: readonly ByteRange[], size: number, held: HeldLock, fromVersion: number): Promise<FileMeta | null> {
    const canonical = normalizePath(path)
    const changeId = newChangeId()
    const body = encodeRanges(ranges)
    const askedAt = monotonicMs()
    let meta: FileMeta
    try {
      meta = await retryWhileUnavailable(`range write of ${canonical}`, this.writeRetry, async () => {
        const found = await this.locator.lookupFile(canonical)
        return await this.locator.onFileServer(canonical, found, async (server) =>
          await server.writeRanges(canonical, body, { size, fromVersion, token: leaseCredentialOf(held.lease), changeId }))
      })
    } catch (err) {
      if (err instanceof LeaseError || err instanceof ConflictError) return null
      throw err
    }
    await this.cache.invalidate(canonical)
    return this.changedBytes(canonical, askedAt, meta)
  }

  /**
   * Store-on-close of a working copy made from `baseVersion` (null: made empty, it replaces
   * whatever is there): uploads the local file whole under the lease its caller holds,
   * trying again while a server does not answer (as writeRetry says), with one change id so
   * a retry after a lost answer is not applied twice.
   *
   * A lease lost meanwhile (it ran out while the lock server or the file server was away)
   * does not lose the data: a new lease is taken, and if the file is still at `baseVersion`
   * the copy is stored under it; if someone changed the file in between, storing would undo
   * their change, so the copy is kept beside the file as NAME.conflict-HOST-TIME instead,
   * and logged. The caller holds the returned lease from then on.
   */
  async storeWorkingCopy (path: string, content: string | Buffer, held: HeldLock, baseVersion: number | null): Promise<{ stored: FileMeta | null, held: HeldLock }> {
    // A local file is read afresh for each try; bytes in memory are sent as they are.
    const body = (): Buffer | Readable => typeof content === 'string' ? fs.createReadStream(content) : content
    const canonical = normalizePath(path)
    const store = async (lease: HeldLock): Promise<FileMeta> => {
      const changeId = newChangeId()
      const askedAt = monotonicMs()
      const meta = await retryWhileUnavailable(`store of ${canonical}`, this.writeRetry, async () => {
        const found = await this.locator.lookupFile(canonical)
        return await this.locator.onFileServer(canonical, found, async (server) =>
          await server.store(canonical, body(), leaseCredentialOf(lease.lease), changeId))
      })
      await this.cache.invalidate(canonical)
      return this.changedBytes(canonical, askedAt, meta)
    }
    try {
      return { stored: await store(held), held }
    } catch (err) {
      if (!(err instanceof LeaseError)) throw err
    }
    this.writeRetry.log?.(`store of ${canonical}: the lease was lost meanwhile; taking a new one`)
    await held.release({ keep: false })
    const renewed = await this.lock(canonical)
    try {
      const current = await retryWhileUnavailable(`stat of ${canonical}`, this.writeRetry, async () => await this.statFresh(canonical))
      if (baseVersion === null || current.version === baseVersion) return { stored: await store(renewed), held: renewed }
      const conflict = conflictPathOf(canonical)
      await retryWhileUnavailable(`conflict copy of ${canonical}`, this.writeRetry, async () => await this.writeFile(conflict, body()))
      this.writeRetry.log?.(`store of ${canonical}: the file changed (version ${baseVersion} to ${current.version}) while this mount had no lease; its copy is kept as ${conflict}`)
      return { stored: null, held: renewed }
    } catch (err) {
      await renewed.release()
      throw err
    }
  }

  /** Sets a file's or folder's mtime (and atime); a file's ETag changes, so other caches refetch. */
  async utimes (path: string, mtimeMs: number, atimeMs?: number): Promise<FileMeta> {
    const mtime = Math.floor(mtimeMs)
    const atime = atimeMs === undefined ? undefined : Math.floor(atimeMs)
    return await this.setAttributes(normalizePath(path), async (server, canonical) => await server.utimes(canonical, mtime, atime))
  }

  /**
   * Sets permission bits (mode & 0o7777) on the server's file or folder; the owner keeps read
   * and write there, so a file server can always serve what it holds. stat() reports `mode`.
   */
  async chmod (path: string, mode: number): Promise<FileMeta> {
    return await this.setAttributes(normalizePath(path), async (server, canonical) => await server.chmod(canonical, mode & 0o7777))
  }

  /**
   * Whether a write() of `adding` bytes to a file, of which the caller then holds back
   * `heldBack` bytes for its next store, fits on the file's server (`isNew`: a file made here
   * and not sent yet, placed where its folder's new files go). See FreeSpaceWatch: no request
   * while the server has room to spare. Where the server cannot be known now, the write is
   * taken: the store finds out.
   */
  async roomFor (path: string, adding: number, heldBack: number, isNew: boolean): Promise<boolean> {
    const canonical = normalizePath(path)
    let server: ServerInfo | undefined
    try {
      server = isNew ? await this.placementOf(canonical) : (await this.locator.lookup(canonical)).server
    } catch {
      return true
    }
    if (server === undefined) return true
    const api = this.locator.reader(server)
    return await this.freeSpace.fits(server.url, { adding, heldBack, newFile: isNew }, async () => await api.statfs())
  }

  /** Where a new file of this folder goes: learned once per folder (placements), as its create will use it. */
  private async placementOf (canonical: string): Promise<ServerInfo> {
    const folder = parentOf(canonical)
    const known = this.placements.get(folder)
    if (known !== undefined) return known
    const { server } = await this.directory.placement(canonical)
    this.placements.set(folder, server)
    return server
  }

  /**
   * Why this client's credential cannot change files now, or null if it can: a read-only
   * token, or one past its expiry (read from the token as it is now: a replaced token file
   * counts at once).
   */
  writeRefusal (): string | null {
    const { role, expiresAtMs } = claimedRights(this.caller.credential?.())
    if (role === 'read') return 'the mount\'s token is read-only'
    if (expiresAtMs !== undefined && expiresAtMs <= Date.now()) return `the mount's token expired at ${new Date(expiresAtMs).toISOString()} (put a new one in its token file)`
    return null
  }

  /** Size and free space summed over the file servers that answer; `unreachable` counts those that do not. */
  async statfs (): Promise<ClusterStatfs> {
    const { servers } = await this.directory.servers()
    // One the directory has marked down is counted unreachable without waiting for it.
    const answers = await Promise.allSettled(servers.map(async (s) => {
      if (s.state === 'down') throw this.locator.downError(s)
      return await this.locator.reader(s).statfs()
    }))
    const result: ClusterStatfs = { totalBytes: 0, freeBytes: 0, servers: 0, unreachable: 0 }
    for (const answer of answers) {
      if (answer.status === 'rejected') {
        result.unreachable++
        continue
      }
      result.servers++
      result.totalBytes += answer.value.totalBytes
      result.freeBytes += answer.value.freeBytes
    }
    if (result.servers === 0 && answers.length > 0) throw (answers[0] as PromiseRejectedResult).reason
    return result
  }

  /**
   * A new file with its bytes (and mode and mtime) in one request, as a mount sends it at the
   * close of a file it created: placed where the folder's placement says (remembered per
   * folder), on the server's disk and claimed with the directory before the answer. Tried
   * again while the server does not answer, as an append is (one change id: a retry after a
   * lost answer lands once). A name another client took meanwhile: ConflictError when
   * `exclusive` (O_EXCL: the caller's close fails with EEXIST); with `appendIfTaken` (the
   * bytes were all appended, or there are none) they are appended to the file that took the
   * name, as two programs' O_CREAT|O_APPEND opens of one name share a local file; otherwise
   * they are kept beside it as NAME.conflict-HOST-TIME, logged, and `storedAs` names that
   * copy (see OpenFileTable.create for why).
   * `keepWriting`: the caller goes on writing to the file (an fsync of a file it holds open,
   * as a database's journal): the path's lease is taken first and sent with the create, and
   * the server promises a callback on the file, so the next write here finds the lease kept
   * and the copy vouched for, and asks nothing (see ShownLeases).
   */
  async createWithContent (path: string, data: Buffer, opts: { mode?: number, mtimeMs?: number, exclusive: boolean, appendIfTaken?: boolean, keepWriting?: boolean }): Promise<{ meta: FileMeta, storedAs: string }> {
    const canonical = normalizePath(path)
    try {
      return { meta: await this.placeNewFile(canonical, data, opts), storedAs: canonical }
    } catch (err) {
      if (err instanceof NotFoundError && await this.folderGone(parentOf(canonical))) {
        // Another client removed the folder while the file was being written here (the name
        // lived only on this mount, so its rmdir found the folder empty). The program was told
        // its open and writes succeeded, and a shell ignores the close's error: the folder is
        // made again rather than the bytes lost, and the log says so.
        await this.makeFolders(parentOf(canonical))
        this.forget(parentOf(canonical))
        this.writeRetry.log?.(`create of ${canonical}: its folder was removed by another client while the file was written here; the folder is made again to keep its bytes`)
        return await this.createWithContent(canonical, data, opts)
      }
      if (!(err instanceof ConflictError) || opts.exclusive) throw err
    }
    if (opts.appendIfTaken === true) {
      // The other client's file is the one this open made, as on a local disk: its mode and time stay.
      const taken = await this.takenName(canonical, data)
      if (taken !== null) return { meta: taken, storedAs: canonical }
    }
    const conflict = conflictPathOf(canonical)
    const meta = await this.placeNewFile(conflict, data, { mode: opts.mode, mtimeMs: opts.mtimeMs })
    this.writeRetry.log?.(`create of ${canonical}: another client made the file meanwhile; this mount's bytes are kept as ${conflict}`)
    return { meta, storedAs: conflict }
  }

  /**
   * The file another client made at the name this client's create lost, with `data`
   * appended to it; null if the name is not a file now (removed again, or a folder).
   */
  private async takenName (canonical: string, data: Buffer): Promise<FileMeta | null> {
    try {
      if (data.length === 0) {
        const meta = await this.statFresh(canonical)
        return meta.kind === 'file' ? meta : null
      }
      const meta = await this.append(canonical, data)
      this.writeRetry.log?.(`create of ${canonical}: another client made the file meanwhile; this mount's ${data.length} bytes, all appended, were appended to it`)
      return meta
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof IsDirectoryError) return null
      throw err
    }
  }

  /**
   * Whether `folder` (or one above it) is gone, as the directory has it now: asked, not
   * looked up here, where a folder removed by another client may still be remembered (its
   * callback's break not heard yet).
   */
  private async folderGone (folder: string): Promise<boolean> {
    try {
      return (await this.directory.lookup(folder)).kind !== 'dir'
    } catch (err) {
      if (err instanceof NotFoundError) return true
      throw err
    }
  }

  /** Makes `folder` and every folder above it that is missing (mkdir -p); one made meanwhile by another client is as good. */
  private async makeFolders (folder: string): Promise<void> {
    if (folder === '/' || !await this.folderGone(folder)) return
    await this.makeFolders(parentOf(folder))
    try {
      await this.mkdir(folder)
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err
    }
  }

  private async placeNewFile (canonical: string, data: Buffer, opts: { mode?: number, mtimeMs?: number, keepWriting?: boolean }): Promise<FileMeta> {
    const folder = parentOf(canonical)
    const changeId = newChangeId()
    const mtimeMs = opts.mtimeMs === undefined ? undefined : Math.max(0, Math.floor(opts.mtimeMs))
    const askedAt = monotonicMs()
    let placedOn: ServerInfo | undefined
    let meta: FileMeta
    // Only a lease this client can keep is worth taking before the create (else it would go back at once).
    const held = opts.keepWriting === true && this.locks.kept?.canKeep() === true ? await this.lock(canonical) : undefined
    const token = held === undefined ? undefined : leaseCredentialOf(held.lease)
    let made = false
    // Where the last try went: one whose answer was lost (its server went down after making the
    // file) has put the name in the directory, which then places it nowhere (409). Sent there
    // again with the same change id, the create is answered as made, or 409 if another took it.
    let sentTo: ServerInfo | undefined
    try {
      meta = await retryAppendWhileUnavailable(`create of ${canonical}`, this.writeRetry, async () => {
        const server = await this.placementOf(canonical).catch((err: unknown) => {
          if (err instanceof ConflictError && sentTo !== undefined) return sentTo
          throw err
        })
        sentTo = server
        const api = this.locator.fileServer(server)
        try {
          // A callback on the new file: its bytes are this client's copy, so a stat or an open of
          // a file it made (a build's outputs read back, the kernel's lookup before an rm of a
          // temp file) needs no request to its server until another client changes it.
          const callback = this.callbacks?.ready(api) === true
          const answer = await api.createWithContent(canonical, data, { mode: opts.mode, mtimeMs, changeId, token, callback })
          this.placements.set(folder, server)
          placedOn = server
          if (answer.callback) this.callbacks?.granted(api, canonical, answer.meta, askedAt)
          if (held !== undefined && token !== undefined) this.shownLeases.remember(canonical, token, held.lease.ttlMs, askedAt)
          return answer.meta
        } catch (err) {
          // Its server may be down (the directory places it elsewhere once it knows), or the folder gone: ask again next time.
          this.placements.delete(folder)
          throw err
        }
      })
      made = true
    } catch (err) {
      // It may have been made all the same (the answer was lost): the folder's copy cannot say.
      this.forget(canonical)
      throw err
    } finally {
      // Kept for the writes that follow (a delegated lease); given back if the create failed.
      await held?.release({ keep: made })
    }
    const server = placedOn as ServerInfo
    this.changedName(canonical, askedAt, server, meta)
    this.locator.learned(canonical, server)
    this.keepBytes(canonical, meta, data)
    return this.memo.remember(meta)
  }

  /**
   * Keeps the bytes of a version this client just stored whole (a new file, a working copy
   * held in memory) as its copy. A small file's stay in memory, as a stat's inline ones
   * (RecentBytes): its copy on disk would save its next open no request, only the bytes of a
   * 304's 200, and cost two file creates in the cache's folder on the event loop per file
   * created (cp -r, tar -x); a larger one's go to the cache behind.
   */
  keepBytes (path: string, meta: FileMeta, data: Buffer): void {
    const canonical = normalizePath(path)
    if (data.length <= INLINE_STAT_BYTES) this.recentBytes.remember(canonical, meta, data)
    else this.cache.storeBehind(canonical, meta, data)
  }

  private async createEntry (path: string, kind: MetaKind, opts: { mode?: number, target?: string }): Promise<FileMeta> {
    // A try that got no answer may have made it: a later one that finds it there, of its kind, is done.
    return await this.changeWhileUnavailable(`create of ${path}`, async () => await this.createEntryOnce(path, kind, opts), async (err) => {
      if (!(err instanceof ConflictError)) return undefined
      const there = await this.statFresh(path)
      return there.kind === kind && (kind !== 'symlink' || there.target === opts.target) ? { answer: there } : undefined
    })
  }

  private async createEntryOnce (path: string, kind: MetaKind, opts: { mode?: number, target?: string }): Promise<FileMeta> {
    this.forget(path)
    const folder = parentOf(path)
    let server = this.placements.get(folder)
    let meta: FileMeta
    try {
      try {
        server ??= (await this.directory.placement(path)).server
        meta = await this.locator.fileServer(server).create(path, kind, opts)
      } catch (err) {
        // A remembered placement whose server went down since: the directory places it
        // elsewhere now (it skips servers that are down).
        if (!(err instanceof ServerUnavailableError) || !this.placements.has(folder)) throw err
        this.placements.delete(folder)
        server = (await this.directory.placement(path)).server
        meta = await this.locator.fileServer(server).create(path, kind, opts)
      }
    } catch (err) {
      // The folder may have moved or gone, or its server may be down: ask again next time.
      this.placements.delete(folder)
      throw err
    }
    this.placements.set(folder, server)
    this.forget(path)
    if (kind !== 'dir') {
      await this.cache.invalidate(path)
      this.locator.learned(path, server)
    }
    return this.memo.remember(meta)
  }

  private async renameFolder (source: string, target: string, found: LookupAnswer): Promise<FileMeta> {
    const holders = found.holders ?? []
    if (holders.length !== 1) {
      throw new CrossServerError(`${source} spans ${holders.length} file servers: it cannot be renamed in one step`, { path: source })
    }
    // A folder is not moved while a lease is held below it (EBUSY): leases kept idle here go first.
    await this.locks.kept?.giveBackUnder(source)
    try {
      await this.locator.fileServer(holders[0]).rename({ from: source, to: target }, undefined, Math.max(SLOW_FOLDER_RENAME_MS, this.timeoutMs * 3))
    } finally {
      this.forgetTree(source)
      this.forgetTree(target)
    }
    await this.cache.invalidateTree(source)
    return await this.statFresh(target)
  }

  private async putContent (path: string, found: LookupAnswer, body: Bytes, lease: LockLease | HeldLock | undefined): Promise<FileMeta> {
    const askedAt = monotonicMs()
    const meta = await this.underLease(path, lease, async (token) => {
      return await this.locator.onFileServer(path, found, async (server) => await server.store(path, body, token))
    })
    return this.changedBytes(path, askedAt, meta)
  }

  /** Makes the cache hold what was just written; if that fails the copy is dropped, never left stale. */
  private async keepCopy (path: string, put: () => Promise<unknown>): Promise<void> {
    try {
      await put()
    } catch {
      await this.cache.invalidate(path)
    }
  }

  /** A change of attributes on a file's server, or on every server holding a folder. */
  private async setAttributes (path: string, change: (server: FileApi, path: string) => Promise<FileMeta>): Promise<FileMeta> {
    // The same mode or times set again change nothing: safe to send again.
    return await this.changeWhileUnavailable(`change of ${path}'s attributes`, async () => await this.setAttributesOnce(path, change))
  }

  private async setAttributesOnce (path: string, change: (server: FileApi, path: string) => Promise<FileMeta>): Promise<FileMeta> {
    this.forget(path)
    const found = await this.lookup(path)
    if (found.kind === 'dir') {
      const metas = await this.locator.onEveryHolder(found, async (server) => await change(server, path))
      await this.directory.folderChanged(path)
      this.forget(path)
      return metas[0] ?? await this.statFresh(path)
    }
    const meta = await this.locator.onFileServer(path, found, async (server) => await change(server, path))
    this.forget(path)
    await this.cache.restamp(path, meta)
    return this.memo.remember(meta)
  }

  /**
   * A change of names or attributes, tried again while a server does not answer, as a store
   * is (writeRetry: a hard mount waits for the server, a soft one gives up after its time,
   * the CLI at once). `doneBefore`: for an error met by a later try, `{ answer }` if an
   * earlier try that got no answer did the change already (an unlink that finds nothing),
   * else undefined. The task must be safe to run again.
   */
  private async changeWhileUnavailable<T> (what: string, task: () => Promise<T>,
    doneBefore?: (err: unknown) => Promise<{ answer: T } | undefined> | { answer: T } | undefined): Promise<T> {
    let tries = 0
    return await retryWhileUnavailable(what, this.writeRetry, async () => {
      if (++tries === 1 || doneBefore === undefined) return await task()
      try {
        return await task()
      } catch (err) {
        const done = await doneBefore(err)
        if (done === undefined) throw err
        return done.answer
      }
    })
  }

  /**
   * Runs a task with the lease the caller holds, or with one taken and given back here
   * (kept, if delegated, unless `keep` is false: the task removes the file).
   */
  private async underLease<T> (path: string, lease: LockLease | HeldLock | undefined, task: (token: LeaseCredential) => Promise<T>, keep = true): Promise<T> {
    const token = credentialOf(lease)
    if (token !== undefined) return await task(token)
    return await this.locks.withLock(path, async (taken) => await task(leaseCredentialOf(taken)), { keep })
  }

  /**
   * Several locks, taken in path order so that two renames never wait on each other; given
   * back after, not kept (a rename moves the files away from their keys).
   */
  private async underLeases<T> (paths: string[], task: (tokens: Map<string, LeaseCredential>) => Promise<T>): Promise<T> {
    const held: HeldLock[] = []
    try {
      for (const path of [...new Set(paths)].sort()) held.push(await this.locks.acquire(path))
      return await task(new Map(held.map((h) => [h.lease.path, leaseCredentialOf(h.lease)])))
    } finally {
      await Promise.all(held.map(async (h) => await h.release({ keep: false })))
    }
  }

  /**
   * This client changed a file's bytes (or size) and has the answer `meta`: where it lives
   * and its folder's names stand. Its file server did not break this client's callback on
   * it, which goes on vouching for `meta` unless another change may have come after ours
   * (CallbackRegistry.changedByMe): the next stat needs no request.
   */
  private changedBytes (path: string, askedAt: number, meta: FileMeta): FileMeta {
    this.callbacks?.changedByMe(path, askedAt, meta)
    return this.memo.remember(meta)
  }

  /**
   * This client made the file `path` on `server`, or removed it (null), and has the answer:
   * the copy of its folder, which the directory did not break for this client, takes the
   * change (FolderCopies.changedByMe), so the next lookups in the folder need no request.
   */
  private changedName (path: string, askedAt: number, server: ServerInfo | null, made?: FileMeta): void {
    this.locator.forgetRemembered(path)
    // A create that came with a callback (`made`): the promise stands for the answer.
    if (made !== undefined) this.callbacks?.changedByMe(path, askedAt, made)
    else this.callbacks?.changedHere(path)
    this.folders?.changedByMe(path, askedAt, server)
  }

  private forgetTree (folder: string): void {
    this.locator.forgetTree(folder)
    this.callbacks?.changedHere(normalizePath(folder), true)
  }

  /**
   * Forget what is remembered of a path, so the next call asks the servers. Every change
   * this client makes calls it once the change is answered: a file server does not break
   * the callbacks of the client that made the change, so the client ends its own promise.
   */
  forget (path: string): void {
    this.locator.forget(path)
    this.callbacks?.changedHere(normalizePath(path))
  }

  /**
   * For how long (ms) a file's callback vouches for its attributes at the least: until then
   * they change only after `onVouchEnded` watchers heard so. 0 without such a callback.
   */
  attributesVouchedForMs (path: string): number {
    return this.callbacks?.vouchedForMs(normalizePath(path)) ?? 0
  }

  /** Runs `watcher` (at once, before a break is acknowledged) when a file's callback stops vouching for the attributes it held. */
  onVouchEnded (watcher: (path: string) => void): void {
    this.vouchWatchers.push(watcher)
  }

  /**
   * `watcher` hears of each file another client renamed while this client held a callback
   * on it, before the rename is acknowledged to the client that made it (the mount moves
   * its descriptors of the file to the new name), and of each rename followMove learns of.
   */
  onRenamedElsewhere (watcher: (from: string, to: string) => void): void {
    this.renameWatchers.push(watcher)
  }

  /**
   * A file this client has open is not at `path` any more, and no callback told of a rename:
   * asks the directory where the file went (it remembers recent renames, GET /moved). If a
   * rename took it, the watchers hear of it as of a rename told by a callback, and the new
   * path is answered; undefined if the file was removed (or replaced) instead.
   */
  async followMove (path: string): Promise<string | undefined> {
    const canonical = normalizePath(path)
    const { movedTo } = await this.directory.moved(canonical)
    if (movedTo === undefined) return undefined
    this.locator.forget(canonical)
    for (const watcher of this.renameWatchers) watcher(canonical, movedTo)
    return movedTo
  }

  /** Files whose servers promised a callback now (for tests and logs). */
  get callbackCount (): number {
    return this.callbacks?.count ?? 0
  }

  /**
   * For a mount going away: gives back the leases it kept and its fcntl and flock locks
   * (delegated ones too), waiting for the servers' answers (at most `waitMs`), then closes.
   * A process that exits right after close() alone would leave the locks to its lease: other
   * mounts' programs are refused them until it runs out.
   */
  async shutdown (waitMs = 5000): Promise<void> {
    await waitAtMost(Promise.allSettled([this.locks.giveBackKept(), this.advisoryLocks.close()]), waitMs)
    this.close()
  }

  /**
   * Ends the callback channels; the client still works, revalidating every open. Leases it
   * kept are given back in the background (giveBackKept, awaited, is surer: a mount calls it).
   */
  close (): void {
    this.callbacks?.close()
    this.folderCallbacks?.close()
    // Before the channel closes: its close would hand every delegated path back, just before the session ends anyway.
    this.advisoryLocks.close().catch(() => {}) // unreachable: its locks go when the session's lease runs out
    this.delegations?.close()
  }
}

/** For a removal tried again (DfsClient.changeWhileUnavailable): finding nothing, an earlier try that got no answer did it. */
function goneAlready (err: unknown): { answer: undefined } | undefined {
  return err instanceof NotFoundError ? { answer: undefined } : undefined
}

/**
 * A reader of a cached copy, or null when the copy went between the check that found it
 * current and this open (`mayBeGone`: the caller asks the server again).
 */
function openCopy (file: string, mayBeGone: boolean): DescriptorReader | null {
  try {
    return DescriptorReader.open(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && mayBeGone) return null
    throw err
  }
}

/** A small body read whole; one that comes short of (or past) `meta`'s size is refused, as a copy would be. */
async function bodyOf (body: Readable, meta: FileMeta): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of body) chunks.push(chunk as Buffer)
  const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
  if (data.length !== meta.size) throw new Error(`fetched ${data.length} bytes of ${meta.path}, expected ${meta.size}`)
  return data
}

/** Where a copy that could not be stored without undoing someone's change is kept: beside the file. */
function conflictPathOf (path: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  return `${path}.conflict-${os.hostname()}-${stamp}`
}

/**
 * Random once per process, then counted: unique to this change among every client's (a
 * retry sends the same id again), and no call into the kernel's random source per change.
 */
const CHANGE_ID_PREFIX = crypto.randomBytes(12).toString('base64url')
let changesMade = 0

function newChangeId (): string {
  return `${CHANGE_ID_PREFIX}-${(++changesMade).toString(36)}`
}

function credentialOf (lease: LockLease | HeldLock | undefined): LeaseCredential | undefined {
  if (lease === undefined) return undefined
  return leaseCredentialOf('lease' in lease ? lease.lease : lease)
}
