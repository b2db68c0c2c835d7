import crypto from 'node:crypto'
import readline from 'node:readline'
import type { Readable } from 'node:stream'
import type { FileApi } from '../shared/api'

/** A server that keeps callbacks: a file server (files) or the directory server (folders). */
export type CallbackServerApi = Pick<FileApi, 'transport' | 'callbackCalls'>
import type { CallbackBreak, FileMeta } from '../shared/protocol'
import { monotonicMs } from '../shared/clock'

/** A renewal's answer is trusted this much less than it says: the request took time to get there. */
const LEASE_MARGIN_MS = 100
/** After a channel failed, wait this long before opening it again (a down server is not hammered). */
const RECONNECT_AFTER_MS = 1_000
/** A break matters for answers that were in flight when it came; older ones are forgotten. */
const BREAK_MEMORY_MS = 60_000

/** This client's standing with one file server: its lease, its event channel, its callbacks. */
class ServerCallbacks {
  state: 'closed' | 'connecting' | 'open' = 'closed'
  /** Until when (monotonic) the server counts this client's callbacks. */
  validUntil = 0
  /** When the channel last failed; it is not opened again before RECONNECT_AFTER_MS. */
  failedAt = -Infinity
  readonly paths = new Set<string>()
  channel: Readable | null = null
  renewal: NodeJS.Timeout | null = null

  constructor (readonly api: CallbackServerApi) {}
}

/** What a registry's owner runs when a server takes back what it promised (delegations: src/client/delegationChannel.ts). */
export interface CallbackHooks {
  /** Runs on a break before it is acknowledged (a holder gives back what it held first); an error is logged, then acknowledged anyway. */
  onBreak?: (path: string, change: CallbackBreak) => Promise<void>
  /** A server's promises all stopped counting at once: its channel closed or failed, or it forgot this client. */
  onVoid?: (api: CallbackServerApi) => void
  /**
   * What a promise vouched for about the path stops counting (it ended, or this client's own
   * change gave it new attributes): runs at once, so a break's runs before it is acknowledged.
   */
  onEnded?: (path: string) => void
}

interface Promised {
  server: ServerCallbacks
  meta: FileMeta
}

/**
 * The client's side of callbacks (servers/file/callbacks.ts): which files a server has
 * promised to tell this client about before they change. While a promise holds, the
 * client proxy opens and stats the file with no request. A promise holds only while the
 * client's lease with that server runs (it renews at a third of it) and its event channel
 * is open; a break, a lease the server forgot, a closed channel or a renewal that does not
 * come back in time each end it, and the file is revalidated as before.
 */
export class CallbackRegistry {
  /** Sent with every call (X-Dfs-Client): how servers know whose callback is whose. */
  readonly clientId: string
  private readonly servers = new Map<string, ServerCallbacks>()
  private readonly promised = new Map<string, Promised>()
  /**
   * When each path last changed as far as this client knows (a break came, or this client
   * changed it itself): a grant asked for before that may describe the file before the change.
   */
  private readonly changedAt = new Map<string, number>()
  /** The same for folders whose whole tree moved. */
  private readonly treeChangedAt = new Map<string, number>()
  private closed = false

  /** `clientId`: another registry's, for one client with callbacks of several kinds (files, folders, delegations). */
  constructor (private readonly log: (line: string) => void = () => {}, private readonly now: () => number = monotonicMs, clientId?: string,
    private readonly hooks: CallbackHooks = {}) {
    this.clientId = clientId ?? crypto.randomBytes(12).toString('base64url')
  }

  /**
   * Whether a callback may be asked of this server now (its channel is open and its lease
   * runs). The first question about a server opens the channel, in the background.
   */
  ready (api: CallbackServerApi): boolean {
    const server = this.serverOf(api)
    if (server.state === 'closed' && !this.closed && this.now() - server.failedAt >= RECONNECT_AFTER_MS) void this.connect(server)
    return this.usable(server)
  }

  /**
   * The file as a callback vouches for it now, or undefined. A promise whose server's lease
   * has lapsed here (a renewal late on a busy machine) vouches for nothing meanwhile, but is
   * kept: a renewal the server answers as `known` proves it never forgot this client, so
   * every break it sent came down the channel, and the server extends no lease while one is
   * unacknowledged. A break, a closed channel or a forgotten lease is what ends a promise.
   * (Dropping promises at a lapse made a mount that was slow once relist and revalidate
   * everything, which made it slower still: a 50,000-file folder never settled.)
   */
  current (path: string): FileMeta | undefined {
    const promise = this.promised.get(path)
    return promise !== undefined && this.usable(promise.server) ? promise.meta : undefined
  }

  /**
   * How much longer a promise on the path vouches for it at the least (its server's lease as
   * this client counts it), in ms; 0 when none vouches now. Until then, the promise ends only
   * through drop() (onEnded).
   */
  vouchedForMs (path: string): number {
    const promise = this.promised.get(path)
    return promise !== undefined && this.usable(promise.server) ? promise.server.validUntil - this.now() : 0
  }

  /** Whether a promise on the path is kept, vouching now or not (see current). */
  holds (path: string): boolean {
    return this.promised.has(path)
  }

  /** A server promised a callback in an answer to a request sent at `askedAt` (monotonic). */
  granted (api: CallbackServerApi, path: string, meta: FileMeta, askedAt: number): void {
    const server = this.serverOf(api)
    // A change known after the request left (a break, or one of this client's own, which
    // the server does not break for it) may be one this answer did not see.
    if (this.changedSince(path, askedAt) || !this.usable(server)) return
    this.drop(path)
    this.promised.set(path, { server, meta })
    server.paths.add(path)
  }

  /**
   * This client changed the file (or, with `tree`, moved a folder) and has the answer: no
   * promise on it counts any more, nor one asked for before now.
   */
  changedHere (path: string, tree = false): void {
    const now = this.now()
    if (tree) {
      mark(this.treeChangedAt, path, now)
      this.dropUnder(path)
    } else {
      mark(this.changedAt, path, now)
      this.drop(path)
    }
    this.forgetOldChanges()
  }

  /**
   * This client made a change to the path and has the server's answer, `meta`. The server
   * did not break this client's own callback for it (servers/file/callbacks.ts breakAll's
   * writer; the directory's changer), so the promise may go on vouching for the path, as
   * `meta`, provided no break came after the request left at `askedAt`: another client's
   * change may have landed after ours, and this answer would not show it. Otherwise (or
   * without `meta`) the promise ends, as with changedHere. Either way a grant asked for
   * before now no longer counts. Answers whether the promise was kept.
   */
  changedByMe (path: string, askedAt: number, meta?: FileMeta): boolean {
    const promise = this.promised.get(path)
    const keep = meta !== undefined && promise !== undefined && this.usable(promise.server) && !this.changedSince(path, askedAt)
    if (keep) {
      promise.meta = meta
      this.hooks.onEnded?.(path)
    } else {
      this.drop(path)
    }
    mark(this.changedAt, path, this.now())
    this.forgetOldChanges()
    return keep
  }

  drop (path: string): void {
    const promise = this.promised.get(path)
    if (!promise) return
    this.promised.delete(path)
    promise.server.paths.delete(path)
    this.hooks.onEnded?.(path)
  }

  dropUnder (folder: string): void {
    const prefix = folder === '/' ? '/' : folder + '/'
    for (const path of [...this.promised.keys()]) if (path === folder || path.startsWith(prefix)) this.drop(path)
  }

  /** Files promised now (for tests). */
  get count (): number {
    return this.promised.size
  }

  /** Ends every channel and renewal (the client is closing). */
  close (): void {
    this.closed = true
    for (const server of this.servers.values()) this.disconnect(server)
  }

  private serverOf (api: CallbackServerApi): ServerCallbacks {
    const url = api.transport.baseUrl
    let server = this.servers.get(url)
    // Another name at the same address: the server came back under another machine id.
    if (!server || server.api.transport.name !== api.transport.name) {
      if (server) this.disconnect(server)
      server = new ServerCallbacks(api)
      this.servers.set(url, server)
    }
    return server
  }

  private usable (server: ServerCallbacks): boolean {
    return server.state === 'open' && this.now() < server.validUntil
  }

  /** A lease first (the server grants only to clients it knows), then the channel. */
  private async connect (server: ServerCallbacks): Promise<void> {
    server.state = 'connecting'
    try {
      await this.renew(server)
      const channel = await server.api.callbackCalls.events(this.clientId)
      if (this.closed || server.state !== 'connecting') {
        channel.destroy()
        return
      }
      server.channel = channel
      this.listen(server, channel)
    } catch (err) {
      this.fail(server, `cannot open the callback channel: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  private listen (server: ServerCallbacks, channel: Readable): void {
    const lines = readline.createInterface({ input: channel, crlfDelay: Infinity })
    let event = ''
    let data = ''
    lines.on('line', (line) => {
      if (line.startsWith('event: ')) event = line.slice(7)
      else if (line.startsWith('data: ')) data += line.slice(6)
      else if (line === '') {
        this.dispatch(server, event, data)
        event = ''
        data = ''
      }
    })
    // A channel that breaks (its server stopped, the idle timer cut it) just closes: readline
    // passes its input's error on, and an unhandled one would end the process.
    channel.on('error', () => {})
    lines.on('error', () => {})
    channel.on('close', () => this.fail(server, 'the callback channel closed'))
  }

  private dispatch (server: ServerCallbacks, event: string, data: string): void {
    if (event === 'hello') {
      const { leaseMs } = JSON.parse(data) as { leaseMs: number }
      server.state = 'open'
      if (server.renewal) clearInterval(server.renewal)
      server.renewal = setInterval(() => { void this.renew(server).catch(() => {}) }, Math.max(50, Math.floor(leaseMs / 3)))
      server.renewal.unref()
      return
    }
    if (event !== 'break') return
    const change = JSON.parse(data) as CallbackBreak
    this.changedHere(change.path)
    void this.acknowledge(server, change)
  }

  /** Acknowledges a break once the owner's onBreak has run: the server waits for that. */
  private async acknowledge (server: ServerCallbacks, change: CallbackBreak): Promise<void> {
    try {
      await this.hooks.onBreak?.(change.path, change)
    } catch (err) {
      this.log(`${server.api.transport.where}: giving back ${change.path} on its break failed: ${err instanceof Error ? err.message : String(err)}`)
    }
    if (change.seq !== undefined) server.api.callbackCalls.acknowledge(this.clientId, change.seq).catch(() => {})
  }

  /** Extends the lease; a server that did not know this client holds none of its callbacks. */
  private async renew (server: ServerCallbacks): Promise<void> {
    const sentAt = this.now()
    const answer = await server.api.callbackCalls.renew(this.clientId)
    if (!answer.known) this.voidAll(server)
    server.validUntil = sentAt + answer.validForMs - LEASE_MARGIN_MS
  }

  private fail (server: ServerCallbacks, why: string): void {
    if (server.state === 'closed') return
    if (!this.closed && server.paths.size > 0) this.log(`${server.api.transport.where}: ${why}; its ${server.paths.size} callbacks no longer count`)
    this.disconnect(server)
    server.failedAt = this.now()
  }

  private disconnect (server: ServerCallbacks): void {
    server.state = 'closed'
    server.validUntil = 0
    if (server.renewal) clearInterval(server.renewal)
    server.renewal = null
    server.channel?.destroy()
    server.channel = null
    this.voidAll(server)
  }

  private voidAll (server: ServerCallbacks): void {
    for (const path of [...server.paths]) this.drop(path)
    // While connecting, nothing was promised yet (a first renewal is always `unknown`).
    if (server.state !== 'connecting') this.hooks.onVoid?.(server.api)
  }

  private changedSince (path: string, askedAt: number): boolean {
    const at = this.changedAt.get(path)
    if (at !== undefined && at >= askedAt) return true
    if (this.treeChangedAt.size === 0) return false
    for (let folder = path; folder !== '/';) {
      folder = folder.slice(0, Math.max(1, folder.lastIndexOf('/')))
      const movedAt = this.treeChangedAt.get(folder)
      if (movedAt !== undefined && movedAt >= askedAt) return true
    }
    return false
  }

  /**
   * Changes matter only for answers that were in flight when they came. The marks are kept
   * oldest first (mark), so this stops at the first one still young: with more than 1,000
   * changes in the last minute (a cp -r), each change used to look at all of them (about 20
   * µs of the mount's CPU a create in a profile of 1,000 creates).
   */
  private forgetOldChanges (): void {
    if (this.changedAt.size + this.treeChangedAt.size < 1000) return
    const horizon = this.now() - BREAK_MEMORY_MS
    for (const marks of [this.changedAt, this.treeChangedAt]) {
      for (const [path, at] of marks) {
        if (at >= horizon) break
        marks.delete(path)
      }
    }
  }
}

/** Marks a path changed `at` (monotonic, so never before the other marks): last in the map, which keeps the marks in the order of their times. */
function mark (marks: Map<string, number>, path: string, at: number): void {
  marks.delete(path)
  marks.set(path, at)
}
