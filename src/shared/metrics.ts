import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Registry } from 'prom-client'
import { DEFAULT_HOST } from './defaults'

/**
 * The one Prometheus registry of this process: the servers' metrics (servers/common/metrics.ts)
 * and the client's (src/client/metrics.ts) register here, and serveMetrics() shows it. One per
 * process, not per server: an in-process cluster (dfs-serve demo) is one scrape target whose
 * series carry a `service` label.
 */
export const metricsRegistry = new Registry()

let defaultsCollected = false

/** Where metrics are served: a host and a port (0 picks a free one). */
export interface MetricsAddress {
  host: string
  port: number
}

/** Not a host:port: the CLIs show the message as one line. */
export class MetricsAddressError extends Error {}

/**
 * "127.0.0.1:9170", ":9170" (loopback), "9170" (loopback), "[::1]:9170", "0.0.0.0:9170";
 * "off" is null: no metrics listener.
 */
export function parseMetricsAddress (text: string): MetricsAddress | null {
  const value = text.trim()
  if (value === 'off' || value === 'false' || value === 'none') return null
  const match = /^(?:(\[[^\]]+\]|[^:]*):)?(\d+)$/.exec(value)
  const port = match === null ? NaN : Number(match[2])
  if (match === null || !Number.isSafeInteger(port) || port > 65535) {
    throw new MetricsAddressError(`not a metrics address: "${text}" (give HOST:PORT, PORT or off)`)
  }
  const host = (match[1] ?? '').replace(/^\[(.*)\]$/, '$1')
  return { host: host === '' ? DEFAULT_HOST : host, port }
}

/**
 * A server's default metrics address: loopback, on its own port plus 2100 (7070 gives 9170),
 * or a free port when the server itself took one (port 0, as tests do).
 */
export function defaultMetricsAddress (serverPort: number): MetricsAddress {
  const port = serverPort === 0 || serverPort + 2100 > 65535 ? 0 : serverPort + 2100
  return { host: DEFAULT_HOST, port }
}

export interface MetricsEndpoint {
  /** http://host:port/metrics */
  url: string
  close: () => Promise<void>
}

/**
 * Serves GET /metrics (Prometheus text) on its own listener, apart from the service's
 * routes: Prometheus scrapes it without the service's credentials, and it stays on loopback
 * unless the operator opens it.
 */
export async function serveMetrics (address: MetricsAddress): Promise<MetricsEndpoint> {
  if (!defaultsCollected) {
    defaultsCollected = true
    collectDefaultMetrics({ register: metricsRegistry })
  }
  const server = http.createServer((req, res) => {
    const route = (req.url ?? '').split('?')[0]
    if (req.method !== 'GET' || route !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'only GET /metrics here' } }))
      return
    }
    metricsRegistry.metrics().then((text) => {
      res.writeHead(200, { 'Content-Type': metricsRegistry.contentType }).end(text)
    }, (err: unknown) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics failed: ${String(err)}\n`)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(address.port, address.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const host = address.host === '0.0.0.0' || address.host === '::' ? '127.0.0.1' : address.host.includes(':') ? `[${address.host}]` : address.host
  return {
    url: `http://${host}:${port}/metrics`,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    }
  }
}
