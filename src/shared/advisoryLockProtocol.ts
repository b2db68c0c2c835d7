/**
 * Wire types of advisory locks (fcntl byte-range locks and flock) on the lock server: what a
 * mount asks when a program locks a file through it. Apart from the per-file write leases
 * (LockRoutes): those order dfs's own writers; these are the programs' own locks, which dfs
 * only keeps and never enforces on reads or writes.
 */

export const AdvisoryRoutes = {
  lock: '/advisory/lock', // POST AdvisoryLockRequest -> AdvisoryLockAnswer | 423 LOCKED (AdvisoryLockedDetails)
  test: '/advisory/test', // POST AdvisoryTestRequest -> AdvisoryTestAnswer
  renew: '/advisory/renew', // POST AdvisorySessionRequest -> AdvisorySessionAnswer
  end: '/advisory/end', // POST AdvisorySessionRequest -> AdvisoryEndAnswer
  return: '/advisory/return', // POST AdvisoryReturnRequest -> AdvisoryReturnAnswer
  reclaimed: '/advisory/reclaimed', // POST AdvisoryReclaimedRequest -> AdvisoryReclaimedAnswer: a mount has given back all it held before a restart
  status: '/advisory' // GET ?path= -> AdvisoryStatus
} as const

/** fcntl locks (byte ranges, one owner per process) or flock locks (whole file, one owner per open file). */
export type AdvisoryKind = 'posix' | 'flock'

/** read: shared; write: exclusive; unlock gives back (part of) what the owner holds. */
export type AdvisoryType = 'read' | 'write' | 'unlock'

/** Longest a lock request may wait on the server for a conflicting lock to go (waitMs). */
export const MAX_ADVISORY_WAIT_MS = 30_000

export interface AdvisorySessionRequest {
  /** The mount's id (1 to 64 letters, digits, '-' or '_'): its locks live as long as it renews. */
  session: string
  /** How long the session lives without a renewal; default: the lock server's lease. */
  ttlMs?: number
}

export interface AdvisoryLockRequest extends AdvisorySessionRequest {
  path: string
  /** Who holds the lock within the session (the kernel's lock owner), at most 64 characters. */
  owner: string
  kind: AdvisoryKind
  type: AdvisoryType
  /** posix only: first byte; default 0. */
  start?: number
  /** posix only: bytes from start; 0 (the default) means to the end of the file, however far it grows. */
  length?: number
  /** How long the server may hold the request while someone else's lock conflicts (0..30000, default 0). */
  waitMs?: number
  /**
   * Asks for the path's locks to be delegated to this session if the grant leaves nobody
   * else holding or waiting for one there: the mount then answers them itself until the
   * server recalls them. Needs `session` to be the caller's client id (X-Dfs-Client) with an
   * open callback channel to the lock server.
   */
  delegate?: boolean
}

export type AdvisoryTestRequest = Omit<AdvisoryLockRequest, 'waitMs' | 'delegate'>

/** A lock as others see it: length 0 runs to the end of the file. */
export interface AdvisoryLock {
  session: string
  owner: string
  kind: AdvisoryKind
  type: 'read' | 'write'
  start: number
  length: number
}

export interface AdvisoryLockAnswer {
  path: string
  granted: true
  /** How many locks (ranges) the session now holds over all paths: renew while it is not 0. */
  held: number
  ttlMs: number
  /** Present when the path's locks are now delegated to the session: its locks there, which the mount then keeps. */
  delegated?: AdvisoryLock[]
  /** The lock server's run (a new one at each start): a mount that sees it change knows the server restarted and forgot its locks. */
  boot: string
}

/** A lock as a delegation's holder hands it back: the server puts it under the caller's session. */
export type AdvisoryHeldLock = Omit<AdvisoryLock, 'session'>

export interface AdvisoryReturnRequest extends AdvisorySessionRequest {
  path: string
  /** Every lock the session holds on the path now (replacing what the server had for it there). */
  locks: AdvisoryHeldLock[]
}

export interface AdvisoryReturnAnswer {
  path: string
  /** False: the server had no delegation of the path to this session (its session ran out, or it was never granted): the locks were not taken. */
  returned: boolean
  held: number
}

export interface AdvisoryTestAnswer {
  path: string
  /** The first lock that conflicts with the one asked about, or null. */
  conflict: AdvisoryLock | null
}

export interface AdvisorySessionAnswer {
  session: string
  /** False: the server knew no live session of that name (its lease ran out, or the server restarted) and so holds none of its locks. */
  known: boolean
  held: number
  ttlMs: number
  /** Paths delegated to the session that the server is recalling: hand them back (the callback channel may have missed the recall). */
  recalled?: string[]
  /** As in AdvisoryLockAnswer: the server's run. */
  boot: string
}

/** A mount has handed back every lock it held before the lock server's restart (the run `boot` names). */
export interface AdvisoryReclaimedRequest {
  session: string
  /** The run of the lock server the locks went back to (AdvisorySessionAnswer.boot): a reclaim for an earlier run says nothing of this one. */
  boot: string
}

export interface AdvisoryReclaimedAnswer {
  session: string
  /** Whether the reclaim counted: false when `boot` is not this run's. */
  counted: boolean
  /** How much longer the grace runs (0: over), now that this mount is done. */
  graceLeftMs: number
}

export interface AdvisoryEndAnswer {
  session: string
  /** Locks given back. */
  released: number
}

export interface AdvisoryStatus {
  path: string
  locks: AdvisoryLock[]
  /** The session the path's locks are delegated to, if its holder did not hand them back when asked. */
  delegatedTo?: string
}

/** Details of a 423 LOCKED answer to an advisory lock request. */
export interface AdvisoryLockedDetails {
  path: string
  /** The session holding the conflicting lock. */
  holder: string
  /** Absent when the path's locks are delegated to a holder that did not hand them back in time (`delegated`). */
  conflict?: AdvisoryLock
  delegated?: true
  /** When the holder's session runs out unless renewed. */
  retryAfterMs: number
}
