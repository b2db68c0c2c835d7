import type { Request, Response } from 'express'

/** Lets the event loop run once through its I/O, twice to be sure it polled after now. */
async function afterPendingIo (): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

export interface CallerWatch {
  /** Whether the caller hung up, as far as this process has read its socket. */
  hungUp: () => boolean
  /** Whether the caller hung up, after reading what its socket holds now: ask before granting. */
  gone: () => Promise<boolean>
}

/**
 * Watches a long-polling request for its caller hanging up, so that nothing is granted to
 * nobody. A request can reach us together with its caller's hang-up: a caller that timed out
 * while this server was stopped (SIGSTOP, a long pause), or gave up waiting, closed its
 * connection, and the request and the close wait in the socket, in that order. The request
 * is read first; the close only on a later turn of the event loop. So before each grant, let
 * the loop read what the socket holds, then look.
 */
export function watchCaller (req: Request, res: Response): CallerWatch {
  let closed = false
  res.on('close', () => { closed = !res.writableFinished })
  const hungUp = (): boolean => closed || req.socket.destroyed || req.socket.readableEnded
  return {
    hungUp,
    gone: async () => {
      await afterPendingIo()
      return hungUp()
    }
  }
}
