import type { Express, Request } from 'express'
import { delegationKey, Headers, LockRoutes } from '../../src/shared/protocol'
import type { DelegationKind } from '../../src/shared/protocol'
import { CallbackTable } from '../file/callbacks'
import { mountCallbackRoutes } from '../file/callbackRoutes'
import { grantCaller, subjectOf, writerOf } from '../file/callerClient'
import { DelegatedLeases } from './delegatedLeases'
import type { AbandonedLease } from './delegatedLeases'

/**
 * Delegations, on the lock server: something this server would otherwise decide on every
 * request (a file's write lease, its advisory locks) left with one client for a while, as a
 * callback on a key (delegationKey in protocol.ts: `lease:PATH`, `advisory:PATH`). When
 * someone else needs the key, the server recalls it: it breaks the callback over the
 * holder's event channel and waits until the holder has given back what it held and
 * acknowledged, or until the holder's callback lease has run out.
 *
 * The leases, channel, breaks and acknowledgements are the file servers' own
 * (servers/file/callbacks.ts, as the directory's folder callbacks use them), under the same
 * routes (LockRoutes.events, renewCallbacks, acknowledgeBreak). A client id is bound to the
 * credential subject that first used it: one client cannot hold or acknowledge another's.
 */
export class Delegations {
  readonly table: CallbackTable
  /** Per path, the lease last granted with its delegation (until released, ended or the key removed), and its client. */
  private readonly leases: DelegatedLeases

  constructor (leaseMs: number) {
    this.table = new CallbackTable(leaseMs)
    this.leases = new DelegatedLeases(this.table)
  }

  /** The event channel, lease renewal and break acknowledgement routes. */
  mount (app: Express): void {
    mountCallbackRoutes(app, this.table, LockRoutes)
  }

  /**
   * Delegates the key to the caller's client (X-Dfs-Client), if that client has a live lease
   * and an open channel here, and says whether it did. Grant before deciding what the
   * delegation covers, so a recall that comes in between is not missed.
   */
  grant (req: Request, key: string): boolean {
    return grantCaller(this.table, req, key)
  }

  /** The caller's client id when it is a live client of the caller's own (a recall spares it), else undefined. */
  requester (req: Request): string | undefined {
    return writerOf(this.table, req)
  }

  /**
   * Recalls every delegation of the key but the requester's own, and waits until each
   * holder has acknowledged (having given back what it held) or its callback lease has run
   * out (a holder that died or was cut off delays the caller by at most that).
   */
  async recall (key: string, requester: string | undefined): Promise<void> {
    await this.table.breakAll(key, { path: key, version: null }, requester)
  }

  /** Recalls every delegation of the kind on a path below the folder (at any depth), from every holder. */
  async recallUnder (kind: DelegationKind, folder: string): Promise<void> {
    // breakUnder takes the keys that start with its folder and '/': the root's is the kind's prefix alone.
    await this.table.breakUnder(folder === '/' ? `${kind}:` : delegationKey(kind, folder), undefined)
  }

  /** The lease with this token on the path was granted with its delegation, to the caller's client (grant said yes). */
  leaseDelegated (req: Request, path: string, token: number): void {
    const client = req.get(Headers.clientId)
    if (client !== undefined) this.leases.granted(path, token, client, subjectOf(req))
  }

  /** Whether the lease with this token on the path was granted with its delegation (GET /locks/check says so). */
  isLeaseDelegated (path: string, token: number): boolean {
    return this.leases.isDelegated(path, token)
  }

  /** How long a file server may trust a check of this delegated lease that found it `expiresInMs` from its end (CheckAnswer.trustForMs). */
  vouchFor (path: string, token: number, expiresInMs: number): number {
    return this.leases.vouch(path, token, expiresInMs)
  }

  /** The path's delegated lease, if its client is gone and it may be ended now (delegatedLeases.ts). */
  abandonedLease (path: string): AbandonedLease | undefined {
    return this.leases.abandoned(path)
  }

  /** The path's lease was released or ended, or its key removed. */
  leaseEnded (path: string): void {
    this.leases.ended(path)
  }

  closeAll (): void {
    this.table.closeAll()
  }
}
