import type { Request } from 'express'
import { delegationKey } from '../../src/shared/protocol'
import type { Delegations } from './delegations'

/**
 * A path recalled this recently is not delegated again: two mounts taking turns on a file
 * (a shared database) would otherwise hand it to and fro at every lock, a break and a
 * hand-back each time, and a waiting request could find it delegated anew before its turn.
 */
const CONTENDED_MS = 2_000
/** Recalls remembered for that at most (past it, the oldest are forgotten first). */
const REMEMBERED_RECALLS = 10_000

interface Delegation {
  /** The session (as the table scopes it) that answers the path's locks itself. */
  session: string
  /** The recall went out: the holder is to hand the locks back. */
  recalling: boolean
}

/**
 * Which paths' advisory locks are delegated, and to whom. A delegated path's locks are the
 * holder's business until it hands them back (POST /advisory/return): the server decides
 * nothing on that path meanwhile, for anybody. A request of any session about the path starts
 * the recall (a break of `advisory:PATH` over the holder's callback channel, and the path in
 * the answers to its renewals) and waits for the hand-back.
 *
 * The rule for a holder that does not answer: its delegation, and the locks under it, end only
 * with its advisory session, never with its callback lease. A mount that is alive but whose
 * channel is cut off still renews its session, sees the recall in the renewal's answer and
 * hands back; one that stopped renewing has lost all its locks anyway, as a dead mount does
 * without delegation. Ending the delegation at the callback lease would instead drop locks a
 * live program believes it holds, and let another mount into a database mid-transaction.
 */
export class AdvisoryDelegations {
  private readonly byPath = new Map<string, Delegation>()
  /** When each path was last recalled (Date.now()), oldest first. */
  private readonly recalledAt = new Map<string, number>()

  constructor (private readonly channel: Pick<Delegations, 'grant' | 'recall'> | undefined) {}

  /** The session a path is delegated to, if any. */
  holderOf (path: string): string | undefined {
    return this.byPath.get(path)?.session
  }

  /** Delegates the path to the session when the caller's client has a channel to be recalled over. */
  grant (req: Request, path: string, session: string): boolean {
    if (Date.now() - (this.recalledAt.get(path) ?? -Infinity) < CONTENDED_MS) return false
    if (this.channel === undefined || !this.channel.grant(req, delegationKey('advisory', path))) return false
    this.byPath.set(path, { session, recalling: false })
    return true
  }

  /** Sends the recall, once per delegation; the holder answers with a hand-back. */
  recall (path: string): void {
    const delegation = this.byPath.get(path)
    if (delegation === undefined || delegation.recalling) return
    delegation.recalling = true
    this.recalledAt.delete(path)
    this.recalledAt.set(path, Date.now())
    for (const [old, at] of this.recalledAt) {
      if (this.recalledAt.size <= REMEMBERED_RECALLS && Date.now() - at < CONTENDED_MS) break
      this.recalledAt.delete(old)
    }
    // Not awaited: the hand-back, not the acknowledgement, ends the wait (see the class comment).
    // Nobody is spared: a request of the holder's own session that reaches the server recalls too.
    this.channel?.recall(delegationKey('advisory', path), undefined).catch(() => {})
  }

  /** The holder handed the path back: whether it was the session's to hand back. */
  end (path: string, session: string): boolean {
    if (this.byPath.get(path)?.session !== session) return false
    this.byPath.delete(path)
    return true
  }

  /** Paths the server is recalling from the session. */
  recalledFrom (session: string): string[] {
    return [...this.byPath].filter(([, d]) => d.session === session && d.recalling).map(([path]) => path)
  }

  /** Forgets the delegations of sessions that are gone (ended, or ran out); the paths they held. */
  dropUnless (alive: (session: string) => boolean): string[] {
    const dropped: string[] = []
    for (const [path, delegation] of this.byPath) {
      if (alive(delegation.session)) continue
      this.byPath.delete(path)
      dropped.push(path)
    }
    return dropped
  }
}
