import { AsyncLocalStorage } from 'node:async_hooks'
import crypto from 'node:crypto'

/**
 * The request a server is working on, carried through its awaits: a call it makes to
 * another server on that request's behalf sends the same request id (transport.ts), so one
 * slow `cat` can be followed in the logs of every server it touched.
 */
const current = new AsyncLocalStorage<{ requestId: string, failure?: unknown }>()

/** Runs `task` (and all it awaits) as part of the request with this id. */
export function withRequestId<T> (requestId: string, task: () => T): T {
  return current.run({ requestId }, task)
}

/** The id of the request this code runs for, if it runs for one. */
export function currentRequestId (): string | undefined {
  return current.getStore()?.requestId
}

/** Records why the request this code runs for failed, for the line that logs its outcome. */
export function noteFailure (err: unknown): void {
  const store = current.getStore()
  if (store !== undefined) store.failure = err
}

/** Why the request this code runs for failed, as noteFailure recorded it. */
export function currentFailure (): unknown {
  return current.getStore()?.failure
}

/**
 * A new request id: 8 random bytes as hex, cut from a pool filled 4 KiB at a time. A
 * crypto.randomBytes(8) per id cost 8 to 10 µs here, a twentieth of a whole call and more
 * than a tenth of a mount's getattr answered from memory (every FUSE operation takes one).
 */
export function newRequestId (): string {
  if (idAt + 8 > idPool.length) {
    idPool = crypto.randomFillSync(Buffer.allocUnsafe(4096))
    idAt = 0
  }
  idAt += 8
  return idPool.toString('hex', idAt - 8, idAt)
}

let idPool = Buffer.alloc(0)
let idAt = 0
