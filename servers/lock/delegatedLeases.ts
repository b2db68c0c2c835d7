import { LRUCache } from 'lru-cache'
import { monotonicMs } from '../../src/shared/clock'
import type { CallbackTable } from '../file/callbacks'

/** Delegated leases remembered (by path); one forgotten is only asked about again by file servers, and runs to its end. */
const REMEMBERED_LEASES = 100_000
/** Clients remembered as gone; one forgotten here keeps its leases to their end (the safe side). */
const REMEMBERED_GONE = 10_000

/** A write lease granted with its delegation (AcquireRequest.delegate), as long as it is not released. */
interface DelegatedLease {
  token: number
  /** The client (X-Dfs-Client) the lease is delegated to, and the credential subject that client id belongs to. */
  client: string
  subject: string | undefined
  /** Until when (monotonic) a file server may trust a check of this lease it was told about (CheckAnswer.trustForMs). */
  trustedUntil: number
}

/** A client the callback table forgot: its channel closed, or its callback lease ran out unrenewed. */
interface GoneClient {
  /** Wall-clock ms (as the lock table's leases count) from when nothing was heard from it: the lapse, or the channel's close. */
  silentSince: number
  /** Monotonic ms from when its delegated leases may end: one more callback lease past the end of the one it had. */
  endAfter: number
}

/** What may end now: the path's delegated lease with this token, unless it was renewed at or after `silentSince`. */
export interface AbandonedLease {
  token: number
  silentSince: number
}

/**
 * The write leases this lock server delegated (servers/lock/delegations.ts), and when their
 * clients went away, so that a client killed with kill -9 frees its files within seconds
 * (two callback leases at most) instead of at its leases' end (30 s by default).
 *
 * A delegated lease may be ended early, by the server (abandoned, then
 * LockTable.endUnrenewed), only when all of these hold:
 * 1. its client is not live in the callback table now: it neither renews its callback lease
 *    nor has a channel. A live client gives its leases back itself (KeptLeases), and a client
 *    whose channel blinked opens it again within a second or so (DelegationChannel), which
 *    makes it live again, so nothing of a live client's is ended;
 * 2. one more callback lease has passed since the one the client had ran out (or, for a
 *    channel that closed first, since the lease it had then would have run out): a live but
 *    slow client has that long to be heard from again;
 * 3. the lease was not renewed since the client went silent (checked against the stored
 *    lease, in the same compare-and-set that ends it): a client whose channel is gone but
 *    who renews the lease over HTTP is alive and using it (a store under way), and keeps it;
 *    on losing its channel a client renews its leases in use at once (KeptLeases.lost);
 * 4. every file server's trust in a check of the lease has run out. A file server trusts a
 *    check of a delegated lease without asking again for at most trustForMs (vouch), which
 *    this server remembers: after that, a late write under the ended lease is asked about
 *    and refused, and the next holder's token is higher, so fencing stays exact.
 * A lock server that restarts forgets all of this: leases then run to their end, as before.
 */
export class DelegatedLeases {
  private readonly leases = new LRUCache<string, DelegatedLease>({ max: REMEMBERED_LEASES })
  private readonly gone = new LRUCache<string, GoneClient>({ max: REMEMBERED_GONE })

  /**
   * `table`: the lock server's callback table, whose clients the leases follow. `now` is the
   * table's clock (monotonic); `wallNow` the lock table's (leases expire in wall-clock time).
   */
  constructor (private readonly table: CallbackTable, private readonly now: () => number = monotonicMs, private readonly wallNow: () => number = Date.now) {
    table.whenForgotten((client, until, at) => {
      // A channel that closed: silent from now on. A lapse noticed late: silent since the lapse.
      const silentFor = Math.max(0, at - until)
      this.gone.set(client, { silentSince: this.wallNow() - silentFor, endAfter: until + table.leaseMs })
    })
  }

  /** The lease with this token on the path was granted with its delegation to the client. */
  granted (path: string, token: number, client: string, subject: string | undefined): void {
    this.leases.set(path, { token, client, subject, trustedUntil: 0 })
  }

  /** Whether the lease with this token on the path was granted with its delegation (GET /locks/check says so). */
  isDelegated (path: string, token: number): boolean {
    return this.leases.get(path)?.token === token
  }

  /** The path's lease was released, ended or its key removed. */
  ended (path: string): void {
    this.leases.delete(path)
  }

  /**
   * How long a file server may trust this answer about a delegated lease without asking
   * again: the lease's time left, but at most two callback leases, so that an abandoned lease
   * is never kept waiting by the trust for longer than its client's silence (condition 4).
   * Remembered until then.
   */
  vouch (path: string, token: number, expiresInMs: number): number {
    const trustForMs = Math.max(0, Math.min(expiresInMs, 2 * this.table.leaseMs))
    const lease = this.leases.get(path)
    if (lease?.token === token) lease.trustedUntil = Math.max(lease.trustedUntil, this.now() + trustForMs)
    return trustForMs
  }

  /** The path's delegated lease if its client is gone and it may be ended now (see the class comment), else undefined. */
  abandoned (path: string): AbandonedLease | undefined {
    const lease = this.leases.get(path)
    if (lease === undefined) return undefined
    // Asking also forgets a client whose lease lapsed unnoticed (which records it as gone).
    if (this.table.own(lease.client, lease.subject) !== undefined) return undefined
    const gone = this.gone.get(lease.client)
    if (gone === undefined || this.now() < Math.max(gone.endAfter, lease.trustedUntil)) return undefined
    return { token: lease.token, silentSince: gone.silentSince }
  }
}
