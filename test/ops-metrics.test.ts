import path from 'node:path'
import t from 'tap'
import { serveMetrics } from '../src/shared/metrics'
import { Headers } from '../src/shared/protocol'
import { LockApi } from '../src/shared/api'
import { Transport } from '../src/shared/transport'
import { onEveryRequest } from '../servers/common/observe'
import { startTestCluster } from './helpers/cluster'
import { startProcessCluster } from './helpers/processCluster'
import { run } from './helpers/mount'
import { runNode } from './helpers/processes'
import { waitFor } from './helpers/waitFor'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

/** Prometheus text: every sample as `name{labels}` -> value; throws on a line that is not the format. */
function parseMetrics (text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* /.test(line)) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.e+-]+|NaN|Nan|\+Inf|-Inf)$/.exec(line)
    if (match === null) throw new Error(`not Prometheus text: ${line}`)
    samples.set(match[1], Number(match[2]))
  }
  return samples
}

async function scrape (url: string): Promise<{ text: string, samples: Map<string, number> }> {
  const res = await fetch(url)
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}`)
  const text = await res.text()
  return { text, samples: parseMetrics(text) }
}

const at = (samples: Map<string, number>, key: string): number => samples.get(key) ?? 0

t.test('the servers\' /metrics parse as Prometheus text and move with what a client does', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'first\n' }])
  const metrics = await serveMetrics({ host: '127.0.0.1', port: 0 })
  t.teardown(metrics.close)
  const client = cluster.client()
  const before = await scrape(metrics.url)

  await client.append('/notes/todo.txt', 'second\n')
  t.equal((await client.readFile('/notes/todo.txt')).toString(), 'first\nsecond\n')
  t.equal((await client.readFile('/notes/todo.txt')).toString(), 'first\nsecond\n', 'the second read is answered from the cache')
  const lock = new LockApi(new Transport('lock server', cluster.lock.url, undefined, cluster.credentials.caller))
  const lease = await lock.acquire({ path: '/notes/todo.txt', owner: 'metrics-test', ttlMs: 30_000 })
  const holding = await scrape(metrics.url)
  await lock.release('/notes/todo.txt', leaseCredentialOf(lease))
  const after = await scrape(metrics.url)

  const appends = 'dfs_http_requests_total{service="file",method="POST",route="/append",status="200"}'
  t.equal(at(after.samples, appends) - at(before.samples, appends), 1, 'one append answered 200, counted under its route pattern')
  const appendLatency = 'dfs_http_request_duration_seconds_count{service="file",method="POST",route="/append"}'
  t.equal(at(after.samples, appendLatency) - at(before.samples, appendLatency), 1, 'and its latency observed once')
  const sent = 'dfs_http_sent_bytes_total{service="file",route="/content"}'
  t.ok(at(after.samples, sent) - at(before.samples, sent) >= 'first\nsecond\n'.length, 'the download\'s bytes are counted as sent')
  const received = 'dfs_http_received_bytes_total{service="file",route="/append"}'
  t.ok(at(after.samples, received) - at(before.samples, received) >= 'second\n'.length, 'the append\'s bytes are counted as received')
  const fsyncs = 'dfs_fsync_duration_seconds_count{what="file"}'
  t.ok(at(after.samples, fsyncs) > at(before.samples, fsyncs), 'the append\'s fsync was timed')
  t.equal(at(after.samples, 'dfs_client_cache_lookups_total{result="miss"}') - at(before.samples, 'dfs_client_cache_lookups_total{result="miss"}'), 1, 'the first read missed the cache')
  t.equal(at(after.samples, 'dfs_client_cache_lookups_total{result="hit"}') - at(before.samples, 'dfs_client_cache_lookups_total{result="hit"}'), 1, 'the second hit it')
  t.ok(at(after.samples, 'dfs_client_cache_bytes') >= 'first\nsecond\n'.length, 'the cache\'s bytes are shown')
  t.equal(at(holding.samples, 'dfs_lock_leases_held'), 1, 'the lease the test holds is counted')
  t.equal(at(after.samples, 'dfs_lock_leases_held'), 0, 'and no longer once released')
  t.equal(at(after.samples, 'dfs_lock_hold_seconds_count{outcome="released"}') - at(before.samples, 'dfs_lock_hold_seconds_count{outcome="released"}'), 1, 'its hold time was observed')
  t.equal(at(after.samples, 'dfs_lock_wait_seconds_count{outcome="granted"}') - at(before.samples, 'dfs_lock_wait_seconds_count{outcome="granted"}'), 1,
    'the test\'s wait for its lock was observed (an append takes none)')
  t.equal(at(after.samples, 'dfs_file_servers{state="up"}'), 1)
  t.equal(at(after.samples, 'dfs_file_servers{state="down"}'), 0)
  t.ok(after.samples.has('dfs_file_servers{state="draining"}'), 'draining is a state of its own')
  t.equal(at(after.samples, 'dfs_file_servers{state="draining"}'), 0)
  t.ok(at(after.samples, `dfs_file_server_free_bytes{machine_id="${cluster.fileServers[0].machineId}"}`) > 0, 'free space per file server')
  t.notMatch(after.text, /todo\.txt|notes/, 'no label carries a path')
  t.notMatch(after.text, /metrics-test/, 'nor a lock holder')
  t.notMatch(after.text, /route="\/[^"]*\?/, 'routes are patterns, never with a query')
  t.match(after.text, /route="\/servers\/:machineId\/files"/, 'a route with a parameter (the join\'s report) shows its pattern')
})

t.test('a request id sent to one server is carried to the servers it calls', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'first\n' }])
  const seen: Array<{ requestId: string, route: string }> = []
  onEveryRequest((done) => seen.push(done))
  t.teardown(() => onEveryRequest(null))
  const res = await fetch(`${cluster.fileServers[0].url}/create?path=/notes/new.txt&kind=file`, { method: 'POST', headers: { [Headers.requestId]: 'trace-42', authorization: `Bearer ${cluster.credentials.write}` } })
  t.equal(res.status, 200, await res.clone().text())
  t.equal(res.headers.get(Headers.requestId), 'trace-42', 'the answer names the request id')
  const routes = seen.filter((s) => s.requestId === 'trace-42').map((s) => s.route).sort()
  t.same(routes, ['/create', '/servers/:machineId/entries'], 'the directory saw the same id (a create makes no lock key: keys are implicit)')
  // A write under a lease: the file server checks the lease with the lock server under the same id.
  const held = await cluster.client().locks.acquire('/notes/new.txt')
  t.teardown(async () => await held.release().catch(() => {}))
  const stored = await fetch(`${cluster.fileServers[0].url}/content?path=/notes/new.txt`, {
    method: 'PUT',
    body: 'stored\n',
    headers: { [Headers.requestId]: 'trace-43', authorization: `Bearer ${cluster.credentials.write}`, [Headers.lockToken]: leaseCredentialOf(held.lease), 'content-type': 'application/octet-stream' }
  })
  t.equal(stored.status, 200, await stored.clone().text())
  const storeRoutes = seen.filter((s) => s.requestId === 'trace-43').map((s) => s.route).sort()
  t.ok(storeRoutes.includes('/content') && storeRoutes.includes('/locks/check'), `the lock server saw the store's id: ${storeRoutes.join(', ')}`)
  const forged = await fetch(`${cluster.fileServers[0].url}/stats`, { headers: { [Headers.requestId]: 'bad id with spaces', authorization: `Bearer ${cluster.credentials.read}` } })
  t.match(forged.headers.get(Headers.requestId), /^[0-9a-f]{16}$/, 'an id that is not plain is replaced')
})

t.test('server processes and a mount serve /metrics on their own address', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/todo.txt': 'first\n' }] })
  const metricsOf = (output: string): string => {
    const url = /metrics for Prometheus at (http:\/\/\S+)/.exec(output)?.[1]
    if (url === undefined) throw new Error(`no metrics address in:\n${output}`)
    return url
  }
  for (const server of [cluster.directory, cluster.lock, cluster.files[0]]) {
    const url = metricsOf(server.output())
    t.not(new URL(url).port, String(server.port), `${server.name}: metrics are apart from the service's port`)
    t.equal((await fetch(`${server.url}/health`)).status, 200)
    const { samples } = await scrape(url)
    t.ok([...samples.keys()].some((k) => k.startsWith(`dfs_http_requests_total{service="${server.kind}"`)), `${server.name} counts its requests`)
    t.ok(samples.has('process_resident_memory_bytes'), `${server.name} shows process metrics`)
  }
  const other = await fetch(metricsOf(cluster.directory.output()).replace('/metrics', '/status'))
  t.equal(other.status, 404, 'the metrics address serves nothing else')

  const mount = await cluster.mount(['--metrics', '127.0.0.1:0'])
  const url = metricsOf(mount.output())
  const before = await scrape(url)
  const cat = await run('cat', [mount.at('/notes/todo.txt')])
  t.equal(cat.stdout, 'first\n', cat.stderr)
  const after = await waitFor('the mount to count the read', async () => {
    const now = await scrape(url)
    const moved = at(now.samples, 'dfs_client_cache_lookups_total{result="miss"}') + at(now.samples, 'dfs_client_cache_lookups_total{result="hit"}') >
      at(before.samples, 'dfs_client_cache_lookups_total{result="miss"}') + at(before.samples, 'dfs_client_cache_lookups_total{result="hit"}')
    return moved && now
  })
  t.ok(after.samples.has('dfs_client_cache_bytes'), 'the mount shows its cache')
  t.notOk([...after.samples.keys()].some((k) => k.startsWith('dfs_http_requests_total')), 'a mount serves no routes of its own')
})

t.test('a bad --metrics address is one line and a failure exit', async (t) => {
  const served = await runNode(['bin/dfs-serve', 'lock', '--port', '0', '--state-dir', path.join(t.testdirName, 'lock'), '--cluster-key', path.join(t.testdirName, 'cluster.key'), '--metrics', 'nowhere:port'], { timeoutMs: 15_000 })
  t.not(served.code, 0)
  t.equal(served.stderr, 'dfs-serve: not a metrics address: "nowhere:port" (give HOST:PORT, PORT or off)\n')
})
