import { LRUCache } from 'lru-cache'
import { upToEntries } from './lruOptions'
import { monotonicMs } from '../shared/clock'
import type { LeaseCredential } from '../shared/leaseCredential'

/** Paths remembered at most: one forgotten only costs its next fetch under a lease a request. */
const REMEMBERED_PATHS = 10_000

/**
 * Leases this client has shown to a file's server: a request under the lease (a create sent
 * with it, a fetch made with it) that the server answered, so the server checked it and from
 * then on holds back appends that come without it (servers/file/leaseGuard.ts) until the
 * lease's end as it then knew it. While that holds, and the server's callback vouches for
 * this client's copy, a fetch under the lease learns nothing new from the server: nobody can
 * have changed the file. Trusted for half the lease's length after the request left, well
 * inside what the server itself goes by (the lease's end when it checked, after the request
 * left).
 */
export class ShownLeases {
  private readonly shown = new LRUCache<string, { credential: LeaseCredential, until: number }>(upToEntries(REMEMBERED_PATHS))

  /** The server answered a request under `credential` on the path, sent at `sentAt` (monotonic), for a lease of `ttlMs`. */
  remember (path: string, credential: LeaseCredential, ttlMs: number, sentAt: number): void {
    this.shown.set(path, { credential, until: sentAt + ttlMs / 2 })
  }

  /** Whether the path's server holds back others' appends for this lease now. */
  holdsBackFor (path: string, credential: LeaseCredential): boolean {
    const known = this.shown.get(path)
    return known !== undefined && known.credential === credential && monotonicMs() < known.until
  }

  /** The file went away or moved: its lease went with it. */
  forget (path: string): void {
    this.shown.delete(path)
  }
}
