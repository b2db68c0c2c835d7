import type { Response } from 'express'
import { LRUCache } from 'lru-cache'
import type { CallbackBreak, FileServerStats } from '../../src/shared/protocol'
import { monotonicMs } from '../../src/shared/clock'
import { ForbiddenError } from '../../src/shared/errors'

/** Entries the table holds at most: past that, no new callbacks are promised (clients revalidate). */
const MAX_CALLBACKS = 200_000
/** Changes remembered for the grants of listings in flight (see changedSince); past that, such grants are refused. */
const REMEMBERED_CHANGES = 100_000

/** A client known to this server: its event channel and how long its callbacks count. */
interface ClientLease {
  /** The open event stream, if any: breaks go down it. */
  channel: Response | null
  /** Until when (monotonic ms) this client's callbacks count without news from it. */
  until: number
  /** Breaks sent and not yet acknowledged, by sequence number. */
  waiting: Map<number, () => void>
  /**
   * The credential subject that made this client id known (undefined on an open server):
   * only that subject may renew it, read its channel, acknowledge its breaks, be granted
   * callbacks under it, or be spared a break as its writer.
   */
  subject: string | undefined
}

/**
 * Told that a client was forgotten at `now`: its lease ran until `until` (later than `now`
 * when its channel closed first), both on the table's clock.
 */
export type ForgetListener = (clientId: string, until: number, now: number) => void

/**
 * Callbacks, as AFS has them: a promise from this file server to a client that it will be
 * told before a file it has cached changes, so that until then the client may open and stat
 * the file with no request at all.
 *
 * A client holds a lease (renewed over POST /callbacks/renew, leaseMs long) and an event
 * channel (GET /events). A callback counts only while its client's lease runs. Before a
 * change to a file is acknowledged, every other client holding a callback on it is sent a
 * break over its channel, and the change waits until each has acknowledged it or its lease
 * has run out; so once a writer's close has returned, no client still trusts the old
 * version. A client whose lease ran out is forgotten with all its callbacks, and its next
 * renewal is told so (it then trusts none of its callbacks on this server). A restart of
 * the server forgets everything: the clients see their channel close.
 */
export class CallbackTable {
  private readonly clients = new Map<string, ClientLease>()
  /** Per path, the clients holding a callback on it. */
  private readonly holders = new Map<string, Set<string>>()
  private size = 0
  private nextSeq = 1
  /**
   * The latest changes (path, or `tree:` and a folder for a whole tree) with the count of
   * changes at each, so a grant made after its answer's metadata was read (a listing's, in
   * bulk) can tell whether a change slipped in between: see mark and changedSince.
   */
  private changes = 0
  private forgottenUpTo = 0
  private readonly recentChanges = new LRUCache<string, number>({
    max: REMEMBERED_CHANGES,
    dispose: (seq, _key, reason) => { if (reason === 'evict') this.forgottenUpTo = Math.max(this.forgottenUpTo, seq) }
  })

  /** Told of every client forgotten (see whenForgotten). */
  private forgotten: ForgetListener | undefined

  constructor (readonly leaseMs: number, private readonly stats?: Pick<FileServerStats, 'callbacksGranted' | 'callbacksBroken'>, private readonly now: () => number = monotonicMs) {}

  /** Tells `listener` of each client forgotten from now on (its channel closed, or its lease ran out): the lock server's delegated leases follow it. */
  whenForgotten (listener: ForgetListener): void {
    this.forgotten = listener
  }

  /**
   * Extends a client's lease and says for how long it runs from now. `known` is false when
   * the client was not known (new, or forgotten after its lease ran out): then none of the
   * callbacks it thinks it has on this server count. A client that has not acknowledged a
   * break is not extended: it may not have seen it, and must stop trusting its callbacks
   * when the lease it has runs out, which is when the writer stops waiting for it.
   */
  renew (clientId: string, subject: string | undefined): { known: boolean, validForMs: number } {
    const now = this.now()
    const client = this.claimed(clientId, subject)
    if (client) {
      if (client.waiting.size === 0) client.until = now + this.leaseMs
      return { known: true, validForMs: client.until - now }
    }
    this.clients.set(clientId, { channel: null, until: now + this.leaseMs, waiting: new Map(), subject })
    return { known: false, validForMs: this.leaseMs }
  }

  /** Refuses (403) a caller whose subject is not the one the live client id belongs to; before its channel opens. */
  claim (clientId: string, subject: string | undefined): void {
    this.claimed(clientId, subject)
  }

  /** `clientId` if it is a live client of this subject: whose writes spare its own callbacks. A client id of another's is nobody. */
  own (clientId: string | undefined, subject: string | undefined): string | undefined {
    if (clientId === undefined) return undefined
    return this.live(clientId)?.subject === subject ? clientId : undefined
  }

  /** The client's event channel opened (a second one replaces the first); call claim first. */
  attach (clientId: string, channel: Response): void {
    const client = this.live(clientId)
    if (!client) return
    client.channel?.end()
    client.channel = channel
  }

  /** Clients whose lease is live and whose event channel is open (for operators). */
  connectedClients (): string[] {
    return [...this.clients.keys()].filter((id) => this.live(id)?.channel != null).sort()
  }

  /** The channel closed: the client trusts none of its callbacks here any more (it voids them on close). */
  detach (clientId: string, channel: Response): void {
    const client = this.clients.get(clientId)
    if (client?.channel === channel) this.forget(clientId)
  }

  /**
   * Promises the client a callback on the path, if it has a live lease and a channel, and
   * the table has room. Called before the file's version is read for the answer, so a change
   * that lands in between breaks the callback it would otherwise miss.
   */
  grant (clientId: string, path: string, subject: string | undefined): boolean {
    const client = this.live(clientId)
    if (!client?.channel || client.subject !== subject || this.size >= MAX_CALLBACKS) return false
    let holders = this.holders.get(path)
    if (!holders) this.holders.set(path, holders = new Set())
    if (!holders.has(clientId)) {
      holders.add(clientId)
      this.size++
    }
    if (this.stats) this.stats.callbacksGranted++
    return true
  }

  /**
   * Breaks every callback on the path but the writer's own, and waits until each holder has
   * acknowledged or its lease has run out. `change` is what the holders are told.
   */
  async breakAll (path: string, change: CallbackBreak, writer: string | undefined): Promise<void> {
    this.recentChanges.set(path, ++this.changes)
    const holders = this.holders.get(path)
    if (!holders) return
    const waits: Array<Promise<void>> = []
    for (const clientId of [...holders]) {
      if (clientId === writer) continue
      holders.delete(clientId)
      this.size--
      if (this.stats) this.stats.callbacksBroken++
      const client = this.live(clientId)
      if (client?.channel) waits.push(this.send(clientId, client, change))
    }
    if (holders.size === 0) this.holders.delete(path)
    await Promise.all(waits)
  }

  /** Breaks the callbacks on every file under a folder (it was renamed to `renamedTo`: the files left their paths). */
  async breakUnder (folder: string, writer: string | undefined, renamedTo?: string): Promise<void> {
    this.recentChanges.set(`tree:${folder}`, ++this.changes)
    const prefix = folder === '/' ? '/' : folder + '/'
    const paths = [...this.holders.keys()].filter((path) => path.startsWith(prefix))
    await Promise.all(paths.map(async (path) => {
      const moved = renamedTo === undefined ? {} : { renamedTo: renamedTo + path.slice(folder.length) }
      await this.breakAll(path, { path, version: null, ...moved }, writer)
    }))
  }

  /** Taken before reading the metadata of entries to be granted in bulk (see grantUnchanged). */
  mark (): number {
    return this.changes
  }

  /**
   * Promises callbacks on paths whose metadata was read after `mark` was taken (a folder's
   * listing): a path that changed since (its break may have gone out before this grant) is
   * left out, as is every path once the changes since the mark are no longer all known.
   * Answers the paths granted.
   */
  grantUnchanged (clientId: string, paths: string[], subject: string | undefined, mark: number): string[] {
    if (this.forgottenUpTo > mark) return []
    return paths.filter((path) => !this.changedSince(path, mark) && this.grant(clientId, path, subject))
  }

  private changedSince (path: string, mark: number): boolean {
    if ((this.recentChanges.get(path) ?? 0) > mark) return true
    for (let folder = path; folder !== '/';) {
      folder = folder.slice(0, Math.max(1, folder.lastIndexOf('/')))
      if ((this.recentChanges.get(`tree:${folder}`) ?? 0) > mark) return true
    }
    return false
  }

  /** A client acknowledged the break with this sequence number. */
  acknowledge (clientId: string, seq: number, subject: string | undefined): void {
    const client = this.claimed(clientId, subject)
    const done = client?.waiting.get(seq)
    if (done) done()
  }

  /** How many callbacks are promised now (for tests and stats). */
  get count (): number {
    return this.size
  }

  /** Ends every channel (the server is closing). */
  closeAll (): void {
    for (const client of this.clients.values()) client.channel?.end()
    this.clients.clear()
    this.holders.clear()
    this.size = 0
  }

  private async send (clientId: string, client: ClientLease, change: CallbackBreak): Promise<void> {
    const seq = this.nextSeq++
    await new Promise<void>((resolve) => {
      // The lease bounds the wait: a stopped or cut-off client delays a writer by at most that.
      // The lease is not extended while a break waits (see renew), so by then the client has
      // stopped trusting its callbacks too; it is forgotten, and told so at its next renewal.
      const timer = setTimeout(() => {
        client.waiting.delete(seq)
        if (this.clients.get(clientId) === client) this.forget(clientId)
        resolve()
      }, Math.max(0, client.until - this.now()) + 5)
      client.waiting.set(seq, () => {
        clearTimeout(timer)
        client.waiting.delete(seq)
        resolve()
      })
      client.channel?.write(`event: break\ndata: ${JSON.stringify({ ...change, seq })}\n\n`)
    })
  }

  /** The live client, if any, after checking it is the subject's own (403 if another's). */
  private claimed (clientId: string, subject: string | undefined): ClientLease | undefined {
    const client = this.live(clientId)
    if (client !== undefined && client.subject !== subject) {
      throw new ForbiddenError(`client id ${clientId} belongs to another credential`, { client: clientId })
    }
    return client
  }

  /** The client's lease if it still runs; a lapsed one is forgotten on the spot. */
  private live (clientId: string): ClientLease | undefined {
    const client = this.clients.get(clientId)
    if (!client) return undefined
    if (client.until > this.now()) return client
    this.forget(clientId)
    return undefined
  }

  private forget (clientId: string): void {
    const client = this.clients.get(clientId)
    if (!client) return
    this.clients.delete(clientId)
    client.channel?.end()
    for (const done of client.waiting.values()) done()
    for (const [path, holders] of this.holders) {
      if (holders.delete(clientId)) {
        this.size--
        if (holders.size === 0) this.holders.delete(path)
      }
    }
    this.forgotten?.(clientId, client.until, this.now())
  }
}
