import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import express from 'express'
import type { ErrorRequestHandler, Express } from 'express'
import { asDfsError, BadRequestError, NotFoundError, PayloadTooLargeError, ProtocolMismatchError } from '../../src/shared/errors'
import { DEFAULT_HOST } from '../../src/shared/defaults'
import { Headers, PROTOCOL_VERSION } from '../../src/shared/protocol'
import type { HealthAnswer } from '../../src/shared/protocol'
import type { ServiceName } from './metrics'
import { observeRequests } from './observe'
import { noteProblem } from './problems'
import { stablePrototypeClasses } from './stablePrototypes'

/** A running server: where it listens and how to stop it. */
export interface RunningServer {
  url: string
  port: number
  /**
   * Stops it. With graceMs, gracefully: no new connections, requests in flight may finish
   * for up to graceMs, then the rest are cut (SIGTERM). Without, at once (tests).
   */
  close: (graceMs?: number) => Promise<void>
}

export type Logger = (line: string) => void

export const silentLogger: Logger = () => {}

const JSON_LIMIT = '16mb'

/** express.json with a size bound; malformed JSON is a 400 and an oversized body a 413, through the error handler. */
export const jsonBody = express.json({ limit: JSON_LIMIT })

/**
 * A server's Express app with what every dfs server does first: answers carry the protocol
 * version, and a caller that names another version is refused before any route runs.
 */
export function newApp (service?: ServiceName): Express {
  const app = express()
  app.disable('x-powered-by')
  // Express hashes every answer's body for an ETag by default. No JSON answer is revalidated,
  // and the file server sets its contents' ETag from the version (etagOf).
  app.disable('etag')
  // First, so that every answer, a refused one too, is counted and carries its request id.
  if (service !== undefined) app.use(observeRequests(service))
  app.use((req, res, next) => {
    res.set(Headers.protocol, String(PROTOCOL_VERSION))
    const theirs = req.get(Headers.protocol)
    if (theirs !== undefined && theirs !== String(PROTOCOL_VERSION)) {
      next(new ProtocolMismatchError(`this server speaks dfs protocol ${PROTOCOL_VERSION}, the caller ${theirs}: run the same dfs version everywhere`,
        { theirs, ours: PROTOCOL_VERSION }))
      return
    }
    next()
  })
  return app
}

/** The body of GET /health: which service, which protocol, and what the service adds. */
export function healthAnswer (service: HealthAnswer['service'], details: Record<string, unknown>): HealthAnswer {
  return { service, protocol: PROTOCOL_VERSION, ...details }
}

/** Unknown routes and every thrown error become the JSON error body of docs/protocol.md. */
export function finishApp (app: Express, log: Logger): void {
  app.use((req, _res, next) => next(new NotFoundError(`no route ${req.method} ${req.path}`)))
  const onError: ErrorRequestHandler = (err, req, res, _next) => {
    const bodyProblem = (err as { type?: string }).type
    const error = bodyProblem === 'entity.parse.failed'
      ? new BadRequestError('request body is not valid JSON')
      : bodyProblem === 'entity.too.large' ? new PayloadTooLargeError(`request body is over the limit of ${JSON_LIMIT}`) : asDfsError(err)
    if (error.status >= 500) {
      log(`error: ${error.message}`)
      noteProblem(error.message)
    }
    if (res.headersSent) {
      res.destroy()
      return
    }
    if (!req.complete) drainRefused(req)
    res.status(error.status).json(error.toBody())
  }
  app.use(onError)
}

/** A refused upload is read on and dropped for at most this many bytes, or this long, before its connection is cut. */
const REFUSED_DRAIN_BYTES = 16 * 1024 * 1024
const REFUSED_DRAIN_MS = 2000

/**
 * A refused upload (a lease lost, no room, no credential) is read on and dropped after the
 * answer, not cut at once. Cut at once, the client, still sending, met a closed connection
 * (EPIPE) before it read the answer, took it for a server that does not answer, and tried
 * again: a mount's store under a lease it had lost did so for ever. Read on, the body ends
 * (the connection stays for the next request), or past REFUSED_DRAIN_BYTES or
 * REFUSED_DRAIN_MS the connection is cut: the client has read the answer by then, which
 * went first.
 */
function drainRefused (req: http.IncomingMessage): void {
  const socket = req.socket
  const start = socket.bytesRead
  const startedAt = Date.now()
  const timer = setInterval(() => {
    if (socket.bytesRead - start > REFUSED_DRAIN_BYTES || Date.now() - startedAt > REFUSED_DRAIN_MS) socket.destroy()
  }, 50)
  timer.unref()
  const stop = (): void => {
    clearInterval(timer)
    socket.off('close', stop)
  }
  req.once('end', stop)
  socket.once('close', stop)
  // Whatever was reading it (an upload cut short by the refusal) lets go; the rest is dropped.
  req.unpipe()
  req.removeAllListeners('data')
  req.resume()
}

/**
 * Connection limits. Headers must come within seconds (a client that trickles them holds a
 * connection for nothing); a body has no overall deadline, so a large upload that keeps
 * moving is never cut, but a connection silent for IDLE_SOCKET_MS is; and at most
 * MAX_CONNECTIONS connections at once.
 */
export const HEADERS_TIMEOUT_MS = 10_000
const IDLE_SOCKET_MS = 120_000
const MAX_CONNECTIONS = 4096

/** A server's certificate and private key, PEM: it then speaks https only. */
export interface ServerTls {
  cert: string | Buffer
  key: string | Buffer
}

/** Listens on host:port (0 picks a free port) and reads back the port it got; with `tls`, over https. */
export async function listen (app: Express, port: number, host = DEFAULT_HOST, tls?: ServerTls): Promise<RunningServer> {
  const options = { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: 0, connectionsCheckingInterval: 1000, ...stablePrototypeClasses(app) }
  const server: http.Server = tls === undefined ? http.createServer(options, app) : https.createServer({ ...options, cert: tls.cert, key: tls.key }, app)
  server.keepAliveTimeout = 65_000
  server.timeout = IDLE_SOCKET_MS
  server.maxConnections = MAX_CONNECTIONS
  // Requests not yet answered, so a graceful close knows when it may stop waiting.
  let inFlight = 0
  let closing = false
  let drained: (() => void) | null = null
  server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    inFlight++
    // A request that arrives on a kept-alive connection while closing is still served, once.
    if (closing) res.shouldKeepAlive = false
    res.once('close', () => {
      if (--inFlight === 0) drained?.()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const bound = (server.address() as AddressInfo).port
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  return {
    url: `${tls === undefined ? 'http' : 'https'}://${shownHost}:${bound}`,
    port: bound,
    close: async (graceMs?: number) => {
      closing = true
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      if (graceMs !== undefined && graceMs > 0) {
        server.closeIdleConnections()
        let timer: NodeJS.Timeout | undefined
        await new Promise<void>((resolve) => {
          if (inFlight === 0) resolve()
          drained = resolve
          timer = setTimeout(resolve, graceMs)
        })
        clearTimeout(timer)
      }
      server.closeAllConnections()
      await closed
    }
  }
}
