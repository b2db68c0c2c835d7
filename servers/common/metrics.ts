import { Counter, Gauge, Histogram } from 'prom-client'
import { metricsRegistry } from '../../src/shared/metrics'

/*
 * The servers' Prometheus metrics (README.md, "Metrics", lists them). Names follow the
 * Prometheus conventions: a dfs_ prefix, base units (seconds, bytes), _total on counters.
 * No label carries a path, a client id or a token: routes are Express route patterns
 * (/servers/:machineId/heartbeat), never the path asked for.
 */

const registers = [metricsRegistry]

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export type ServiceName = 'directory' | 'lock' | 'file'

const requests = new Counter({
  name: 'dfs_http_requests_total',
  help: 'HTTP requests answered, by service, method, route pattern and status code',
  labelNames: ['service', 'method', 'route', 'status'] as const,
  registers
})

const requestSeconds = new Histogram({
  name: 'dfs_http_request_duration_seconds',
  help: 'Time from a request\'s arrival until its answer was sent, by service, method and route pattern',
  labelNames: ['service', 'method', 'route'] as const,
  buckets: LATENCY_BUCKETS,
  registers
})

const receivedBytes = new Counter({
  name: 'dfs_http_received_bytes_total',
  help: 'Bytes received on the wire for requests (headers and body), by service and route pattern',
  labelNames: ['service', 'route'] as const,
  registers
})

const sentBytes = new Counter({
  name: 'dfs_http_sent_bytes_total',
  help: 'Bytes sent on the wire for answers (headers and body), by service and route pattern',
  labelNames: ['service', 'route'] as const,
  registers
})

export interface ObservedRequest {
  service: ServiceName
  method: string
  route: string
  status: number
  seconds: number
  receivedBytes: number
  sentBytes: number
}

export function recordRequest (r: ObservedRequest): void {
  requests.inc({ service: r.service, method: r.method, route: r.route, status: String(r.status) })
  requestSeconds.observe({ service: r.service, method: r.method, route: r.route }, r.seconds)
  if (r.receivedBytes > 0) receivedBytes.inc({ service: r.service, route: r.route }, r.receivedBytes)
  if (r.sentBytes > 0) sentBytes.inc({ service: r.service, route: r.route }, r.sentBytes)
}

const fsyncSeconds = new Histogram({
  name: 'dfs_fsync_duration_seconds',
  help: 'Time an fsync or fdatasync took, by what was synced (file, state, journal, versions, folder)',
  labelNames: ['what'] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers
})

/** Times one fsync: `await timedSync('file', handle.sync())`. */
export async function timedSync<T> (what: string, sync: Promise<T>): Promise<T> {
  const end = fsyncSeconds.startTimer({ what })
  try {
    return await sync
  } finally {
    end()
  }
}

type GaugeSource<L extends string> = () => Array<{ labels: Partial<Record<L, string>>, value: number }> | Promise<Array<{ labels: Partial<Record<L, string>>, value: number }>>

/** Times one synchronous fsync (the lock journal's). */
export function timedSyncCall (what: string, sync: () => void): void {
  const end = fsyncSeconds.startTimer({ what })
  try {
    sync()
  } finally {
    end()
  }
}

/**
 * A gauge whose value is read from live objects at scrape time: each server adds a source
 * and removes it when it closes, so the servers of an in-process cluster add up and a
 * closed one drops out.
 */
class SourcedGauge<L extends string> {
  private readonly sources = new Set<GaugeSource<L>>()

  constructor (name: string, help: string, labelNames: L[]) {
    const sources = this.sources
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers,
      async collect () {
        const read = await Promise.allSettled([...sources].map(async (source) => await source()))
        this.reset()
        for (const outcome of read) {
          // A source that cannot be read now (a disk gone) is left out of this scrape.
          if (outcome.status === 'fulfilled') for (const { labels, value } of outcome.value) this.inc(labels, value)
        }
      }
    })
  }

  /** Adds a source of values; the function returned removes it. */
  add (source: GaugeSource<L>): () => void {
    this.sources.add(source)
    return () => { this.sources.delete(source) }
  }
}

/** The directory's view of its file servers. */
export const fileServersGauge = new SourcedGauge('dfs_file_servers', 'File servers registered with the directory server, by state (up, draining or down)', ['state'])

/** Live leases on the lock server. */
export const leasesHeldGauge = new SourcedGauge('dfs_lock_leases_held', 'Leases the lock server holds now (live, not lapsed)', [])

/** Acquires parked on the lock server, waiting for a key now. */
export const lockWaitersGauge = new SourcedGauge('dfs_lock_waiters', 'Acquires waiting on the lock server for a key now', [])

/** Free and total space of each file server's root, read at scrape time. */
export const fileServerFreeBytes = new SourcedGauge('dfs_file_server_free_bytes', 'Free space on the disk of a file server\'s root, by machine id', ['machine_id'])
export const fileServerSizeBytes = new SourcedGauge('dfs_file_server_size_bytes', 'Size of the disk of a file server\'s root, by machine id', ['machine_id'])

export const lockWaitSeconds = new Histogram({
  name: 'dfs_lock_wait_seconds',
  help: 'Time an acquire spent on the lock server until it was granted or refused (outcome granted or refused)',
  labelNames: ['outcome'] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers
})

export const lockHoldSeconds = new Histogram({
  name: 'dfs_lock_hold_seconds',
  help: 'Time a lease was held, from its grant to its release (outcome released), its lapse (outcome expired) or its end by the server, its delegated holder gone (outcome abandoned)',
  labelNames: ['outcome'] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  registers
})
