import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { Authenticator } from '../servers/common/auth'
import { ClusterKey, newClaims, signToken } from '../servers/common/tokens'
import { ForbiddenError, LeaseError, UnauthorizedError } from '../src/shared/errors'
import { DirectoryRoutes, FileRoutes, Headers, LockRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { MAX_REPORT_DEPTH } from '../servers/directory/server'
import { newCredentials } from './helpers/credentials'
import { diskImage } from './helpers/diskImage'
import { startProcessCluster } from './helpers/processCluster'
import type { RawAnswer } from './helpers/wire'
import { raw, rawGet, rawPost } from './helpers/wire'
import { waitFor, within } from './helpers/waitFor'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

/*
 * The attacks of issue #10, each performed against a real cluster: every one must be
 * refused with the right 4xx, and leave the cluster serving and every disk as it was.
 */

const DAY_MS = 86_400_000

function refused (t: Test, answer: RawAnswer, status: 401 | 403, what: string): void {
  t.equal(answer.status, status, `${what}: ${status} (${JSON.stringify(answer.body).slice(0, 200)})`)
  t.equal(answer.body?.error?.code, status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN', `${what}: a typed error`)
}

async function stillServes (t: Test, cluster: TestCluster, file: string, content: string): Promise<void> {
  t.equal((await cluster.client().readFile(file)).toString(), content, `the cluster still serves ${file}`)
}

t.test('strangers and clients cannot register, report, heartbeat, claim or forget for a file server', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'real\n' }])
  const { directory } = cluster
  const server = cluster.fileServers[0]
  const machineId = server.machineId
  const before = diskImage(cluster.roots[0])
  const { write, read, server: operator } = cluster.credentials
  // The rogue knows the real server's URL and, from /health, its serverId.
  const serverId = (await rawGet(server.url, FileRoutes.health)).body.serverId as string
  t.type(serverId, 'string')

  const register = { url: server.url, serverId }
  refused(t, await rawPost(directory.url, DirectoryRoutes.register, register), 401, 'register without a credential')
  refused(t, await rawPost(directory.url, DirectoryRoutes.register, register, { token: write }), 403, 'register with a client token')
  // Even a holder of the cluster key cannot take over a registered identity without its secret.
  refused(t, await rawPost(directory.url, DirectoryRoutes.register, { ...register, secret: 'x'.repeat(43) }, { token: operator }), 403, 'register under a known serverId with a wrong secret')

  const report = { files: [] }
  for (const [token, status] of [[undefined, 401], [write, 403], [read, 403], [operator, 403]] as const) {
    const who = token === undefined ? 'no credential' : token === operator ? 'another member of the cluster' : 'a client token'
    refused(t, await raw(directory.url, { method: 'PUT', url: DirectoryRoutes.reportFiles(machineId), data: report, token }), status, `a report for server ${machineId} with ${who}`)
    refused(t, await rawPost(directory.url, DirectoryRoutes.heartbeat(machineId), { serverId }, { token }), status, `a heartbeat with ${who}`)
    refused(t, await rawPost(directory.url, DirectoryRoutes.entries(machineId), { path: '/rogue.txt', kind: 'file' }, { token }), status, `a claim with ${who}`)
    refused(t, await raw(directory.url, { method: 'DELETE', url: DirectoryRoutes.entries(machineId), params: { path: '/notes/todo.txt' }, token }), status, `a drop with ${who}`)
  }
  refused(t, await raw(directory.url, { method: 'DELETE', url: DirectoryRoutes.server(machineId), token: write }), 403, 'forgetting a server with a client token')

  const looked = await rawGet(directory.url, DirectoryRoutes.lookup, { path: '/notes/todo.txt' }, { token: read })
  t.equal(looked.body.server?.machineId, machineId, 'the path still belongs to the real server')
  await stillServes(t, cluster, '/notes/todo.txt', 'real\n')
  t.same(diskImage(cluster.roots[0]), before, 'no byte on the server\'s disk changed')
})

t.test('a registered file server cannot speak for another one, and the real one can still rejoin', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a/one.txt': '1\n' }, { 'b/two.txt': '2\n' }])
  const [first, second] = cluster.fileServers
  const secondIdentity = JSON.parse(fs.readFileSync(path.join(cluster.roots[1], '.dfs', 'identity.json'), 'utf8')) as { serverId: string, secret: string }
  t.equal(fs.statSync(path.join(cluster.roots[1], '.dfs', 'identity.json')).mode & 0o777, 0o600, 'a file server\'s secret is for its user only')
  // Server 2's own credential: what it signs its directory calls with.
  const asSecond = signToken(Buffer.from(secondIdentity.secret, 'base64url'), `file:${secondIdentity.serverId}`, newClaims(`file:${secondIdentity.serverId}`, 'server', 60_000))
  refused(t, await raw(cluster.directory.url, { method: 'PUT', url: DirectoryRoutes.reportFiles(first.machineId), data: { files: [] }, token: asSecond }), 403, 'server 2 reporting for server 1')
  refused(t, await rawPost(cluster.directory.url, DirectoryRoutes.heartbeat(first.machineId), { serverId: secondIdentity.serverId }, { token: asSecond }), 403, 'server 2 beating for server 1')
  const ownReport = await raw(cluster.directory.url, { method: 'PUT', url: DirectoryRoutes.reportFiles(second.machineId), data: { files: [{ path: '/b', kind: 'dir' }, { path: '/b/two.txt', kind: 'file', size: 2 }] }, token: asSecond })
  t.equal(ownReport.status, 200, 'its own report is taken')
  const deep = '/b' + '/d'.repeat(MAX_REPORT_DEPTH) + '/deep.txt'
  const tooDeep = await raw(cluster.directory.url, { method: 'PUT', url: DirectoryRoutes.reportFiles(second.machineId), data: { files: [{ path: '/b/new.txt', kind: 'file' }, { path: deep, kind: 'file' }] }, token: asSecond })
  t.equal(tooDeep.status, 400, 'a report with a path deeper than the limit is refused')
  t.match(tooDeep.body.error.message, /names deep/)
  t.equal((await rawGet(cluster.directory.url, DirectoryRoutes.lookup, { path: '/b/new.txt' }, { token: cluster.credentials.read })).status, 404, 'and none of it is taken')
  const forged = signToken(crypto.randomBytes(32), `file:${secondIdentity.serverId}`, newClaims(`file:${secondIdentity.serverId}`, 'server', 60_000))
  refused(t, await raw(cluster.directory.url, { method: 'PUT', url: DirectoryRoutes.reportFiles(second.machineId), data: { files: [] }, token: forged }), 401, 'a report signed with a guessed secret')
  await stillServes(t, cluster, '/a/one.txt', '1\n')
  await stillServes(t, cluster, '/b/two.txt', '2\n')
})

t.test('server-only routes of the lock and file servers refuse clients; keys stay', async (t) => {
  const cluster = await startTestCluster(t, [{ 'held.txt': 'held\n', 'other.txt': 'other\n', 'third.txt': 'third\n' }])
  const { lock } = cluster
  const file = cluster.fileServers[0]
  const before = diskImage(cluster.roots[0])
  const { write, read } = cluster.credentials
  const holder = cluster.client({ owner: 'holder' })
  const held = await holder.locks.acquire('/held.txt')
  t.teardown(async () => await held.release())

  for (const [token, status] of [[undefined, 401], [write, 403], [read, 403]] as const) {
    const who = token === undefined ? 'no credential' : 'a client token'
    refused(t, await raw(lock.url, { method: 'DELETE', url: LockRoutes.keys, params: { path: '/held.txt' }, token }), status, `DELETE /keys with ${who}`)
    refused(t, await rawPost(lock.url, LockRoutes.removeKeys, { paths: ['/held.txt'] }, { token }), status, `POST /keys/remove with ${who}`)
    refused(t, await rawPost(lock.url, LockRoutes.keys, { paths: ['/made-up.txt'] }, { token }), status, `POST /keys with ${who}`)
    // A lease on one file must not carry bytes to, or remove, another.
    const lease = { [Headers.lockToken]: leaseCredentialOf(held.lease), 'Content-Type': 'application/octet-stream' }
    refused(t, await rawGet(lock.url, LockRoutes.check, { path: '/held.txt' }, { token, headers: lease }), status, `GET /locks/check with ${who}`)
    refused(t, await raw(file.url, {
      method: 'PUT', url: FileRoutes.incoming, params: { path: '/other.txt', lockPath: '/held.txt', fromVersion: 1, mtimeMs: 1, replace: true }, data: Buffer.from('replaced'), headers: lease, token
    }), status, `PUT /incoming with ${who}`)
    refused(t, await raw(file.url, { method: 'POST', url: FileRoutes.incomingAbort, params: { path: '/third.txt', lockPath: '/held.txt' }, headers: lease, token }), status, `POST /incoming/abort with ${who}`)
  }
  const status = await rawGet(lock.url, LockRoutes.status, { path: '/held.txt' }, { token: read })
  t.match(status.body, { held: true, owner: 'holder' }, 'the key is still there, held by its holder')
  t.same(diskImage(cluster.roots[0]), before, 'no byte on the server\'s disk changed')
  await stillServes(t, cluster, '/other.txt', 'other\n')
})

t.test('a lease is its holder\'s: a guessed fencing number is worth nothing, to another token or to its own subject', async (t) => {
  const cluster = await startTestCluster(t, [{ 'shared.txt': 'start\n' }])
  const mallory = cluster.credentials.key.clientToken('mallory', { ttlMs: DAY_MS }).token
  const alice = cluster.client({ owner: 'alice-laptop' })
  const held = await alice.locks.acquire('/shared.txt')
  t.equal(held.lease.holder, 'tester', 'the holder is the token\'s subject')
  t.match(held.lease.secret, /^[A-Za-z0-9_-]{22}$/, 'the grant carries a secret of 128 random bits')
  const before = diskImage(cluster.roots[0])
  // The fencing number only grows: the next one is easy to guess, or seen in a status answer.
  const token = held.lease.token
  const guessedSecret = 'A'.repeat(held.lease.secret.length)
  refused(t, await rawPost(cluster.lock.url, LockRoutes.renew, { path: '/shared.txt', credential: leaseCredentialOf(held.lease) }, { token: mallory }), 403, 'renewing another\'s lease')
  refused(t, await rawPost(cluster.lock.url, LockRoutes.release, { path: '/shared.txt', credential: leaseCredentialOf(held.lease) }, { token: mallory }), 403, 'releasing another\'s lease')
  // Renewing and releasing need the grant's secret as a write does: another mount of the same
  // subject (or anyone) that guesses the number gets the answer a wrong number gets.
  for (const [credential, body, what] of [
    [mallory, { credential: String(token) }, 'another subject with the fencing number'],
    [cluster.credentials.write, { credential: String(token) }, 'the holder\'s subject with the bare fencing number'],
    [cluster.credentials.write, { token }, 'the holder\'s subject with the number and no credential'],
    [cluster.credentials.write, { credential: `${token}.${guessedSecret}` }, 'the holder\'s subject with a guessed secret']
  ] as const) {
    for (const route of [LockRoutes.renew, LockRoutes.release]) {
      const answer = await rawPost(cluster.lock.url, route, { path: '/shared.txt', ...body }, { token: credential })
      t.equal(answer.status, 409, `${route} is refused: ${what}`)
      t.equal(answer.body?.error?.code, new LeaseError('').code, `${route}: LEASE_INVALID, as for a wrong number`)
    }
  }
  t.match((await rawGet(cluster.lock.url, LockRoutes.status, { path: '/shared.txt' }, { token: mallory })).body, { held: true, owner: 'alice-laptop' }, 'the lease is still held by its holder')
  const putAs = async (credential: string, lockHeader: string): Promise<RawAnswer> => await raw(cluster.fileServers[0].url, {
    method: 'PUT', url: FileRoutes.content, params: { path: '/shared.txt' }, data: Buffer.from('mallory was here\n'),
    headers: { [Headers.lockToken]: lockHeader, 'Content-Type': 'application/octet-stream' }, token: credential
  })
  // Another subject, even with the grant's own credential (seen on the wire), and the holder's
  // own subject (another mount of the same user) with the number alone or a made-up secret.
  for (const [credential, header, what] of [
    [mallory, String(token), 'another subject with the fencing number'],
    [mallory, leaseCredentialOf(held.lease), 'another subject with the whole credential'],
    [cluster.credentials.write, String(token), 'the holder\'s subject with the bare fencing number'],
    [cluster.credentials.write, `${token}.${guessedSecret}`, 'the holder\'s subject with a guessed secret'],
    [cluster.credentials.write, `${token + 1}.${held.lease.secret}`, 'the next fencing number with this grant\'s secret']
  ] as const) {
    const put = await putAs(credential, header)
    t.equal(put.status, 409, `a write is refused: ${what}`)
    t.equal(put.body.error.code, new LeaseError('').code)
  }
  // The lock server says no to a guessed secret directly too.
  const check = await rawGet(cluster.lock.url, LockRoutes.check, { path: '/shared.txt' }, { token: cluster.credentials.server, headers: { [Headers.lockToken]: `${token}.${guessedSecret}` } })
  t.equal(check.status, 409, 'the lock server refuses a check with a guessed secret')
  t.same(diskImage(cluster.roots[0]), before, 'and wrote nothing')
  const put = await putAs(cluster.credentials.write, leaseCredentialOf(held.lease))
  t.equal(put.status, 200, 'the grant\'s own credential writes')
  // The lock holder is the subject, not the owner the client names.
  const impostor = await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/shared.txt', owner: 'alice-laptop' }, { token: mallory })
  t.equal(impostor.status, 423, 'naming oneself as the holder gets nothing')
  await held.release()
  t.equal((await rawGet(cluster.lock.url, LockRoutes.status, { path: '/shared.txt' }, { token: mallory })).body.held, false, 'the holder released it')
})

t.test('a read-only token reads and lists, and may neither change nor lock', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'a\n' }])
  const reader = cluster.client({ caller: { credential: () => cluster.credentials.read } })
  t.equal((await reader.readFile('/docs/a.txt')).toString(), 'a\n', 'it reads')
  t.same((await reader.list('/docs')).map((e) => e.name), ['a.txt'], 'it lists')
  await t.rejects(reader.append('/docs/a.txt', 'x'), ForbiddenError, 'it may not append')
  await t.rejects(reader.create('/docs/b.txt'), ForbiddenError, 'nor create')
  const acquire = await rawPost(cluster.lock.url, LockRoutes.acquire, { path: '/docs/a.txt', owner: 'r', waitMs: 0 }, { token: cluster.credentials.read })
  refused(t, acquire, 403, 'a read-only token asking for a lock')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'docs', 'a.txt'), 'utf8'), 'a\n')
})

t.test('missing, expired, tampered, foreign and revoked credentials are 401 on every server; health is open', async (t) => {
  const key = ClusterKey.generate()
  const credentials = newCredentials(key)
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-revoked-'))
  t.teardown(() => fs.rmSync(workDir, { recursive: true, force: true }))
  const revokedFile = path.join(workDir, 'revoked')
  const revoked = key.clientToken('leaver', { ttlMs: DAY_MS })
  fs.writeFileSync(revokedFile, `# revoked tokens\n${revoked.claims.jti}\n`)
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }], { auth: { key, revokedFile } })
  const expired = signToken(key.clientKey, 'client', { ...newClaims('late', 'write', 1000, Date.now() - 60_000) })
  const [head, body, signature] = credentials.write.split('.')
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
  const tampered = [head, Buffer.from(JSON.stringify({ ...claims, role: 'server' })).toString('base64url'), signature].join('.')
  const foreign = ClusterKey.generate().clientToken('tester', { ttlMs: DAY_MS }).token
  const serverAsClient = signToken(key.clientKey, 'client', newClaims('rogue', 'server', 60_000))
  const revokedByName = key.clientToken('fired', { ttlMs: DAY_MS }).token
  t.equal((await rawGet(cluster.lock.url, LockRoutes.status, { path: '/a.txt' }, { token: revokedByName })).status, 200, 'a token works until it is revoked')
  // Servers read the deny list again when it changes: within a second or so.
  fs.appendFileSync(revokedFile, 'sub:fired\n')
  for (const [url, route] of [[cluster.directory.url, DirectoryRoutes.lookup], [cluster.lock.url, LockRoutes.status], [cluster.fileServers[0].url, FileRoutes.stat]]) {
    await waitFor(`${url} to read the deny list again`, async () => (await rawGet(url, route, { path: '/a.txt' }, { token: revokedByName })).status === 401, 10_000, 100)
  }

  const calls: Array<[string, string]> = [
    [cluster.directory.url, DirectoryRoutes.lookup],
    [cluster.lock.url, LockRoutes.status],
    [cluster.fileServers[0].url, FileRoutes.stat]
  ]
  for (const [url, route] of calls) {
    for (const [what, token] of [['no', undefined], ['an expired', expired], ['a tampered', tampered], ['another cluster\'s', foreign],
      ['a client-signed server', serverAsClient], ['a revoked', revoked.token], ['a revoked-by-name', revokedByName], ['a junk', 'not a token']] as const) {
      refused(t, await rawGet(url, route, { path: '/a.txt' }, { token }), 401, `${route} with ${what} credential`)
    }
    t.equal((await rawGet(url, route, { path: '/a.txt' }, { token: credentials.write })).status, 200, `${route} with a good token`)
    t.equal((await rawGet(url, '/health')).status, 200, `${url}/health needs no credential`)
  }
  const stranger = cluster.client({ caller: {} })
  await t.rejects(stranger.readFile('/a.txt'), UnauthorizedError, 'a client without a token gets EACCES\'s typed error')
})

t.test('an upload without a credential is refused before its body is read: nothing reaches the disk', async (t) => {
  const cluster = await startTestCluster(t, [{ 'big.bin': 'small\n' }])
  const file = cluster.fileServers[0]
  const before = diskImage(cluster.roots[0])
  const body = Buffer.alloc(32 * 1024 * 1024, 0x61)
  for (const [method, route] of [['PUT', FileRoutes.content], ['POST', FileRoutes.append], ['PUT', FileRoutes.incoming]] as const) {
    const answer = await raw(file.url, {
      method, url: route, params: { path: '/big.bin', lockPath: '/big.bin', fromVersion: 0, mtimeMs: 1 }, data: body,
      headers: { 'Content-Type': 'application/octet-stream' }, maxBodyLength: Infinity
    }).catch((err: unknown) => err)
    // The server answers 401 and closes the connection instead of reading 32 MB: the client
    // may see the answer, or a reset while it still sends.
    if (answer instanceof Error) t.match((answer as NodeJS.ErrnoException).code, /ECONNRESET|EPIPE/, `${method} ${route}: cut off`)
    else refused(t, answer as RawAnswer, 401, `${method} ${route} without a credential`)
  }
  t.same(diskImage(cluster.roots[0]), before, 'no byte reached the disk, not even in a staging file')
  await stillServes(t, cluster, '/big.bin', 'small\n')
})

t.test('a too-long path is a 400 that names no disk path', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }])
  // Legal at the mount (names of 203 bytes, 4,080 in all), too long once the root is put before it.
  const long = '/' + Array.from({ length: 20 }, (_, i) => String(i).padEnd(203, 'x')).join('/')
  for (const route of [FileRoutes.stat, FileRoutes.content, FileRoutes.list]) {
    const answer = await rawGet(cluster.fileServers[0].url, route, { path: long }, { token: cluster.credentials.read })
    t.equal(answer.status, 400, `${route}: 400 (${answer.status})`)
    t.equal(answer.body.error?.code, 'NAME_TOO_LONG')
    t.notMatch(JSON.stringify(answer.body), cluster.roots[0], 'the root folder is not in the answer')
  }
})

t.test('on a process cluster: connections that send headers slowly are cut; a newline in a name forges no log line', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'a\n' }] })
  const file = cluster.files[0]
  const port = file.port
  // Headers that never end: the server must not keep the connection for long.
  const sockets = await Promise.all(Array.from({ length: 20 }, async () => await new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write('GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ')
      resolve(socket)
    })
    socket.on('error', reject)
  })))
  const closed = sockets.map(async (socket) => await new Promise<void>((resolve) => {
    socket.on('error', () => {})
    if (socket.destroyed) resolve()
    socket.on('close', () => resolve())
    // A byte now and then: slow but moving headers are cut as well.
    const drip = setInterval(() => { if (!socket.destroyed) socket.write('a') }, 500)
    socket.on('close', () => clearInterval(drip))
  }))
  const client = cluster.client()
  t.equal((await client.readFile('/notes/a.txt')).toString(), 'a\n', 'meanwhile the server serves others')
  t.ok(await within(Promise.all(closed), 40_000), 'every connection that trickled its headers was closed')

  await client.create('/notes/evil\n2026-01-01T00:00:00.000Z FORGED line.txt')
  await client.append('/notes/evil\n2026-01-01T00:00:00.000Z FORGED line.txt', 'x')
  await waitFor('the creation to be logged', async () => file.output().includes('evil'), 5000)
  t.notMatch(file.output(), /\n2026-01-01T00:00:00\.000Z FORGED/, 'the newline is escaped in the log, no forged line')
  t.match(file.output(), 'evil\\n2026-01-01T00:00:00.000Z FORGED', 'the name is logged with its newline escaped')
})

t.test('a hard link inside a root to a file outside it is neither served nor appended through', async (t) => {
  const cluster = await startTestCluster(t, [{ 'inside.txt': 'fine\n' }])
  const outside = path.join(cluster.workDir, 'outside-secret.txt')
  fs.writeFileSync(outside, 'TOP SECRET\n')
  fs.linkSync(outside, path.join(cluster.roots[0], 'linked.txt'))
  const file = cluster.fileServers[0]
  const { write } = cluster.credentials
  for (const route of [FileRoutes.content, FileRoutes.stat]) {
    const answer = await rawGet(file.url, route, { path: '/linked.txt' }, { token: write })
    t.equal(answer.status, 404, `${route} of the hard link: 404`)
    t.notMatch(JSON.stringify(answer.body), 'TOP SECRET')
  }
  const append = await raw(file.url, { method: 'POST', url: FileRoutes.append, params: { path: '/linked.txt' }, data: Buffer.from('appended\n'), headers: { 'Content-Type': 'application/octet-stream' }, token: write })
  t.equal(append.status, 404, 'an append through it: 404')
  t.equal(fs.readFileSync(outside, 'utf8'), 'TOP SECRET\n', 'the file outside the root is unchanged')
  await stillServes(t, cluster, '/inside.txt', 'fine\n')
  // Renames make hard links of their own: those are served.
  const client = cluster.client()
  await client.rename('/inside.txt', '/moved.txt')
  t.equal((await client.readFile('/moved.txt')).toString(), 'fine\n', 'a renamed file is served')
})

t.test('an upload over the cap is refused by its Content-Length, before its body is read', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'a\n' }])
  const file = cluster.fileServers[0]
  const before = diskImage(cluster.roots[0])
  const url = new URL(`${file.url}${FileRoutes.append}?path=${encodeURIComponent('/a.txt')}`)
  // Says a petabyte is coming, sends a few bytes: the answer must not wait for the rest.
  const answer = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      headers: { Authorization: `Bearer ${cluster.credentials.write}`, 'Content-Type': 'application/octet-stream', 'Content-Length': String(10 ** 15) }
    }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.write(Buffer.alloc(1024, 0x62))
  })
  t.equal(answer.status, 413, `413 (${answer.body})`)
  t.equal(JSON.parse(answer.body).error.code, 'TOO_LARGE')
  t.same(diskImage(cluster.roots[0]), before, 'nothing was written')
  await stillServes(t, cluster, '/a.txt', 'a\n')
})

t.test('a file server\'s identity token is remembered once checked, and refused once its registered secret changes or goes', async (t) => {
  const key = ClusterKey.generate()
  const first = crypto.randomBytes(32)
  const secrets = new Map<string, Buffer>([['fs-1', first]])
  const auth = new Authenticator({ key, identitySecret: (serverId) => secrets.get(serverId) })
  const token = `Bearer ${signToken(first, 'file:fs-1', newClaims('file:fs-1', 'server', 60_000))}`
  t.equal(auth.verify(token).serverId, 'fs-1', 'checked against its secret')
  t.equal(auth.verify(token).serverId, 'fs-1', 'and taken again')
  secrets.set('fs-1', crypto.randomBytes(32))
  t.throws(() => auth.verify(token), UnauthorizedError, 'refused once the server registered another secret')
  secrets.set('fs-1', first)
  t.equal(auth.verify(token).serverId, 'fs-1', 'taken again with the secret it was signed with')
  secrets.delete('fs-1')
  t.throws(() => auth.verify(token), UnauthorizedError, 'refused once the server is forgotten')
})
