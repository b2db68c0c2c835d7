import diagnostics from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'

/**
 * Counts the HTTP requests every server in this process receives, by method and route
 * ("GET /lookup"), so the benchmark can say how many round trips one operation on the
 * mount costs. Node publishes each incoming request on this channel; nothing in the
 * servers changes.
 */
export class RequestCounter {
  private readonly counts = new Map<string, number>()
  private readonly onRequest = (message: unknown): void => {
    const { request } = message as { request: IncomingMessage }
    const key = `${request.method ?? '?'} ${(request.url ?? '').split('?')[0]}`
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
  }

  start (): void {
    diagnostics.subscribe('http.server.request.start', this.onRequest)
  }

  stop (): void {
    diagnostics.unsubscribe('http.server.request.start', this.onRequest)
  }

  snapshot (): Map<string, number> {
    return new Map(this.counts)
  }

  /** Requests per route between two snapshots, divided by `per`, busiest route first. */
  static since (before: Map<string, number>, after: Map<string, number>, per: number): Array<[string, number]> {
    const rows: Array<[string, number]> = []
    for (const [key, count] of after) {
      const delta = count - (before.get(key) ?? 0)
      if (delta > 0) rows.push([key, delta / per])
    }
    return rows.sort((a, b) => b[1] - a[1])
  }
}
