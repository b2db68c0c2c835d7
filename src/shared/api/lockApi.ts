import type {
  AcquireRequest, CheckAnswer, CreateKeysAnswer, CreateKeysRequest, DeleteKeyAnswer, HealthAnswer, HeldUnderAnswer, LeaseRequest, LockLease,
  LockStatus, ReleaseAnswer, RemoveKeysAnswer, RemoveKeysRequest, RenewAnswer
} from '../protocol'
import { Headers, LockRoutes } from '../protocol'
import type { LeaseCredential } from '../leaseCredential'
import type { Transport } from '../transport'
import { CallbackCalls } from './callbackCalls'

/** The lock server's API: one writer per file, as a lease with a fencing token. */
export class LockApi {
  /** The client's event channel, lease renewal and break acknowledgements for delegations (delegationKey) here. */
  readonly callbackCalls: CallbackCalls

  constructor (readonly transport: Transport) {
    this.callbackCalls = new CallbackCalls(transport, LockRoutes)
  }

  async health (): Promise<HealthAnswer> {
    return await this.transport.json({ method: 'GET', route: LockRoutes.health })
  }

  async createKeys (paths: string[]): Promise<CreateKeysAnswer> {
    const body: CreateKeysRequest = { paths }
    return await this.transport.json({ method: 'POST', route: LockRoutes.keys, body })
  }

  /**
   * `whenFree`: a lease on the key stays with its holder, and the key goes when it ends.
   * `ifFree`: the key goes only if no lease holds it (`deleted` says whether it went).
   */
  async deleteKey (path: string, opts: { whenFree?: boolean, ifFree?: boolean } = {}): Promise<DeleteKeyAnswer> {
    return await this.transport.json({
      method: 'DELETE',
      route: LockRoutes.keys,
      query: { path, whenFree: opts.whenFree === true ? true : undefined, ifFree: opts.ifFree === true ? true : undefined }
    })
  }

  async removeKeys (paths: string[]): Promise<RemoveKeysAnswer> {
    const body: RemoveKeysRequest = { paths }
    return await this.transport.json({ method: 'POST', route: LockRoutes.removeKeys, body })
  }

  /**
   * A lease on the path's key, or LOCKED once `waitMs` has passed with the key held by
   * someone else; the server holds the call that long, so the deadline grows by as much.
   */
  async acquire (request: AcquireRequest): Promise<LockLease> {
    return await this.transport.json({
      method: 'POST', route: LockRoutes.acquire, body: request, timeoutMs: (request.waitMs ?? 0) + this.transport.timeoutMs
    })
  }

  async renew (path: string, credential: LeaseCredential): Promise<RenewAnswer> {
    const body: LeaseRequest = { path, credential }
    return await this.transport.json({ method: 'POST', route: LockRoutes.renew, body })
  }

  async release (path: string, credential: LeaseCredential): Promise<ReleaseAnswer> {
    const body: LeaseRequest = { path, credential }
    return await this.transport.json({ method: 'POST', route: LockRoutes.release, body })
  }

  /** Whether the credential (leaseCredential.ts) is the live lease on the path: LEASE_INVALID if not, NOT_FOUND without a key. */
  async check (path: string, credential: LeaseCredential): Promise<CheckAnswer> {
    return await this.transport.json({ method: 'GET', route: LockRoutes.check, query: { path }, headers: { [Headers.lockToken]: credential } })
  }

  async status (path: string): Promise<LockStatus> {
    return await this.transport.json({ method: 'GET', route: LockRoutes.status, query: { path } })
  }

  /** The held keys of the files below a folder (at any depth). */
  async heldUnder (folder: string): Promise<HeldUnderAnswer> {
    return await this.transport.json({ method: 'GET', route: LockRoutes.heldUnder, query: { path: folder } })
  }
}
