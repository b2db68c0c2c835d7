import fc from 'fast-check'
import t from 'tap'
import { AdvisoryRoutes } from '../src/shared/advisoryLockProtocol'
import { StatusRoutes } from '../src/shared/clusterStatus'
import { DirectoryRoutes, FileRoutes, Headers, LockRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { diskImage } from './helpers/diskImage'
import { raw } from './helpers/wire'

/*
 * Generated requests to every route of every server: methods, query strings, headers and
 * bodies from fast-check, sent with no credential, a junk or tampered one, or a valid read
 * or write token. Never a 5xx, never a crash; a request that is refused leaves every byte of
 * every root as it was; and the cluster still serves at the end. Server credentials are left
 * out: a cluster member may legitimately forget servers and drop paths.
 * GET /events (file, directory and lock servers) is left out too: with a valid credential it
 * is a stream that never ends, and each one generated cost the run its 5 s timeout (its
 * binding to a subject is tested in security-callbacks).
 */

/** About a minute on a quiet machine; a busy one stops at the time limit, with what it sent by then. */
const RUNS = Number(process.env.DFS_FUZZ_RUNS ?? 2000)
const TIME_LIMIT_MS = 60_000

const routesOf = (table: Record<string, unknown>): string[] =>
  Object.values(table).map((route) => (typeof route === 'function' ? (route as (id: string) => string)(':id') : route as string))

const SERVERS = {
  directory: [...routesOf(DirectoryRoutes).filter((route) => route !== DirectoryRoutes.events), StatusRoutes.page, StatusRoutes.cluster],
  lock: [...routesOf(LockRoutes).filter((route) => route !== LockRoutes.events), ...routesOf(AdvisoryRoutes), StatusRoutes.heldLocks],
  file: [...routesOf(FileRoutes).filter((route) => route !== FileRoutes.events), StatusRoutes.clients]
} as const

/** Fields the servers read, so generated input often gets past the first check. */
const FIELDS = ['path', 'from', 'to', 'paths', 'owner', 'ttlMs', 'token', 'toToken', 'client', 'seq', 'kind', 'mode', 'target', 'size', 'mtimeMs', 'atimeMs',
  'inline', 'lockPath', 'fromVersion', 'replace', 'prefer', 'url', 'secret', 'serverId', 'files', 'freeBytes', 'session', 'type', 'start', 'end', 'pid']

const anyPath = fc.oneof(
  { arbitrary: fc.constantFrom('/docs/a.txt', '/docs', '/new.txt', '/docs/new'), weight: 3 },
  fc.constantFrom('/', '/docs', '/docs/a.txt', '/docs/b.txt', '/new.txt', '/docs/../etc/passwd', '/.dfs/identity.json', '//docs//a.txt', 'docs/a.txt', '/a\nb', '/\u0000x'),
  fc.string({ maxLength: 40 }).map((s) => '/' + s),
  fc.constant('/' + 'x'.repeat(300))
)
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  anyPath, fc.string({ maxLength: 30 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null),
  fc.array(anyPath, { maxLength: 3 }), fc.constantFrom(-1, 0, 2 ** 53, 1e308, '1e3', 'NaN', ''), fc.dictionary(fc.string({ maxLength: 8 }), fc.integer(), { maxKeys: 3 })
)
const fields = fc.dictionary(fc.constantFrom(...FIELDS), anyValue, { maxKeys: 6 })

const body = fc.oneof(
  fields.map((value) => ({ data: JSON.stringify(value), type: 'application/json' })),
  fc.json({ maxDepth: 4 }).map((data) => ({ data, type: 'application/json' })),
  fc.string({ maxLength: 200 }).map((data) => ({ data, type: 'application/json' })),
  fc.uint8Array({ maxLength: 512 }).map((bytes) => ({ data: Buffer.from(bytes), type: 'application/octet-stream' })),
  fc.constant(undefined)
)

const headers = fc.record({
  [Headers.lockToken]: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 40 }), fc.nat().map(String), fc.constant('1.AAAAAAAAAAAAAAAAAAAAAA')),
  [Headers.clientId]: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 70 })),
  [Headers.callback]: fc.constantFrom(undefined, 'want', 'junk'),
  [Headers.changeId]: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 80 })),
  'if-none-match': fc.oneof(fc.constant(undefined), fc.string({ maxLength: 20 })),
  // Rarely: a wrong protocol version is refused before anything else is looked at.
  [Headers.protocol]: fc.oneof({ arbitrary: fc.constant(undefined), weight: 12 }, { arbitrary: fc.constantFrom('0', '999', 'x'), weight: 1 })
}, { requiredKeys: [] })

t.test('generated requests to every route: no 5xx, no crash, refused ones change no byte', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'a\n', 'docs/b.txt': 'bee\n', 'keep/sentinel.txt': 'kept\n' }, { 'other/c.txt': 'c\n' }])
  const { write, read } = cluster.credentials
  const urls = { directory: cluster.directory.url, lock: cluster.lock.url, file: cluster.fileServers[0].url }
  const tampered = write.slice(0, -4) + (write.endsWith('AAAA') ? 'BBBB' : 'AAAA')
  const credential = fc.constantFrom(undefined, 'junk', tampered, read, write)
  const image = (): string => JSON.stringify(cluster.roots.map((root) => diskImage(root)))

  const request = fc.record({
    server: fc.constantFrom(...(Object.keys(SERVERS) as Array<keyof typeof SERVERS>)),
    pick: fc.nat(),
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH'),
    machineId: fc.oneof(fc.constantFrom('1', '2', '0', '-1', 'x', '99999999999999999999')),
    query: fields,
    headers,
    body,
    credential
  })
  const statuses = new Map<number, number>()
  let refused = 0
  await fc.assert(fc.asyncProperty(request, async (r) => {
    const routes = SERVERS[r.server]
    const route = routes[r.pick % routes.length].replace(':id', encodeURIComponent(r.machineId))
    const sentHeaders: Record<string, string> = {}
    for (const [name, value] of Object.entries(r.headers)) if (typeof value === 'string') sentHeaders[name] = value
    if (r.body !== undefined) sentHeaders['Content-Type'] = r.body.type
    const before = image()
    const answer = await raw(urls[r.server], {
      method: r.method, url: route, params: r.query, headers: sentHeaders, data: r.body?.data, token: r.credential, responseType: 'text', transformResponse: (x: unknown) => x
    })
    statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1)
    if (answer.status >= 500) throw new Error(`${r.method} ${r.server} ${route}: ${answer.status} ${String(answer.body).slice(0, 300)}`)
    if (answer.status >= 400) {
      refused++
      const after = image()
      if (after !== before) throw new Error(`${r.method} ${r.server} ${route} was refused (${answer.status}) but changed a root: ${before} -> ${after}`)
    }
  }), { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS })
  const sent = [...statuses.values()].reduce((a, b) => a + b, 0)
  t.ok(sent >= 200, `${sent} requests; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; ${refused} refused`)
  t.ok(refused > sent / 2, 'most were refused (so the disk check ran often)')
  t.ok((statuses.get(200) ?? 0) > 0, 'and some went through (so routes were reached past their checks)')

  for (const [name, url] of Object.entries(urls)) t.equal((await raw(url, { method: 'GET', url: '/health' })).status, 200, `the ${name} server answers`)
  const client = cluster.client()
  t.equal((await client.readFile('/keep/sentinel.txt')).toString(), 'kept\n', 'and the cluster still serves a file the fuzzer never named')
  t.same((await client.list('/')).map((e) => e.name).filter((n) => n === 'keep' || n === 'other'), ['keep', 'other'], 'with both servers in the namespace')
})
