import type { AdvisoryKind, AdvisoryLock, AdvisoryType } from './advisoryLockProtocol'

/** A lock as the table keeps it: `end` is the last byte, Infinity for "to the end of the file". */
interface HeldRange {
  session: string
  owner: string
  kind: AdvisoryKind
  type: 'read' | 'write'
  start: number
  end: number
}

/** What a request names: whose lock, which kind, which bytes (flock: always the whole file). */
export interface AdvisoryClaim {
  session: string
  owner: string
  kind: AdvisoryKind
  type: AdvisoryType
  start: number
  /** Last byte, Infinity for "to the end". */
  end: number
}

interface Session {
  ttlMs: number
  expiresAt: number
  /** Paths it may hold locks on (a superset: cleaned when it ends). */
  paths: Set<string>
}

/**
 * Advisory locks as POSIX and flock(2) define them, for many mounts: each owner is a
 * (session, owner) pair, where the session is a mount that keeps itself alive by renewing
 * and the owner is the kernel's lock owner on that mount. fcntl locks are byte ranges, split
 * and merged per owner as fcntl does; flock locks cover the whole file; the two never
 * conflict with each other (as on Linux). A session that is not renewed in time loses all
 * its locks at once: a mount that died frees them by itself.
 *
 * Kept in memory only: a restarted lock server knows no locks until the mounts reclaim
 * theirs in its grace (see docs/protocol.md). A mount keeps one too, of its own locks.
 */
export class AdvisoryLockTable {
  private readonly locks = new Map<string, HeldRange[]>()
  private readonly sessions = new Map<string, Session>()

  constructor (private readonly now: () => number = Date.now) {}

  /** Keeps the session alive for ttlMs more, creating it if need be. */
  touch (session: string, ttlMs: number): void {
    const known = this.sessions.get(session)
    if (known) {
      known.ttlMs = ttlMs
      known.expiresAt = this.now() + ttlMs
    } else {
      this.sessions.set(session, { ttlMs, expiresAt: this.now() + ttlMs, paths: new Set() })
    }
  }

  /** Whether the session is alive; if so it lives ttlMs more. */
  renew (session: string, ttlMs: number): boolean {
    if (!this.sessions.has(session)) return false
    this.touch(session, ttlMs)
    return true
  }

  /** Drops sessions whose lease ran out, with their locks; the paths that lost a lock. */
  expire (): string[] {
    const freed: string[] = []
    for (const [name, session] of this.sessions) {
      if (session.expiresAt <= this.now()) freed.push(...this.end(name))
    }
    return freed
  }

  /** Ends a session and gives back all its locks; the paths that lost one. */
  end (session: string): string[] {
    const known = this.sessions.get(session)
    if (!known) return []
    this.sessions.delete(session)
    const freed: string[] = []
    for (const path of known.paths) {
      const before = this.locks.get(path) ?? []
      const after = before.filter((l) => l.session !== session)
      if (after.length !== before.length) freed.push(path)
      this.store(path, after)
    }
    return freed
  }

  /** How many locks the session holds over all paths. */
  held (session: string): number {
    let count = 0
    for (const path of this.sessions.get(session)?.paths ?? []) {
      count += (this.locks.get(path) ?? []).filter((l) => l.session === session).length
    }
    return count
  }

  /** Milliseconds until the session runs out (0 when it is gone). */
  expiresInMs (session: string): number {
    const known = this.sessions.get(session)
    return known ? Math.max(0, known.expiresAt - this.now()) : 0
  }

  /** The first lock of another owner that the claim conflicts with; null for an unlock. */
  conflict (path: string, claim: AdvisoryClaim): AdvisoryLock | null {
    if (claim.type === 'unlock') return null
    const found = (this.locks.get(path) ?? []).find((l) =>
      l.kind === claim.kind && !sameOwner(l, claim) && (l.type === 'write' || claim.type === 'write') &&
      l.start <= claim.end && claim.start <= l.end)
    return found ? exported(found) : null
  }

  /**
   * Sets the owner's lock on the claimed bytes to the claim's type (unlock: to none): what it
   * held there before is replaced, what it holds outside is kept, split where the claim cuts
   * through it, and touching ranges of one type merge into one, as fcntl does. The caller
   * checked conflict() first; the session must be alive (touch()).
   */
  set (path: string, claim: AdvisoryClaim): void {
    const all = this.locks.get(path) ?? []
    const others = all.filter((l) => !sameOwner(l, claim))
    const mine: HeldRange[] = []
    for (const held of all.filter((l) => sameOwner(l, claim))) {
      if (held.end < claim.start || held.start > claim.end) {
        mine.push(held)
        continue
      }
      if (held.start < claim.start) mine.push({ ...held, end: claim.start - 1 })
      if (held.end > claim.end) mine.push({ ...held, start: claim.end + 1 })
    }
    if (claim.type !== 'unlock') {
      mine.push({ session: claim.session, owner: claim.owner, kind: claim.kind, type: claim.type, start: claim.start, end: claim.end })
    }
    this.store(path, [...others, ...merged(mine)])
    if (claim.type !== 'unlock') this.sessions.get(claim.session)?.paths.add(path)
  }

  /** The paths any lock is held on. */
  paths (): string[] {
    return [...this.locks.keys()]
  }

  locksOn (path: string): AdvisoryLock[] {
    return (this.locks.get(path) ?? []).map(exported)
  }

  /** The session's own locks on the path. */
  sessionLocksOn (path: string, session: string): AdvisoryLock[] {
    return (this.locks.get(path) ?? []).filter((l) => l.session === session).map(exported)
  }

  /** Whether any session but this one holds a lock on the path. */
  othersHold (path: string, session: string): boolean {
    return (this.locks.get(path) ?? []).some((l) => l.session !== session)
  }

  /**
   * Puts the session's locks on the path to exactly `locks` (their own session fields are
   * ignored): a delegation's holder handing back what it holds. No conflict is checked: while
   * a path is delegated nobody else is granted a lock on it. The session must be alive.
   */
  replace (path: string, session: string, locks: ReadonlyArray<Omit<AdvisoryLock, 'session'>>): void {
    const others = (this.locks.get(path) ?? []).filter((l) => l.session !== session)
    const mine = locks.map((l) => ({ session, owner: l.owner, kind: l.kind, type: l.type, start: l.start, end: l.length === 0 ? Infinity : l.start + l.length - 1 }))
    this.store(path, [...others, ...mine])
    if (mine.length > 0) this.sessions.get(session)?.paths.add(path)
  }

  /** Whether the session is alive now. */
  alive (session: string): boolean {
    const known = this.sessions.get(session)
    return known !== undefined && known.expiresAt > this.now()
  }

  private store (path: string, locks: HeldRange[]): void {
    if (locks.length === 0) this.locks.delete(path)
    else this.locks.set(path, locks)
  }
}

function sameOwner (a: { session: string, owner: string, kind: AdvisoryKind }, b: { session: string, owner: string, kind: AdvisoryKind }): boolean {
  return a.session === b.session && a.owner === b.owner && a.kind === b.kind
}

/** One owner's ranges sorted, with overlapping or touching ranges of one type joined. */
function merged (ranges: HeldRange[]): HeldRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start)
  const out: HeldRange[] = []
  for (const range of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && last.type === range.type && last.end + 1 >= range.start) {
      last.end = Math.max(last.end, range.end)
    } else {
      out.push({ ...range })
    }
  }
  return out
}

function exported (l: HeldRange): AdvisoryLock {
  return { session: l.session, owner: l.owner, kind: l.kind, type: l.type, start: l.start, length: l.end === Infinity ? 0 : l.end - l.start + 1 }
}
