import crypto from 'node:crypto'
import { ForbiddenError, LeaseError, LockedError, NotFoundError } from '../../src/shared/errors'
import type { LockLease, LockStatus } from '../../src/shared/protocol'
import { MemoryLockStore } from './lockStore'
import type { KeyState, LockStore, StoredLease } from './lockStore'

/** A waiter polls at least this often (LockClient backs off to 250 ms, plus jitter). */
const WAITER_GONE_MS = 1000

/**
 * One key per file (made at its first acquire, see implicitStateOf); at most one live holder per key. A lease that is not renewed in time
 * simply stops counting, so a holder that died frees its key without anyone cleaning up.
 * Keys, leases and the fencing counter are in a LockStore (kept over restarts, or in
 * memory); who waits for a key is this process's business and starts empty.
 */
export class LockTable {
  /**
   * Per key, who was refused it, in order of first refusal, with when each last asked. A
   * freed key goes to the longest waiter: otherwise a writer that releases and at once
   * acquires again starves every other writer, who only polls now and then.
   */
  private readonly waiters = new Map<string, Map<string, number>>()
  /** Keys whose file was removed while a lease held them: they go when it ends (deleteKeyWhenFree). */
  private readonly goneWhenFree = new Set<string>()

  constructor (private readonly store: LockStore = new MemoryLockStore(), private readonly now: () => number = Date.now) {}

  async createKeys (paths: string[]): Promise<number> {
    return await this.store.createKeys(paths)
  }

  async deleteKey (path: string): Promise<void> {
    await this.deleteKeys([path])
  }

  async deleteKeys (paths: string[]): Promise<number> {
    for (const path of paths) {
      this.waiters.delete(path)
      this.goneWhenFree.delete(path)
    }
    return await this.store.deleteKeys(paths)
  }

  /**
   * The key of a file that was removed while a live lease stays with its holder (an unlink
   * that kept its lease): removed now if nobody holds it, else once that lease is given back
   * or ended. Whether it was removed now. (Keys are implicit, so one removed while the path
   * has a file again is made again by the next acquire; a lock server restart forgets the
   * mark, and the key then stays, free, as a key whose file was never removed does.)
   */
  async deleteKeyWhenFree (path: string): Promise<boolean> {
    if (this.live(await this.store.get(path) ?? null) === null) {
      await this.deleteKeys([path])
      return true
    }
    this.goneWhenFree.add(path)
    return false
  }

  /**
   * The key of a file removed with no lease (an rm of a file nobody writes): removed if no
   * lease holds it, in one step with that check, else left as it is. Whether it is gone (or
   * there was none). A lease that lapsed unreleased counts as held here: its file's remover
   * takes the lease first, as acquire ends a lapsed lease.
   */
  async deleteKeyIfFree (path: string): Promise<boolean> {
    if (await this.store.get(path) === undefined) return true
    if (!(await this.store.deleteKeyIfFree(path))) return false
    this.waiters.delete(path)
    this.goneWhenFree.delete(path)
    return true
  }

  /** `subject`: the caller's credential subject (none on an open server), bound to the lease as its holder. */
  async acquire (path: string, owner: string, ttlMs: number, subject?: string): Promise<LockLease> {
    // Each pass decides on the key as stored; a pass whose write finds the key changed in
    // between (another request got there first) decides again on the new state.
    for (;;) {
      const state = await this.implicitStateOf(path)
      const holder = this.live(state)
      const first = this.firstWaiter(path)
      if (holder || (first !== undefined && first !== owner)) {
        this.wait(path, owner)
        if (holder) {
          throw new LockedError(`${path} is locked by ${holder.owner}, retry later`, {
            path, holder: holder.owner, retryAfterMs: Math.max(0, holder.expiresAt - this.now())
          })
        }
        throw new LockedError(`${path} is promised to ${String(first)}, who asked first; retry later`, { path, holder: first, retryAfterMs: 0 })
      }
      const granted: StoredLease = { owner, token: await this.store.nextToken(), secret: newSecret(), ttlMs, expiresAt: this.now() + ttlMs }
      if (subject !== undefined) granted.holder = subject
      if (await this.store.compareAndSet(path, state, granted)) {
        this.waiters.get(path)?.delete(owner)
        return { path, ...granted }
      }
    }
  }

  /** Renewing and releasing need the grant's secret, as a write does: the token alone is a guess. */
  async renew (path: string, { token, secret }: LeaseProof, caller?: string): Promise<LockLease> {
    for (;;) {
      const state = await this.stateOf(path)
      const holder = this.withSecret(path, state, token, secret, caller)
      const renewed: StoredLease = { ...holder, expiresAt: this.now() + holder.ttlMs }
      if (await this.store.compareAndSet(path, state, renewed)) return { path, ...renewed }
    }
  }

  async release (path: string, { token, secret }: LeaseProof, caller?: string): Promise<void> {
    for (;;) {
      const state = await this.stateOf(path)
      this.withSecret(path, state, token, secret, caller)
      if (await this.store.compareAndSet(path, state, null)) {
        await this.freed(path)
        return
      }
    }
  }

  /**
   * Ends the live lease with this token, with no word from its holder, if it was granted or
   * last renewed before `silentSince` (wall-clock ms): a delegated lease whose client is gone
   * (servers/lock/delegatedLeases.ts). A renewal since then proves the holder alive, and the
   * compare-and-set makes one that lands meanwhile win. Whether it ended the lease.
   */
  async endUnrenewed (path: string, token: number, silentSince: number): Promise<boolean> {
    for (;;) {
      const state = await this.store.get(path)
      const holder = state === undefined ? null : this.live(state)
      if (holder === null || holder.token !== token || holder.expiresAt - holder.ttlMs >= silentSince) return false
      if (await this.store.compareAndSet(path, holder, null)) {
        await this.freed(path)
        return true
      }
    }
  }

  /** A lease on the path ended: its key goes if its file was removed meanwhile (deleteKeyWhenFree). */
  private async freed (path: string): Promise<void> {
    // If-free in one step: a lease granted to someone else in between keeps the key.
    if (this.goneWhenFree.delete(path)) await this.store.deleteKeyIfFree(path)
  }

  /** Whether `token` with `secret` is the live lease on the path (LeaseError if not); how long it has left. */
  async check (path: string, token: number, secret: string): Promise<number> {
    return (await this.checkLease(path, token, secret)).expiresInMs
  }

  /** As check, and whose the lease is. A right token with a wrong secret is a guess: refused the same way. */
  async checkLease (path: string, token: number, secret: string): Promise<{ expiresInMs: number, holder?: string }> {
    const lease = this.withSecret(path, await this.stateOf(path), token, secret)
    return { expiresInMs: lease.expiresAt - this.now(), holder: lease.holder }
  }

  /** The live leases on keys below a folder. */
  async heldUnder (folder: string): Promise<LockStatus[]> {
    const held: LockStatus[] = []
    for (const [path, state] of await this.store.keysUnder(folder)) {
      const holder = this.live(state)
      if (holder) held.push({ path, held: true, owner: holder.owner, expiresInMs: holder.expiresAt - this.now() })
    }
    return held.sort((a, b) => (a.path < b.path ? -1 : 1))
  }

  async status (path: string): Promise<LockStatus> {
    const holder = this.live(await this.store.get(path) ?? null)
    if (!holder) return { path, held: false }
    return { path, held: true, owner: holder.owner, expiresInMs: holder.expiresAt - this.now() }
  }

  /** Every live lease (lapsed ones are the same as free), for operators. */
  async held (): Promise<Array<{ path: string, lease: StoredLease }>> {
    return (await this.store.leases()).filter(({ lease }) => this.live(lease) !== null)
  }

  private wait (path: string, owner: string): void {
    let queue = this.waiters.get(path)
    if (!queue) this.waiters.set(path, queue = new Map())
    queue.set(owner, this.now()) // a Map keeps the order of first refusal when a time is updated
  }

  /** The longest waiter still asking; one silent for longer than a poll interval gave up. */
  private firstWaiter (path: string): string | undefined {
    const queue = this.waiters.get(path)
    if (!queue) return undefined
    for (const [owner, lastAsked] of queue) {
      if (this.now() - lastAsked <= WAITER_GONE_MS) return owner
      queue.delete(owner)
    }
    this.waiters.delete(path)
    return undefined
  }

  /**
   * Keys are implicit: a path nobody asked about before has a free key, made at its first
   * acquire, so a file server needs no request to the lock server per file it creates. What
   * a key guards is a file's writes, and every write is checked by the file server holding
   * the file, so a lease on a path that has no file guards nothing and harms nothing; the
   * file's unlink removes its key as before (and with it any lease on it).
   */
  private async implicitStateOf (path: string): Promise<KeyState> {
    const state = await this.store.get(path)
    if (state !== undefined) return state
    await this.store.createKeys([path])
    return await this.stateOf(path)
  }

  private async stateOf (path: string): Promise<KeyState> {
    const state = await this.store.get(path)
    if (state === undefined) throw new NotFoundError(`no lock key for ${path}`, { path })
    return state
  }

  /** The lease if it still counts. A lapsed one stays stored until the key changes hands: it is the same as free. */
  private live (state: KeyState): StoredLease | null {
    return state !== null && state.expiresAt > this.now() ? state : null
  }

  /** The live lease with this token; with `caller`, it must also be that caller's (a guessed token is worth nothing). */
  private withToken (path: string, state: KeyState, token: number, caller?: string): StoredLease {
    const holder = this.live(state)
    if (!holder || holder.token !== token) {
      throw new LeaseError(`lease ${token} on ${path} is not held: it expired or was released`, { path, token })
    }
    if (caller !== undefined && holder.holder !== undefined && holder.holder !== caller) {
      throw new ForbiddenError(`lease ${token} on ${path} is not ${caller}'s`, { path, token })
    }
    return holder
  }

  /** As withToken, and the grant's secret must match: a right token with a wrong secret is refused as a wrong token. */
  private withSecret (path: string, state: KeyState, token: number, secret: string, caller?: string): StoredLease {
    const holder = this.withToken(path, state, token, caller)
    if (!sameSecret(holder.secret, secret)) {
      throw new LeaseError(`lease ${token} on ${path} is not held: it expired or was released`, { path, token })
    }
    return holder
  }
}

/** What proves a lease: its fencing token and its grant's secret (parseLeaseCredential gives one). */
export interface LeaseProof {
  token: number
  secret: string
}

/** 128 random bits: what a grant's holder shows a file server besides the guessable token. */
function newSecret (): string {
  return crypto.randomBytes(16).toString('base64url')
}

/** Compared in constant time; a lease stored before secrets existed has none and matches nothing. */
function sameSecret (stored: string | undefined, given: string): boolean {
  if (typeof stored !== 'string') return false
  const a = Buffer.from(stored)
  const b = Buffer.from(given)
  return a.length === b.length && crypto.timingSafeEqual(a, b)
}
