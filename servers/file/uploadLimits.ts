import type { RequestHandler } from 'express'
import { InsufficientStorageError, PayloadTooLargeError } from '../../src/shared/errors'
import type { FileStore } from './fileStore'

/** The largest body one upload (an append, a whole file, a file sent across) may carry. */
export const MAX_UPLOAD_BYTES = 64 * 1024 ** 3

/**
 * Refuses an upload before its body is read when its Content-Length is over the cap (413) or
 * over the free space of the server's disk (507): the connection is then closed rather than
 * read to its end (servers/common/http.ts). An upload without a length (a stream) is bounded
 * by the disk: a full disk fails it with ENOSPC, and the partial bytes are removed.
 */
export function uploadLimits (store: FileStore, maxBytes = MAX_UPLOAD_BYTES): RequestHandler {
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
    if (bytes === 0) {
      next()
      return
    }
    store.statfs().then(({ freeBytes }) => {
      if (bytes > freeBytes) next(new InsufficientStorageError(`an upload of ${bytes} bytes does not fit: ${freeBytes} bytes free on this file server`, { bytes, freeBytes }))
      else next()
    }, next)
  }
}
