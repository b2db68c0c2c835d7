import { waitAtMost } from '../shared/clock'
import type { DelegationHandler } from './delegationChannel'

/** A delegated lease kept this long without use is given back (one constant: a few seconds). */
export const KEEP_IDLE_MS = 3_000
/**
 * A recall of a lease in use waits this long for the use (a store under way) to end before
 * it is acknowledged; a longer use (a file open for writing) gives the lease back when it
 * ends. Well under the callback lease, whose end would make the lock server forget this client.
 */
const RECALL_WAITS_FOR_USE_MS = 1_000

/** A lease as the keeper sees it: whether it still counts, and how to give it back for good. */
export interface Keepable {
  /** False once a renewal was refused (the lease ran out or was superseded): it is never handed out again. */
  valid: () => boolean
  /** Gives the lease back to the lock server (stops its renewal); never throws. */
  giveBack: () => Promise<void>
  /** Stops its renewal with no request: its key is gone from the lock server (the file was removed), and the lease with it. */
  drop: () => void
  /** Renews it now, in the background (the lock server is to see that its holder is alive); never throws. */
  renewNow: () => void
}

/** How a use of a lease ends: `keyGone` when the lock server removed the key (and so the lease) already. */
export interface UseEnd {
  keyGone?: boolean
}

interface Kept {
  lease: Keepable
  /** Uses going on now (handed out and not returned). */
  users: number
  /** Recalled, lost or given up: given back when its last use ends, never handed out again. */
  ending: boolean
  idle: NodeJS.Timeout | null
  /** Resolves when the uses going on now have ended (a recall waits on it). */
  unused: Promise<void>
  markUnused: () => void
  /** The giving back, once begun. */
  given: Promise<void> | null
  /** The key went with its file: the lease ends with no request. */
  keyGone: boolean
  /** Told when the lease is recalled while in use: the user may end its use early (a working copy with nothing unstored). */
  onRecall: (() => void) | null
}

/**
 * Write leases this client keeps after use (write delegations, issue #9): a lease granted
 * with its delegation (`lease:PATH`, servers/lock/delegations.ts) is not given back when the
 * store that needed it is done, so the next store of the file by this client needs no
 * acquire. The lease stays renewed while kept; it is given back when the lock server recalls
 * it (another client asks for the key), when it was not used for KEEP_IDLE_MS, when the
 * channel to the lock server is lost (the lock server could not recall it any more), when
 * the file is renamed here, or removed here other than by DfsClient.unlink under it (which
 * keeps it for the path's next file), and when the client closes.
 */
export class KeptLeases implements DelegationHandler {
  private readonly kept = new Map<string, Kept>()
  /** Per path, acquires of this client that went to the lock server meanwhile: a lease returned meanwhile goes back at once for them. */
  private readonly asking = new Map<string, number>()

  /** `usable`: whether the channel to the lock server is open now (a recall can reach this client). */
  constructor (private readonly usable: () => boolean) {}

  /** Whether a lease granted now could be kept (the channel to the lock server is open). */
  canKeep (): boolean {
    return this.usable()
  }

  /** A lease just granted, in use by its taker: kept after use if it came with its delegation. */
  granted (path: string, lease: Keepable, delegated: boolean): void {
    if (!delegated) return
    const stale = this.kept.get(path)
    if (stale !== undefined) void this.finish(path, stale)
    const kept = this.newKept(lease)
    kept.users = 1
    this.kept.set(path, kept)
  }

  /** A kept lease on the path, now in use, or undefined (none, in use already, or no channel). */
  take (path: string): Keepable | undefined {
    const kept = this.kept.get(path)
    if (kept === undefined || kept.ending || kept.users > 0) return undefined
    if (!kept.lease.valid() || !this.usable()) {
      void this.finish(path, kept)
      return undefined
    }
    if (kept.idle !== null) clearTimeout(kept.idle)
    kept.idle = null
    kept.users = 1
    kept.unused = new Promise<void>((resolve) => { kept.markUnused = resolve })
    return kept.lease
  }

  /**
   * A use of the lease ended: keeps it if it may be kept (delegated, valid, the channel
   * open, nobody here waiting for the key, not recalled), else gives it back.
   */
  async returned (path: string, lease: Keepable, end: UseEnd = {}): Promise<void> {
    const kept = this.kept.get(path)
    if (kept === undefined || kept.lease !== lease) {
      if (end.keyGone === true) lease.drop()
      else await lease.giveBack()
      return
    }
    if (end.keyGone === true) kept.keyGone = true
    kept.users = Math.max(0, kept.users - 1)
    if (kept.users > 0) return
    kept.markUnused()
    if (kept.ending || (this.asking.get(path) ?? 0) > 0 || !lease.valid() || !this.usable()) {
      await this.finish(path, kept)
      return
    }
    kept.idle = setTimeout(() => { void this.giveBack(path) }, KEEP_IDLE_MS)
    kept.idle.unref()
  }

  /**
   * Waits, at most `ms`, while the kept lease on the path is in use here (a close's release
   * still under way when the next open asks for the lease): then take() may hand it over.
   */
  async inUseEnded (path: string, ms: number): Promise<void> {
    const kept = this.kept.get(path)
    if (kept === undefined || kept.ending || kept.users === 0) return
    await waitAtMost(kept.unused, ms)
  }

  /** Whether a lease on the path is kept and may be handed out now (a write may go straight under it). */
  keeps (path: string): boolean {
    const kept = this.kept.get(path)
    return kept !== undefined && !kept.ending && kept.users === 0 && kept.lease.valid() && this.usable()
  }

  /** Runs an acquire of the lock server for the path; a lease of this client returned meanwhile is given back for it. */
  async asked<T> (path: string, acquire: () => Promise<T>): Promise<T> {
    this.asking.set(path, (this.asking.get(path) ?? 0) + 1)
    try {
      const kept = this.kept.get(path)
      if (kept !== undefined && kept.users === 0) await this.finish(path, kept)
      return await acquire()
    } finally {
      const left = (this.asking.get(path) ?? 1) - 1
      if (left === 0) this.asking.delete(path)
      else this.asking.set(path, left)
    }
  }

  /** Whether this lease is kept here for the path, so the lock server can recall it (delegated, not ending). */
  holds (path: string, lease: Keepable): boolean {
    const kept = this.kept.get(path)
    return kept !== undefined && kept.lease === lease && !kept.ending
  }

  /**
   * Tells `handler` when the lease, in use now, is recalled (once): a long use (a file open
   * for writing in place) may then end early, rather than keep another client out until it
   * closes. Nothing if the lease is not kept here (no delegation: nobody can recall it).
   */
  whenRecalled (path: string, lease: Keepable, handler: () => void): void {
    const kept = this.kept.get(path)
    if (kept === undefined || kept.lease !== lease || kept.users === 0) return
    if (kept.ending) handler()
    else kept.onRecall = handler
  }

  /** The lock server recalls the lease: given back now if idle, else once the store under way ends (waiting a little for it). */
  async recall (path: string): Promise<void> {
    const kept = this.kept.get(path)
    if (kept === undefined) return
    kept.ending = true
    if (kept.users > 0) {
      const told = kept.onRecall
      kept.onRecall = null
      told?.()
      await waitAtMost(kept.unused, RECALL_WAITS_FOR_USE_MS)
      // Still in use (a file open for writing): returned() gives it back when the use ends.
      if (kept.users > 0) return
    }
    await this.finish(path, kept)
  }

  /**
   * The channel to the lock server is gone: no recall can reach this client, so nothing is
   * kept. A lease in use stays held until its use ends, and is renewed at once: the lock
   * server ends a delegated lease whose client went silent unless it was renewed since
   * (servers/lock/delegatedLeases.ts), and this one is still needed.
   */
  lost (): void {
    for (const kept of this.kept.values()) if (kept.users > 0) kept.lease.renewNow()
    void this.giveBackAll()
  }

  /** Gives back the kept lease on the path (the file was removed or renamed here), or marks it to go when its use ends. */
  async giveBack (path: string, end: UseEnd = {}): Promise<void> {
    const kept = this.kept.get(path)
    if (kept === undefined) return
    kept.ending = true
    if (end.keyGone === true) kept.keyGone = true
    if (kept.users === 0) await this.finish(path, kept)
  }

  /** Gives back every kept lease on a path below the folder (it is about to be renamed). */
  async giveBackUnder (folder: string): Promise<void> {
    const prefix = folder === '/' ? '/' : folder + '/'
    await Promise.all([...this.kept.keys()].filter((path) => path.startsWith(prefix)).map(async (path) => await this.giveBack(path)))
  }

  /** Gives back every kept lease (the client closes, or lost its channel). */
  async giveBackAll (): Promise<void> {
    await Promise.all([...this.kept.keys()].map(async (path) => await this.giveBack(path)))
  }

  /** Leases kept now, in use or not (for tests). */
  get count (): number {
    return this.kept.size
  }

  private newKept (lease: Keepable): Kept {
    const kept: Kept = { lease, users: 0, ending: false, idle: null, unused: Promise.resolve(), markUnused: () => {}, given: null, keyGone: false, onRecall: null }
    kept.unused = new Promise<void>((resolve) => { kept.markUnused = resolve })
    return kept
  }

  /** Ends the entry and gives the lease back, once. */
  private async finish (path: string, kept: Kept): Promise<void> {
    if (kept.idle !== null) clearTimeout(kept.idle)
    kept.idle = null
    kept.ending = true
    if (this.kept.get(path) === kept) this.kept.delete(path)
    if (kept.given === null && kept.keyGone) {
      kept.lease.drop()
      kept.given = Promise.resolve()
    }
    kept.given ??= kept.lease.giveBack()
    await kept.given
  }
}
