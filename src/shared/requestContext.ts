import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * The request a server is working on, carried through its awaits: a call it makes to
 * another server on that request's behalf sends the same request id (transport.ts), so one
 * slow `cat` can be followed in the logs of every server it touched.
 */
const current = new AsyncLocalStorage<{ requestId: string }>()

/** Runs `task` (and all it awaits) as part of the request with this id. */
export function withRequestId<T> (requestId: string, task: () => T): T {
  return current.run({ requestId }, task)
}

/** The id of the request this code runs for, if it runs for one. */
export function currentRequestId (): string | undefined {
  return current.getStore()?.requestId
}
