import type { RequestHandler } from 'express'
import { InsufficientStorageError, PayloadTooLargeError } from '../../src/shared/errors'
import type { FileStore } from './fileStore'

/** The largest body one upload (an append, a whole file, a file sent across) may carry. */
export const MAX_UPLOAD_BYTES = 64 * 1024 ** 3

/** How long a free-space figure is trusted for uploads that take little of it. */
const FREE_SPACE_TRUST_MS = 1000

/**
 * Refuses an upload before its body is read when its Content-Length is over the cap (413) or
 * over the free space of the server's disk (507): the connection is then closed rather than
 * read to its end (servers/common/http.ts). An upload without a length (a stream) is bounded
 * by the disk: a full disk fails it with ENOSPC, and the partial bytes are removed.
 */
export function uploadLimits (store: FileStore, maxBytes = MAX_UPLOAD_BYTES): RequestHandler {
  const freeSpace = new FreeSpace(async () => (await store.statfs()).freeBytes)
  return (req, _res, next) => {
    const declared = req.get('content-length')
    if (declared === undefined) {
      next()
      return
    }
    const bytes = Number(declared)
    if (bytes > maxBytes) {
      next(new PayloadTooLargeError(`an upload of ${bytes} bytes is over this server's limit of ${maxBytes}`, { bytes, maxBytes }))
      return
    }
    if (bytes === 0 || freeSpace.surelyFits(bytes)) {
      next()
      return
    }
    freeSpace.measure().then((freeBytes) => {
      if (bytes > freeBytes) next(new InsufficientStorageError(`an upload of ${bytes} bytes does not fit: ${freeBytes} bytes free on this file server`, { bytes, freeBytes }))
      else next()
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
