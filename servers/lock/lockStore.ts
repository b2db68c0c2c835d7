/**
 * What the lock server must not forget over a restart, behind one narrow interface: which
 * keys exist, each key's lease, and the fencing counter. The lock table (lockTable.ts)
 * decides who gets a key; a store only keeps the outcome, with compare-and-set so that
 * two decisions made on the same old state cannot both win. Nothing here names a file or a
 * format: an etcd store would map a key to an etcd key, compareAndSet to a transaction on
 * its mod revision, and nextToken to an increment of a counter key.
 */

/** A key's live or lapsed lease, as stored. `expiresAt` is wall-clock ms (Date.now()): it must mean the same after a restart. */
export interface StoredLease {
  owner: string
  /** The subject of the credential it was granted to: only that caller renews, releases or writes under it. */
  holder?: string
  token: number
  /**
   * The grant's secret, told only to the caller it was granted to: the file servers take a
   * write under the lease only with it. Kept with the lease, so a lease outlives a restart.
   */
  secret: string
  ttlMs: number
  expiresAt: number
}

/** A key's state: its lease, or null when nobody holds it. A path without a key has no state (undefined). */
export type KeyState = StoredLease | null

export interface LockStore {
  /** Reads what an earlier run left; called once, before anything else. */
  load: () => Promise<void>
  /** After load: whether an earlier run left state (this run is a restart). */
  readonly resumed: boolean
  /** The key's state, or undefined when there is no key for the path. */
  get: (path: string) => Promise<KeyState | undefined>
  /**
   * Sets the key's state to `next` if it is `expected` now (the same lease, see sameKeyState,
   * or free in both); false, with nothing changed, if it is not or there is no key. When it
   * resolves true the change is durable: the caller may tell the world.
   */
  compareAndSet: (path: string, expected: KeyState, next: KeyState) => Promise<boolean>
  /**
   * A fencing token above every token this store handed out before, over restarts too.
   * It is durable at the latest once a compareAndSet that stores a lease with it resolved,
   * so a token nobody was told of may be given out again after a crash, and no other.
   */
  nextToken: () => Promise<number>
  /** Creates the missing keys, free; keys that exist are left alone. How many were new. */
  createKeys: (paths: string[]) => Promise<number>
  /** Removes keys, held or not. How many existed. */
  deleteKeys: (paths: string[]) => Promise<number>
  /** Removes the key if nobody holds it (its state is null), in one step; whether it did. */
  deleteKeyIfFree: (path: string) => Promise<boolean>
  /** Every key that has a lease stored, live or lapsed (for operators: GET /locks/held). */
  leases: () => Promise<Array<{ path: string, lease: StoredLease }>>
  /** Every key below a folder (paths starting with `folder/`), with its state: a prefix scan. */
  keysUnder: (folder: string) => Promise<Array<[string, KeyState]>>
  /**
   * The sessions (mounts) on record as holders of fcntl and flock locks, the earlier run's
   * too after load: the mounts whose reclaims a restarted server's grace waits for.
   */
  advisoryHolders: () => ReadonlySet<string>
  /** Puts a session on record as a holder; durable when it returns, so before its grant is answered. */
  addAdvisoryHolder: (session: string) => void
  /** Takes sessions off that record. One left on by a crash only makes a grace wait its full time. */
  dropAdvisoryHolders: (sessions: string[]) => void
  close: () => Promise<void>
}

/** The keys of a map below a folder; both stores keep theirs in one. */
export function keysUnder (keys: Map<string, KeyState>, folder: string): Array<[string, KeyState]> {
  const prefix = folder === '/' ? '/' : folder + '/'
  return [...keys].filter(([path]) => path.startsWith(prefix))
}

/** The same state: both free, or the same lease with the same expiry (a renewal is a change). */
export function sameKeyState (a: KeyState | undefined, b: KeyState | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  if (a === null || b === null) return a === b
  return a.token === b.token && a.expiresAt === b.expiresAt && a.owner === b.owner && a.ttlMs === b.ttlMs
}

/**
 * The first token of a store that has none on record: the clock in microseconds, so that
 * tokens still grow over a restart that lost the state (or an in-memory lock server's
 * restart) unless over a thousand leases a millisecond were granted. A safe integer until 2255.
 */
export function clockToken (now: number = Date.now()): number {
  return now * 1000
}

/** Keeps everything in this process: for tests, and for a cluster started without a state folder. */
export class MemoryLockStore implements LockStore {
  private readonly keys = new Map<string, KeyState>()
  private readonly holders = new Set<string>()
  private lastToken = clockToken()
  readonly resumed = false

  async load (): Promise<void> {}

  async get (path: string): Promise<KeyState | undefined> {
    return this.keys.get(path)
  }

  async compareAndSet (path: string, expected: KeyState, next: KeyState): Promise<boolean> {
    if (!this.keys.has(path) || !sameKeyState(this.keys.get(path), expected)) return false
    this.keys.set(path, next === null ? null : { ...next })
    return true
  }

  async nextToken (): Promise<number> {
    return ++this.lastToken
  }

  async createKeys (paths: string[]): Promise<number> {
    let created = 0
    for (const path of paths) {
      if (!this.keys.has(path)) {
        this.keys.set(path, null)
        created++
      }
    }
    return created
  }

  async deleteKeys (paths: string[]): Promise<number> {
    let removed = 0
    for (const path of paths) if (this.keys.delete(path)) removed++
    return removed
  }

  async deleteKeyIfFree (path: string): Promise<boolean> {
    return this.keys.get(path) === null && this.keys.delete(path)
  }

  async leases (): Promise<Array<{ path: string, lease: StoredLease }>> {
    return leasesOf(this.keys)
  }

  async keysUnder (folder: string): Promise<Array<[string, KeyState]>> {
    return keysUnder(this.keys, folder)
  }

  advisoryHolders (): ReadonlySet<string> {
    return this.holders
  }

  addAdvisoryHolder (session: string): void {
    this.holders.add(session)
  }

  dropAdvisoryHolders (sessions: string[]): void {
    for (const session of sessions) this.holders.delete(session)
  }

  async close (): Promise<void> {}
}

/** The stored leases of a map of keys. */
export function leasesOf (keys: Map<string, KeyState>): Array<{ path: string, lease: StoredLease }> {
  const found: Array<{ path: string, lease: StoredLease }> = []
  for (const [path, lease] of keys) if (lease !== null) found.push({ path, lease: { ...lease } })
  return found
}
