import diagnostics from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'

/**
 * Counts the requests one in-process server receives, by `METHOD /route`, as they start
 * (diagnostics channel http.server.request.start): the servers of startTestCluster run in
 * the test's process, the mounts in children, so every request of a mount is seen here.
 */
export class ServerRequests {
  private readonly seen: string[] = []
  private readonly onRequest = (message: unknown): void => {
    const { request } = message as { request: IncomingMessage }
    if (request.socket.localPort !== this.port) return
    this.seen.push(`${request.method ?? '?'} ${(request.url ?? '').split('?')[0]}`)
  }

  /** `server`: the URL of the server whose requests are counted. */
  constructor (server: string) {
    this.port = Number(new URL(server).port)
    diagnostics.subscribe('http.server.request.start', this.onRequest)
  }

  private readonly port: number

  stop (): void {
    diagnostics.unsubscribe('http.server.request.start', this.onRequest)
  }

  /** A point to count from. */
  mark (): number {
    return this.seen.length
  }

  /** Requests by route since the mark. */
  since (from: number): Record<string, number> {
    const counts: Record<string, number> = {}
    for (const route of this.seen.slice(from)) counts[route] = (counts[route] ?? 0) + 1
    return counts
  }
}
