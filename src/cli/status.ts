import type { ClusterStatus } from '../shared/clusterStatus'

/*
 * `dfs status`: the cluster at a glance in a terminal, the same facts as the directory
 * server's status page. Exit status 0 when every file server is up and the lock server
 * answers, 2 when not (1 stays for a failure to ask at all), so scripts and monitoring can
 * use it.
 */

export const STATUS_DEGRADED_EXIT = 2

function bytes (value: number | null): string {
  if (value === null) return '-'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let n = value
  let unit = 0
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024
    unit++
  }
  return `${unit === 0 ? n : n.toFixed(1)} ${units[unit]}`
}

function age (ms: number | null): string {
  if (ms === null) return '-'
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min`
  return `${(ms / 3_600_000).toFixed(1)} h`
}

/** Columns padded to the widest cell; the last column is not padded. */
function table (header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].map((l) => `  ${l}\n`).join('')
}

/** The report, and what is wrong (empty: healthy). */
export function formatStatus (status: ClusterStatus): { text: string, problems: string[] } {
  const problems: string[] = []
  const draining = status.servers.filter((s) => s.state === 'draining').length
  let text = `file servers (${status.servers.filter((s) => s.state === 'up').length} of ${status.servers.length} up${draining > 0 ? `, ${draining} draining` : ''})\n`
  if (status.servers.length === 0) {
    text += '  (none registered)\n'
    problems.push('no file server has registered')
  } else {
    text += table(['ID', 'STATE', 'ADDRESS', 'FREE', 'SIZE', 'FILES', 'CLIENTS', 'LAST HEARTBEAT'], status.servers.map((s) => [
      String(s.machineId), s.state, s.url, bytes(s.freeBytes), bytes(s.totalBytes), String(s.files), s.clients === null ? '-' : String(s.clients),
      s.sinceHeartbeatMs === null ? 'never' : `${age(s.sinceHeartbeatMs)} ago`
    ]))
  }
  // A draining server is in service for reads: not a problem.
  for (const s of status.servers) if (s.state === 'down') problems.push(`file server ${s.machineId} at ${s.url} is down`)
  if (status.locks === null) {
    text += `locks held: unknown (${status.locksError ?? 'the lock server did not answer'})\n`
    problems.push(`the lock server did not answer: ${status.locksError ?? ''}`)
  } else {
    text += `locks held (${status.locks.length})\n`
    if (status.locks.length > 0) {
      text += table(['PATH', 'HOLDER', 'AGE', 'EXPIRES IN'], status.locks.map((l) => [l.path, l.holder, age(l.heldForMs), age(l.expiresInMs)]))
    }
  }
  if (status.clients.length > 0) {
    text += `clients (${status.clients.length})\n`
    text += table(['CLIENT', 'FILE SERVERS'], status.clients.map((c) => [c.clientId, c.machineIds.join(', ')]))
  }
  if (status.problems.length > 0) {
    text += 'latest problems\n'
    for (const p of status.problems.slice(0, 5)) text += `  ${new Date(p.atMs).toISOString()}  ${p.message}\n`
  }
  return { text, problems }
}
