import type { LockApi } from '../shared/api'
import type { DelegationKind } from '../shared/protocol'
import { parseDelegationKey } from '../shared/protocol'
import { CallbackRegistry } from './callbacks'

/**
 * After the channel was lost, it is opened again this soon even if nothing asks for a
 * delegation: the lock server ends the delegated leases of a client it has not heard from
 * for a callback lease or two (servers/lock/delegatedLeases.ts), and a lease still in use
 * here (a store under way) must not be one of them. A little later than CallbackRegistry's
 * own wait between attempts (1 s), which makes an earlier try a no-op.
 */
const REOPEN_AFTER_MS = 1_200

/** What a kind of delegation does when the lock server takes it back. */
export interface DelegationHandler {
  /** The lock server recalls the delegation on this path: give back what is held, then return (the recall is acknowledged after). */
  recall: (path: string) => Promise<void>
  /** Every delegation of this client stopped counting (the channel closed, or the lock server forgot this client): give back all. */
  lost: () => void
}

/**
 * This client's event channel to the lock server (servers/lock/delegations.ts), over which
 * the lock server recalls what it delegated: a break of `lease:PATH` or `advisory:PATH`
 * goes to the handler of that kind, and is acknowledged once the handler has given the
 * delegation back. A delegation may be asked for only while `ready()`; the lock server says
 * in its answer whether it granted one.
 */
export class DelegationChannel {
  private readonly registry: CallbackRegistry
  private readonly handlers = new Map<DelegationKind, DelegationHandler>()
  private closed = false

  /** `clientId`: the client's other registries' (the lock server grants to the X-Dfs-Client its calls carry). */
  constructor (private readonly api: LockApi, clientId: string, private readonly log: (line: string) => void = () => {}) {
    this.registry = new CallbackRegistry(log, undefined, clientId, {
      onBreak: async (key) => await this.recalled(key),
      onVoid: () => {
        for (const handler of this.handlers.values()) handler.lost()
        this.reopenSoon()
      }
    })
  }

  /** The one handler of a kind of delegation. */
  handle (kind: DelegationKind, handler: DelegationHandler): void {
    this.handlers.set(kind, handler)
  }

  /**
   * Whether a delegation may be asked for now: the channel is open and its lease runs. The
   * first question opens the channel in the background (false until it is open).
   */
  ready (): boolean {
    return this.registry.ready(this.api)
  }

  /** Ends the channel: every handler is told its delegations are lost. */
  close (): void {
    this.closed = true
    this.registry.close()
  }

  /** Opens the channel again after a loss, so the lock server knows this client is alive (each failed try is a loss too). */
  private reopenSoon (): void {
    if (this.closed) return
    setTimeout(() => { if (!this.closed) this.ready() }, REOPEN_AFTER_MS).unref()
  }

  private async recalled (key: string): Promise<void> {
    const delegation = parseDelegationKey(key)
    if (delegation === null) return
    const handler = this.handlers.get(delegation.kind)
    if (handler === undefined) {
      this.log(`the lock server recalled ${key}, which nothing here holds`)
      return
    }
    await handler.recall(delegation.path)
  }
}
