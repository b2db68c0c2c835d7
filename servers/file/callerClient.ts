import type { Request } from 'express'
import { Headers } from '../../src/shared/protocol'
import type { Changer } from '../../src/shared/protocol'
import type { Caller } from '../common/auth'
import type { CallbackTable } from './callbacks'

/** The credential subject a client id is bound to: the caller's, or none on an open server. */
export function subjectOf (req: Request): string | undefined {
  const caller = req.res?.locals.caller as Caller | undefined
  return caller === undefined || caller.open ? undefined : caller.subject
}

/**
 * The client that made a change, whose own callback is not broken: the X-Dfs-Client-Id only
 * when it is the caller's. Naming another's id would otherwise spare that client the break
 * and leave it trusting a stale copy.
 */
export function writerOf (callbacks: CallbackTable, req: Request): string | undefined {
  return callbacks.own(req.get(Headers.clientId), subjectOf(req))
}

/** Whether the request asks for a callback (X-Dfs-Callback: want) and names its client. */
export function wantsCallback (req: Request): boolean {
  return req.get(Headers.callback) === 'want' && req.get(Headers.clientId) !== undefined
}

/** Promises the calling client (X-Dfs-Client) a callback on the key, under its credential's subject; false with no client id, or no promise made. */
export function grantCaller (callbacks: CallbackTable, req: Request, key: string): boolean {
  const client = req.get(Headers.clientId)
  return client !== undefined && callbacks.grant(client, key, subjectOf(req))
}

/**
 * Whose change this is, as the directory is told when a claim or drop is made on the
 * caller's behalf (see Changer): the directory checks the id against the subject itself.
 */
export function changerOf (req: Request): Changer | undefined {
  const client = req.get(Headers.clientId)
  return client === undefined ? undefined : { client, subject: subjectOf(req) }
}
