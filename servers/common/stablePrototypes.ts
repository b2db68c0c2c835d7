import http from 'node:http'
import type { Express } from 'express'

/** The request and response classes a server built on `app` makes its objects with. */
export interface ServerClasses {
  IncomingMessage: typeof http.IncomingMessage
  ServerResponse: typeof http.ServerResponse
}

/**
 * Request and response classes born with `app`'s prototypes (Express's `req` and `res`
 * methods), which `app` then uses as its own.
 *
 * Express gives every request and response its methods by swapping their prototype
 * (Object.setPrototypeOf) as it starts to handle them. V8 then sees each one change shape
 * after it was made, so the property accesses of Node's HTTP code and Express's own miss their
 * inline caches on every request. Made with the right prototype from the start, the swap
 * finds nothing to change (V8 returns early when the prototype is the same) and the objects
 * keep one shape. Measured on this kind of machine, one keep-alive GET answered with
 * `res.json`: 232–252 µs of the server's CPU a request before, 145–154 after (a bare
 * `http.createServer` handler: 118).
 */
export function stablePrototypeClasses (app: Express): ServerClasses {
  class DfsIncomingMessage extends http.IncomingMessage {}
  class DfsServerResponse<Request extends http.IncomingMessage = http.IncomingMessage> extends http.ServerResponse<Request> {}
  // Below app's own: the request's methods (req.get, req.query, ...) and `app` stay reachable.
  Object.setPrototypeOf(DfsIncomingMessage.prototype, app.request)
  Object.setPrototypeOf(DfsServerResponse.prototype, app.response)
  app.request = DfsIncomingMessage.prototype as unknown as Express['request']
  app.response = DfsServerResponse.prototype as unknown as Express['response']
  return { IncomingMessage: DfsIncomingMessage, ServerResponse: DfsServerResponse }
}
