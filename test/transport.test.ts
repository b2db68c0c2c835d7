import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import net from 'node:net'
import { Readable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { DfsError, LockedError, NotFoundError, ServerUnavailableError } from '../src/shared/errors'
import { Headers, PROTOCOL_VERSION } from '../src/shared/protocol'
import { Transport } from '../src/shared/transport'

/*
 * What the transport promises, each against a stand-in server that misbehaves on purpose:
 * deadlines, silence on streams, the one retry of a read, the headers of every call, query
 * encoding and typed errors. The real servers' side is in core-protocol and core-errors.
 */

const DEADLINE_MS = 300
/** How late a deadline may fire on a busy shared machine and still count as kept. */
const SLACK_MS = 1500

interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** A tiny HTTP server that records what it got and answers with `handler`. */
async function standIn (t: Test, handler: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void): Promise<{ url: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      handler(req, res, body)
    })
  })
  return { url: await listening(t, server), seen }
}

/** Listens on a free loopback port until the test ends, then drops every connection and stops. */
async function listening (t: Test, server: net.Server): Promise<string> {
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    if (server.listening) await new Promise((resolve) => server.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function answerJson (res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json', [Headers.protocol]: String(PROTOCOL_VERSION) })
  res.end(JSON.stringify(body))
}

async function failure (promise: Promise<unknown>): Promise<Error> {
  return await promise.then(() => { throw new Error('expected a failure') }, (err: unknown) => err as Error)
}

async function drain (stream: Readable): Promise<number> {
  let size = 0
  for await (const chunk of stream) size += (chunk as Buffer).length
  return size
}

t.test('a server that accepts and never answers fails the call within the deadline, named', async (t) => {
  const silent = net.createServer(() => {})
  const url = await listening(t, silent)
  const transport = new Transport('file server 2', url, DEADLINE_MS)
  const started = Date.now()
  const err = await failure(transport.json({ method: 'GET', route: '/stat', query: { path: '/a' } }))
  const took = Date.now() - started
  t.type(err, ServerUnavailableError)
  t.match(err.message, new RegExp(`^file server 2 at 127\\.0\\.0\\.1:\\d+ is not answering \\(no answer within ${DEADLINE_MS} ms\\)$`))
  t.ok(took >= DEADLINE_MS - 20 && took < DEADLINE_MS + SLACK_MS, `failed after ${took} ms`)

  // A call's own deadline is the one kept, and the one the message names.
  const longer = await failure(transport.json({ method: 'POST', route: '/locks/acquire', body: {}, timeoutMs: 2 * DEADLINE_MS }))
  t.match(longer.message, `no answer within ${2 * DEADLINE_MS} ms`)
})

t.test('a refused connection names the server and the cause', async (t) => {
  const closed = net.createServer()
  const url = await listening(t, closed)
  await new Promise((resolve) => closed.close(resolve))
  const err = await failure(new Transport('lock server', url, DEADLINE_MS).json({ method: 'GET', route: '/health' }))
  t.type(err, ServerUnavailableError)
  t.match(err.message, /^lock server at 127\.0\.0\.1:\d+ is not answering \(ECONNREFUSED\)$/)
})

t.test('a download that stalls midway is cut after the idle timeout; one that keeps moving is not', async (t) => {
  const { url } = await standIn(t, (req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': '1000', [Headers.protocol]: String(PROTOCOL_VERSION) })
    if (req.url === '/stall') {
      res.write(Buffer.alloc(100))
      return
    }
    // 10 chunks of 100 bytes, one every DEADLINE_MS / 3: slower in all than the timeout, never silent for it.
    let sent = 0
    const timer = setInterval(() => {
      res.write(Buffer.alloc(100))
      if (++sent === 10) {
        clearInterval(timer)
        res.end()
      }
    }, DEADLINE_MS / 3)
  })
  const transport = new Transport('file server 1', url, DEADLINE_MS)

  const stalled = await transport.send({ method: 'GET', route: '/stall', stream: true })
  t.equal(stalled.status, 200)
  t.equal(stalled.headers['content-length'], '1000', 'headers come lower-case, as strings')
  const started = Date.now()
  const err = await failure(drain(stalled.data as Readable))
  const took = Date.now() - started
  t.match(err, { code: 'IDLE_TIMEOUT' })
  t.ok(took < DEADLINE_MS + SLACK_MS, `cut after ${took} ms`)
  t.match(transport.unavailable(err).message, `file server 1 at 127.0.0.1:${new URL(url).port} is not answering (no answer within ${DEADLINE_MS} ms)`)

  const slow = await transport.send({ method: 'GET', route: '/slow', stream: true })
  t.equal(await drain(slow.data as Readable), 1000, 'a slow download that keeps moving arrives whole')
})

t.test('an upload stream that goes silent fails the call', async (t) => {
  const { url, seen } = await standIn(t, (_req, res) => answerJson(res, 200, {}))
  const source = new Readable({ read () {} })
  source.push(Buffer.alloc(10))
  const started = Date.now()
  const err = await failure(new Transport('file server 1', url, DEADLINE_MS).json({ method: 'PUT', route: '/content', body: source }))
  t.type(err, ServerUnavailableError)
  t.match(err.message, `no answer within ${DEADLINE_MS} ms`)
  t.ok(Date.now() - started < DEADLINE_MS + SLACK_MS)
  t.equal(seen.length, 0, 'the server never got a whole request')
  t.ok(source.destroyed, 'the source is let go, not left paused')
})

/**
 * A server that drops a kept-alive connection when the next request arrives on it: what a
 * client sees when the server restarted between two calls (a reset on a reused socket).
 */
async function droppingServer (t: Test): Promise<{ url: string, seen: Seen[] }> {
  const served = new WeakSet<Socket>()
  return await standIn(t, (req, res) => {
    if (served.has(req.socket)) {
      req.socket.destroy()
      return
    }
    served.add(req.socket)
    answerJson(res, 200, { ok: true })
  })
}

t.test('a GET that meets a dropped kept-alive connection is sent once more', async (t) => {
  const { url, seen } = await droppingServer(t)
  const transport = new Transport('directory server', url, 2000)
  t.same(await transport.json({ method: 'GET', route: '/servers' }), { ok: true })
  t.same(await transport.json({ method: 'GET', route: '/servers' }), { ok: true }, 'the second call succeeds')
  t.equal(seen.length, 3, 'the server saw it twice: on the dropped connection, then on a new one')
})

t.test('a POST that meets a dropped kept-alive connection is not sent again', async (t) => {
  const { url, seen } = await droppingServer(t)
  const transport = new Transport('lock server', url, 2000)
  t.same(await transport.json({ method: 'POST', route: '/locks/release', body: { token: 1 } }), { ok: true })
  const err = await failure(transport.json({ method: 'POST', route: '/locks/release', body: { token: 1 } }))
  t.type(err, ServerUnavailableError)
  t.match(err.message, /^lock server at 127\.0\.0\.1:\d+ is not answering \(ECONNRESET\)$/)
  t.equal(seen.length, 2, 'sent once')
})

t.test('every call carries the protocol version, a fresh request id, the caller and its credential', async (t) => {
  const { url, seen } = await standIn(t, (_req, res) => answerJson(res, 200, {}))
  let credential = 'first'
  const transport = new Transport('file server 1', url, 2000, { clientId: 'mount-7', credential: () => credential })
  await transport.json({ method: 'GET', route: '/health' })
  credential = 'renewed'
  await transport.json({ method: 'PUT', route: '/content', body: Buffer.from('hello'), headers: { [Headers.lockToken]: '12' } })
  await transport.json({ method: 'POST', route: '/locks/acquire', body: { path: '/a' } })
  await transport.json({ method: 'POST', route: '/create' })
  await transport.json({ method: 'PUT', route: '/append', body: Readable.from([Buffer.from('ab'), Buffer.from('cd')]) })
  const [get, put, post, empty, streamed] = seen
  for (const call of seen) {
    t.equal(call.headers[Headers.protocol], String(PROTOCOL_VERSION))
    t.match(call.headers[Headers.requestId], /^[0-9a-f]{16}$/)
    t.equal(call.headers[Headers.clientId], 'mount-7')
  }
  t.equal(new Set(seen.map((call) => call.headers[Headers.requestId])).size, seen.length, 'request ids differ')
  t.equal(get.headers.authorization, 'Bearer first')
  t.equal(put.headers.authorization, 'Bearer renewed', 'the credential is read at each call')
  t.equal(get.method, 'GET')
  t.equal(get.body.length, 0, 'a GET has no body')
  t.equal(put.headers['content-type'], 'application/octet-stream')
  t.equal(put.headers['content-length'], '5')
  t.equal(put.headers[Headers.lockToken], '12', "the call's own headers are sent")
  t.equal(put.body.toString(), 'hello')
  t.equal(post.headers['content-type'], 'application/json')
  t.same(JSON.parse(post.body.toString()), { path: '/a' })
  t.equal(empty.body.toString(), '{}', 'a POST without a body sends the empty JSON object')
  t.equal(streamed.headers['content-type'], 'application/octet-stream')
  t.equal(streamed.body.toString(), 'abcd', 'a stream goes up whole')
})

t.test('query values are encoded; undefined ones are left out', async (t) => {
  const { url, seen } = await standIn(t, (_req, res) => answerJson(res, 200, {}))
  const transport = new Transport('file server 1', url, 2000)
  await transport.json({
    method: 'POST',
    route: '/utimes',
    query: { path: '/a b/ü & c=d?#%+', mtimeMs: 1712345678901.5, mode: 420, replace: true, dry: false, atimeMs: undefined }
  })
  await transport.json({ method: 'GET', route: '/health', query: { gone: undefined } })
  const [withQuery, without] = seen
  const [route, query] = withQuery.url.split('?')
  t.equal(route, '/utimes')
  const params = new URLSearchParams(query)
  t.equal(params.get('path'), '/a b/ü & c=d?#%+', 'a path with spaces, non-ASCII and URL syntax arrives unchanged')
  t.equal(params.get('mtimeMs'), '1712345678901.5')
  t.equal(params.get('mode'), '420')
  t.equal(params.get('replace'), 'true')
  t.equal(params.get('dry'), 'false')
  t.notOk(params.has('atimeMs'))
  t.equal(without.url, '/health', 'no query at all when every value is undefined')
})

t.test('error bodies come back as their typed errors', async (t) => {
  const { url } = await standIn(t, (req, res) => {
    if (req.url?.startsWith('/locked') === true) answerJson(res, 423, { error: { code: 'LOCKED', message: '/a is locked', path: '/a' } })
    else if (req.url === '/bare404') res.writeHead(404).end()
    else res.writeHead(502, { 'Content-Type': 'text/html' }).end('<h1>bad gateway</h1>')
  })
  const transport = new Transport('lock server', url, 2000)
  const locked = await failure(transport.json({ method: 'POST', route: '/locked' }))
  t.type(locked, LockedError)
  t.equal(locked.message, '/a is locked')
  t.same((locked as DfsError).details, { path: '/a' })
  t.type(await failure(transport.json({ method: 'GET', route: '/bare404' })), NotFoundError, 'a 404 without a body is still not found')
  const stranger = await failure(transport.json({ method: 'GET', route: '/proxy' }))
  t.type(stranger, DfsError)
  t.match(stranger.message, 'unexpected answer: HTTP 502')

  const streamed = await failure(transport.send({ method: 'GET', route: '/locked', stream: true }))
  t.type(streamed, LockedError, 'with stream: true an error body is read and thrown')

  const raw = await transport.send({ method: 'GET', route: '/proxy' })
  t.equal(raw.status, 502, 'send() returns any status')
  t.equal(raw.data, '<h1>bad gateway</h1>', 'a body that is not JSON comes as its text')
})

t.test('a Buffer upload gets time in proportion to its size', async (t) => {
  // The server reads the whole body, then waits twice DEADLINE_MS before it answers: well
  // past the plain deadline (an answer exactly at it raced the client's timer, and a CI run
  // saw it win), well within the one the upload's size adds (1 ms per kB: 1.2 s more here).
  const { url } = await standIn(t, (_req, res) => setTimeout(() => answerJson(res, 200, { ok: true }), 2 * DEADLINE_MS))
  const transport = new Transport('file server 1', url, DEADLINE_MS)
  t.same(await transport.json({ method: 'PUT', route: '/content', body: Buffer.alloc(4 * DEADLINE_MS * 1000) }), { ok: true })
  const small = await failure(transport.json({ method: 'PUT', route: '/content', body: Buffer.alloc(10) }))
  t.type(small, ServerUnavailableError, 'a small one does not')
})
