import type {
  AdvisoryEndAnswer, AdvisoryLockAnswer, AdvisoryLockRequest, AdvisoryReclaimedAnswer, AdvisoryReclaimedRequest, AdvisoryReturnAnswer, AdvisoryReturnRequest,
  AdvisorySessionAnswer, AdvisorySessionRequest, AdvisoryStatus, AdvisoryTestAnswer, AdvisoryTestRequest
} from '../advisoryLockProtocol'
import { AdvisoryRoutes } from '../advisoryLockProtocol'
import type { Transport } from '../transport'

/** The lock server's advisory locks: the fcntl and flock locks programs take through a mount. */
export class AdvisoryLockApi {
  constructor (readonly transport: Transport) {}

  /**
   * Takes, changes or gives back a lock; LOCKED once `waitMs` has passed with a conflicting
   * lock in place (the server holds the call that long, so the deadline grows by as much).
   * `signal` hangs up the call, and the server then grants nothing.
   */
  async lock (request: AdvisoryLockRequest, signal?: AbortSignal): Promise<AdvisoryLockAnswer> {
    return await this.transport.json({
      method: 'POST', route: AdvisoryRoutes.lock, body: request, timeoutMs: (request.waitMs ?? 0) + this.transport.timeoutMs, signal
    })
  }

  /** The lock that would keep this one from being granted now, if any (fcntl F_GETLK). */
  async test (request: AdvisoryTestRequest): Promise<AdvisoryTestAnswer> {
    return await this.transport.json({ method: 'POST', route: AdvisoryRoutes.test, body: request })
  }

  async renew (request: AdvisorySessionRequest): Promise<AdvisorySessionAnswer> {
    return await this.transport.json({ method: 'POST', route: AdvisoryRoutes.renew, body: request })
  }

  /** Gives back every lock of the session at once (a mount that unmounts). */
  async end (session: string): Promise<AdvisoryEndAnswer> {
    const body: AdvisorySessionRequest = { session }
    return await this.transport.json({ method: 'POST', route: AdvisoryRoutes.end, body })
  }

  /** Hands a delegated path's locks back to the server (its recall, or the mount can no longer hear one). */
  async giveBack (request: AdvisoryReturnRequest): Promise<AdvisoryReturnAnswer> {
    return await this.transport.json({ method: 'POST', route: AdvisoryRoutes.return, body: request })
  }

  /** Says the mount has handed back all it held before the server's restart: the server's grace need not wait for it any more. */
  async reclaimed (request: AdvisoryReclaimedRequest): Promise<AdvisoryReclaimedAnswer> {
    return await this.transport.json({ method: 'POST', route: AdvisoryRoutes.reclaimed, body: request })
  }

  async status (path: string): Promise<AdvisoryStatus> {
    return await this.transport.json({ method: 'GET', route: AdvisoryRoutes.status, query: { path } })
  }
}
