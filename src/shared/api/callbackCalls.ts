import type { Readable } from 'node:stream'
import type { CallbackAckRequest, CallbackRenewAnswer, CallbackRenewRequest } from '../protocol'
import type { Transport } from '../transport'

/** Where a server keeps its callback routes (file servers: files; the directory: folders). */
export interface CallbackRoutes {
  events: string
  renewCallbacks: string
  acknowledgeBreak: string
}

/** A client's calls for callbacks on one server: its event channel, lease renewal and break acknowledgements. */
export class CallbackCalls {
  constructor (private readonly transport: Transport, private readonly routes: CallbackRoutes) {}

  /** The client's event channel: `break` events (CallbackBreak) as server-sent events. */
  async events (clientId: string): Promise<Readable> {
    const res = await this.transport.send({ method: 'GET', route: this.routes.events, query: { client: clientId }, stream: true })
    return res.data as Readable
  }

  async renew (clientId: string): Promise<CallbackRenewAnswer> {
    const body: CallbackRenewRequest = { client: clientId }
    return await this.transport.json({ method: 'POST', route: this.routes.renewCallbacks, body })
  }

  async acknowledge (clientId: string, seq: number): Promise<void> {
    const body: CallbackAckRequest = { client: clientId, seq }
    await this.transport.json({ method: 'POST', route: this.routes.acknowledgeBreak, body })
  }
}
