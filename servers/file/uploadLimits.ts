import type { Request, RequestHandler } from 'express'
import { InsufficientStorageError, PayloadTooLargeError } from '../../src/shared/errors'
import type { FileStore } from './fileStore'

/** The largest body one upload (an append, a whole file, a file sent across) may carry. */
export const MAX_UPLOAD_BYTES = 64 * 1024 ** 3

/** How long a free-space figure is trusted for uploads that take little of it. */
const FREE_SPACE_TRUST_MS = 1000

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
 * over the free space of the server's disk (507): the rest of the body is then read on and
 * dropped for a bounded while before the connection is cut (drainRefused in
 * servers/common/http.ts). Every upload, with a length or without (a stream), is then
 * watched as it arrives: over the cap, or slower than the minimum rate over a window, its
 * connection is cut; the store then removes what it had written (as for a client that hung
 * up).
 */
export function uploadLimits (store: FileStore, opts: UploadLimitOptions = {}): RequestHandler {
  const maxBytes = opts.maxBytes ?? MAX_UPLOAD_BYTES
  const minBytesPerWindow = (opts.minBytesPerSecond ?? MIN_UPLOAD_BYTES_PER_SECOND) * (opts.rateWindowMs ?? UPLOAD_RATE_WINDOW_MS) / 1000
  const windowMs = opts.rateWindowMs ?? UPLOAD_RATE_WINDOW_MS
  const freeSpace = new FreeSpace(async () => (await store.statfs()).freeBytes)
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
    if (freeSpace.surelyFits(bytes)) {
      watchUpload(req, maxBytes, minBytesPerWindow, windowMs)
      next()
      return
    }
    freeSpace.measure().then((freeBytes) => {
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
 * The disk's free space as last measured, so that a stream of small uploads (one-line
 * appends) does not cost a statfs each: an upload is let through unasked while everything
 * let through since the last measure, itself included, is under half of what was free
 * then, and that measure is under a second old. A larger one, or one after that, measures
 * again. (What gets past it on a disk that fills up fast still fails with ENOSPC.)
 */
export class FreeSpace {
  private measured: { freeBytes: number, at: number } | null = null
  private letThrough = 0

  constructor (private readonly statfs: () => Promise<number>, private readonly now: () => number = Date.now) {}

  surelyFits (bytes: number): boolean {
    const last = this.measured
    if (last === null || this.now() - last.at > FREE_SPACE_TRUST_MS || this.letThrough + bytes > last.freeBytes / 2) return false
    this.letThrough += bytes
    return true
  }

  async measure (): Promise<number> {
    const freeBytes = await this.statfs()
    this.measured = { freeBytes, at: this.now() }
    this.letThrough = 0
    return freeBytes
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
  // The body has arrived (or the request is over): nothing more to watch. The socket's
  // listener goes too: a keep-alive connection carries many uploads, and each would leave one.
  const stop = (): void => {
    clearInterval(timer)
    socket.off('close', stop)
  }
  req.once('end', stop)
  req.once('close', stop)
  socket.once('close', stop)
}
