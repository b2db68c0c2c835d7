import type { Express } from 'express'
import type { CallbackRoutes } from '../../src/shared/api/callbackCalls'
import type { CallbackRenewAnswer } from '../../src/shared/protocol'
import { jsonBody } from '../common/http'
import { bodyOf, queryOf } from '../common/input'
import type { CallbackTable } from './callbacks'
import { subjectOf } from './callerClient'

/**
 * A server's callback routes over its table: the client's event channel (breaks go down it;
 * comments keep it and its idle timer alive), lease renewal and break acknowledgement.
 */
export function mountCallbackRoutes (app: Express, table: CallbackTable, routes: CallbackRoutes): void {
  app.get(routes.events, (req, res) => {
    const client = queryOf(req).string('client', 64)
    table.claim(client, subjectOf(req))
    res.set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' })
    res.flushHeaders()
    res.write(`event: hello\ndata: ${JSON.stringify({ leaseMs: table.leaseMs })}\n\n`)
    table.attach(client, res)
    const heartbeat = setInterval(() => res.write(': alive\n\n'), Math.max(100, Math.floor(table.leaseMs / 3)))
    res.on('close', () => {
      clearInterval(heartbeat)
      table.detach(client, res)
    })
  })

  app.post(routes.renewCallbacks, jsonBody, (req, res) => {
    const answer: CallbackRenewAnswer = table.renew(bodyOf(req).string('client', 64), subjectOf(req))
    res.json(answer)
  })

  app.post(routes.acknowledgeBreak, jsonBody, (req, res) => {
    const body = bodyOf(req)
    table.acknowledge(body.string('client', 64), body.int('seq', { min: 1 }), subjectOf(req))
    res.json({})
  })
}
