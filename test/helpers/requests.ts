import diagnostics from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'
import { Headers } from '../../src/shared/protocol'

/**
 * The requests the servers of this process receive (a cluster started in-process), counted
 * where Node publishes them: a mount's requests carry its client id, the servers' own among
 * themselves do not. Background traffic (health probes, heartbeats, callback renewals and
 * acknowledgements, the event channel) is left out: it is not what an operation costs.
 */
const BACKGROUND = new Set(['GET /health', 'GET /events', 'POST /callbacks/renew', 'POST /callbacks/ack'])

export interface SeenRequest {
  /** Method and route, e.g. "GET /lookup". */
  route: string
  /** The `path` in its query, if any (e.g. the name looked up). */
  path: string | null
  fromClient: boolean
}

export class Requests {
  private readonly seen: SeenRequest[] = []
  /** Event channels opened (GET /events), left out of `seen`: a mount takes callbacks only once its channel to the server is open. */
  eventChannels = 0
  private readonly onRequest = (message: unknown): void => {
    const { request } = message as { request: IncomingMessage }
    const [route, query] = (request.url ?? '').split('?')
    const key = `${request.method ?? '?'} ${route}`
    if (key === 'GET /events') this.eventChannels++
    if (BACKGROUND.has(key) || key.endsWith('/heartbeat')) return
    this.seen.push({ route: key, path: new URLSearchParams(query ?? '').get('path'), fromClient: request.headers[Headers.clientId] !== undefined })
  }

  constructor () {
    diagnostics.subscribe('http.server.request.start', this.onRequest)
  }

  stop (): void {
    diagnostics.unsubscribe('http.server.request.start', this.onRequest)
  }

  /** Requests by route since `from` (an index from `mark`), from the mount or from the servers. */
  since (from: number, fromClient: boolean): Map<string, number> {
    const counts = new Map<string, number>()
    for (const { route, fromClient: client } of this.seen.slice(from)) {
      if (client === fromClient) counts.set(route, (counts.get(route) ?? 0) + 1)
    }
    return counts
  }

  /** The requests themselves since `from`, from the mount or from the servers. */
  listSince (from: number, fromClient: boolean): SeenRequest[] {
    return this.seen.slice(from).filter((r) => r.fromClient === fromClient)
  }

  mark (): number {
    return this.seen.length
  }
}

export function total (counts: Map<string, number>): number {
  return [...counts.values()].reduce((sum, n) => sum + n, 0)
}

export const show = (counts: Map<string, number>): string => JSON.stringify(Object.fromEntries(counts))
