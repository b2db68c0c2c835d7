import type { Socket } from 'node:net'
import type { Request, RequestHandler } from 'express'
import { Headers } from '../../src/shared/protocol'
import { newRequestId, withRequestId } from '../../src/shared/requestContext'
import { recordRequest } from './metrics'
import type { ServiceName } from './metrics'

/** Ids a caller may send: short and plain, so a log line cannot be forged through one. */
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

/** What observeRequests tells of each finished request (logging.ts logs it at debug level). */
export type RequestListener = (done: { requestId: string, method: string, route: string, status: number, ms: number }) => void

let listener: RequestListener | null = null

/** Hears of every request any server of this process finished (one listener: the process's log). */
export function onEveryRequest (heard: RequestListener | null): void {
  listener = heard
}

/**
 * The first middleware of every server: the request runs under the caller's request id (a
 * new one if it sent none), so calls it makes to other servers carry it on and log lines
 * name it; its answer says it back; and when it ends it is counted in the metrics under its
 * route pattern, never its path.
 */
export function observeRequests (service: ServiceName): RequestHandler {
  return (req, res, next) => {
    const sent = req.get(Headers.requestId)
    const requestId = sent !== undefined && REQUEST_ID.test(sent) ? sent : newRequestId()
    res.set(Headers.requestId, requestId)
    const started = process.hrtime.bigint()
    const socket = req.socket
    res.once('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      const route = routeOf(req)
      const status = res.headersSent ? res.statusCode : 0
      // One request at a time per connection (our clients do not pipeline): what the socket
      // moved since the previous request on it ended is this request's, headers included.
      // (At arrival its bytes were read already, so a mark taken then would miss them.)
      const before = marks.get(socket) ?? { read: 0, written: 0 }
      const after = { read: socket.bytesRead, written: socket.bytesWritten }
      marks.set(socket, after)
      recordRequest({
        service,
        method: req.method,
        route,
        status,
        seconds,
        receivedBytes: Math.max(0, after.read - before.read),
        sentBytes: Math.max(0, after.written - before.written)
      })
      listener?.({ requestId, method: req.method, route, status, ms: seconds * 1000 })
    })
    withRequestId(requestId, next)
  }
}

/** Per connection, its byte counters when its last request ended. */
const marks = new WeakMap<Socket, { read: number, written: number }>()

/** The Express route pattern that answered, or "unmatched": never the path itself. */
function routeOf (req: Request & { route?: { path?: unknown } }): string {
  const pattern = req.route?.path
  return typeof pattern === 'string' ? `${req.baseUrl}${pattern}` : 'unmatched'
}

