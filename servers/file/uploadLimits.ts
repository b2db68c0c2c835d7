import type { Request, RequestHandler } from 'express'
import { InsufficientStorageError, PayloadTooLargeError } from '../../src/shared/errors'
import type { FileStore } from './fileStore'

/** The largest body one upload (an append, a whole file, a file sent across) may carry. */
export const MAX_UPLOAD_BYTES = 64 * 1024 ** 3

/**
 * The slowest an upload may move, averaged over each window: a moving upload is never cut,
 * but one that trickles (a connection held open with a byte now and then) is.
 */
export const MIN_UPLOAD_BYTES_PER_SECOND = 1024
export const UPLOAD_RATE_WINDOW_MS = 30_000
/** How often an upload's bytes are counted: the cap may be passed by what arrives in this time. */
const COUNT_EVERY_MS = 200

export interface UploadLimitOptions {
  maxBytes?: number
  minBytesPerSecond?: number
  rateWindowMs?: number
}

/**
 * Refuses an upload before its body is read when its Content-Length is over the cap (413) or
 * over the free space of the server's disk (507): the connection is then closed rather than
 * read to its end (servers/common/http.ts). Every upload, with a length or without (a
 * stream), is then watched as it arrives: over the cap, or slower than the minimum rate over
 * a window, its connection is cut; the store then removes what it had written (as for a
 * client that hung up).
 */
export function uploadLimits (store: FileStore, opts: UploadLimitOptions = {}): RequestHandler {
  const maxBytes = opts.maxBytes ?? MAX_UPLOAD_BYTES
  const minBytesPerWindow = (opts.minBytesPerSecond ?? MIN_UPLOAD_BYTES_PER_SECOND) * (opts.rateWindowMs ?? UPLOAD_RATE_WINDOW_MS) / 1000
  const windowMs = opts.rateWindowMs ?? UPLOAD_RATE_WINDOW_MS
  return (req, _res, next) => {
    const declared = req.get('content-length')
    if (declared === undefined) {
      watchUpload(req, maxBytes, minBytesPerWindow, windowMs)
      next()
      return
    }
    const bytes = Number(declared)
    if (bytes > maxBytes) {
      next(new PayloadTooLargeError(`an upload of ${bytes} bytes is over this server's limit of ${maxBytes}`, { bytes, maxBytes }))
      return
    }
    if (bytes === 0) {
      next()
      return
    }
    store.statfs().then(({ freeBytes }) => {
      if (bytes > freeBytes) {
        next(new InsufficientStorageError(`an upload of ${bytes} bytes does not fit: ${freeBytes} bytes free on this file server`, { bytes, freeBytes }))
        return
      }
      watchUpload(req, maxBytes, minBytesPerWindow, windowMs)
      next()
    }, next)
  }
}

/**
 * Counts the bytes the connection brought since now (socket.bytesRead: a 'data' listener
 * would take the body from whoever reads it) and cuts the connection when they pass the cap
 * or a whole window brought fewer than the minimum.
 */
function watchUpload (req: Request, maxBytes: number, minBytesPerWindow: number, windowMs: number): void {
  const socket = req.socket
  const start = socket.bytesRead
  let windowStart = Date.now()
  let bytesAtWindowStart = start
  const timer = setInterval(() => {
    const read = socket.bytesRead
    if (read - start > maxBytes) {
      socket.destroy()
      return
    }
    if (Date.now() - windowStart < windowMs) return
    if (read - bytesAtWindowStart < minBytesPerWindow) {
      socket.destroy()
      return
    }
    windowStart = Date.now()
    bytesAtWindowStart = read
  }, Math.min(COUNT_EVERY_MS, windowMs))
  timer.unref()
  const stop = (): void => clearInterval(timer)
  // The body has arrived (or the request is over): nothing more to watch.
  req.once('end', stop)
  req.once('close', stop)
  socket.once('close', stop)
}
