/**
 * Typed errors shared by servers, client proxy and mount. Each class carries the one
 * HTTP status a server answers with and the one errno the mount answers with, so the
 * mapping lives here and nowhere else.
 */

export type ErrnoName =
  | 'ENOENT' | 'EINVAL' | 'EAGAIN' | 'EEXIST' | 'EACCES' | 'EIO' | 'ETIMEDOUT'
  | 'ENOTEMPTY' | 'EISDIR' | 'ENOTDIR' | 'ENAMETOOLONG' | 'ENOLCK' | 'EROFS' | 'ENOTSUP' | 'EPERM'
  | 'ENOSPC' | 'EXDEV' | 'EFBIG' | 'EPROTO' | 'EINTR' | 'EBUSY' | 'ESTALE'

export interface ErrorBody {
  error: {
    code: string
    message: string
    [detail: string]: unknown
  }
}

export class DfsError extends Error {
  /** Stable machine-readable code, sent on the wire as `error.code`. */
  readonly code: string = 'INTERNAL'
  readonly status: number = 500
  readonly errno: ErrnoName = 'EIO'
  readonly details: Record<string, unknown>

  constructor (message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.details = details
  }

  toBody (): ErrorBody {
    return { error: { ...this.details, code: this.code, message: this.message } }
  }
}

/**
 * Makes an error that is an answer rather than a fault (a name that is not there, which
 * sqlite asks about at every transaction) without capturing a stack trace: the capture was
 * most of such an error's cost (3.4 against 0.4 µs here), and nobody reads the stack of an
 * ENOENT.
 */
export function withoutStack<E extends Error> (make: () => E): E {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return make()
  } finally {
    Error.stackTraceLimit = limit
  }
}

export class NotFoundError extends DfsError {
  override readonly code = 'NOT_FOUND'
  override readonly status = 404
  override readonly errno = 'ENOENT'
}

export class BadPathError extends DfsError {
  override readonly code = 'BAD_PATH'
  override readonly status = 400
  override readonly errno = 'EINVAL'
}

export class NameTooLongError extends DfsError {
  override readonly code = 'NAME_TOO_LONG'
  override readonly status = 400
  override readonly errno = 'ENAMETOOLONG'
}

export class BadRequestError extends DfsError {
  override readonly code = 'BAD_REQUEST'
  override readonly status = 400
  override readonly errno = 'EINVAL'
}

/** The lock is held by someone else; retry later. */
export class LockedError extends DfsError {
  override readonly code = 'LOCKED'
  override readonly status = 423
  override readonly errno = 'EAGAIN'
}

/**
 * A folder cannot be renamed while writers hold locks on files inside it: their stores at
 * close would find the files gone. Try again once they have closed.
 */
export class BusyError extends DfsError {
  override readonly code = 'BUSY'
  override readonly status = 409
  override readonly errno = 'EBUSY'
}

/** The caller gave up waiting for a lock. */
export class LockTimeoutError extends DfsError {
  override readonly code = 'LOCK_TIMEOUT'
  override readonly status = 423
  override readonly errno = 'ENOLCK'
}

/** A wait the caller broke off (a program interrupted while waiting for a lock); never sent by a server. */
export class InterruptedError extends DfsError {
  override readonly code = 'INTERRUPTED'
  override readonly status = 499
  override readonly errno = 'EINTR'
}

/** A write without the lock, or with a lease that ran out or was superseded (fencing). */
export class LeaseError extends DfsError {
  override readonly code = 'LEASE_INVALID'
  override readonly status = 409
  override readonly errno = 'ENOLCK'
}

/** Two file servers claim one path, or a path already exists. */
export class ConflictError extends DfsError {
  override readonly code = 'CONFLICT'
  override readonly status = 409
  override readonly errno = 'EEXIST'
}

export class IsDirectoryError extends DfsError {
  override readonly code = 'IS_DIRECTORY'
  override readonly status = 409
  override readonly errno = 'EISDIR'
}

export class NotDirectoryError extends DfsError {
  override readonly code = 'NOT_DIRECTORY'
  override readonly status = 409
  override readonly errno = 'ENOTDIR'
}

export class NotEmptyError extends DfsError {
  override readonly code = 'NOT_EMPTY'
  override readonly status = 409
  override readonly errno = 'ENOTEMPTY'
}

export class NotSupportedError extends DfsError {
  override readonly code = 'NOT_SUPPORTED'
  override readonly status = 501
  override readonly errno = 'ENOTSUP'
}

/** A rename that would move a folder between file servers: callers such as mv copy instead. */
export class CrossServerError extends DfsError {
  override readonly code = 'CROSS_SERVER'
  override readonly status = 409
  override readonly errno = 'EXDEV'
}

/** A JSON body over the server's limit (16 MB), or an upload over the file server's cap. */
export class PayloadTooLargeError extends DfsError {
  override readonly code = 'TOO_LARGE'
  override readonly status = 413
  override readonly errno = 'EFBIG'
}

/** The file server's disk has no room for an upload of this size. */
export class InsufficientStorageError extends DfsError {
  override readonly code = 'NO_SPACE'
  override readonly status = 507
  override readonly errno = 'ENOSPC'
}

/** No credential, or one that is expired, revoked, tampered with or signed by another cluster's key. */
export class UnauthorizedError extends DfsError {
  override readonly code = 'UNAUTHORIZED'
  override readonly status = 401
  override readonly errno = 'EACCES'
}

/** A valid credential whose role may not do this (a client on a server route, a read-only token writing). */
export class ForbiddenError extends DfsError {
  override readonly code = 'FORBIDDEN'
  override readonly status = 403
  override readonly errno = 'EACCES'
}

/** The peer speaks another version of the dfs protocol. */
export class ProtocolMismatchError extends DfsError {
  override readonly code = 'PROTOCOL_MISMATCH'
  override readonly status = 400
  override readonly errno = 'EPROTO'
}

/** A server answered over TLS with a certificate the caller does not trust: said at once, never retried. */
export class UntrustedServerError extends DfsError {
  override readonly code = 'UNTRUSTED_SERVER'
  override readonly status = 502
  override readonly errno = 'EACCES'
}

/** A server did not answer (refused, reset or timed out). */
export class ServerUnavailableError extends DfsError {
  override readonly code = 'UNAVAILABLE'
  override readonly status = 503
  override readonly errno = 'EIO'
}

/**
 * A name the caller looked up a moment ago is gone by the time it opens it (another mount
 * removed it). The mount answers ESTALE, after which the kernel looks the name up once more,
 * as it does for NFS: an open(O_CREAT) then creates the file, which the open itself cannot do
 * (the kernel strips O_CREAT from what it sends for a name it has looked up). The client core
 * raises it; a server has no use for it, and would answer 404.
 */
export class StaleHandleError extends DfsError {
  override readonly code = 'STALE'
  override readonly status = 404
  override readonly errno = 'ESTALE'
}

/**
 * This client's cache folder could not hold a copy (its disk is full, or the folder went):
 * the file's server is not at fault. A reader then reads the file from its server by
 * ranges, with no copy (OpenFileTable.read). Raised by the client core only.
 */
export class LocalCacheError extends DfsError {
  override readonly code = 'LOCAL_CACHE'
  override readonly status = 507
  override readonly errno = 'EIO'
}

/**
 * The failure of a step on the local disk (a copy written, moved or opened in the cache
 * folder) as a LocalCacheError naming the folder, or null for any other failure (the
 * network's, the server's). Socket errors never carry these codes, nor a path.
 */
export function localCacheFailure (err: unknown, cacheDir: string, path: string): LocalCacheError | null {
  const { code, path: onDisk } = (err ?? {}) as NodeJS.ErrnoException
  const local = code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS' || (typeof onDisk === 'string' && typeof code === 'string')
  if (!local || err instanceof DfsError) return null
  return new LocalCacheError(`the cache folder ${cacheDir} could not hold a copy of ${path} (${String(code)})`, { path }, { cause: err })
}

const byCode: Record<string, new (message: string, details?: Record<string, unknown>) => DfsError> = {
  NOT_FOUND: NotFoundError,
  BAD_PATH: BadPathError,
  NAME_TOO_LONG: NameTooLongError,
  BAD_REQUEST: BadRequestError,
  LOCKED: LockedError,
  BUSY: BusyError,
  LOCK_TIMEOUT: LockTimeoutError,
  LEASE_INVALID: LeaseError,
  CONFLICT: ConflictError,
  IS_DIRECTORY: IsDirectoryError,
  NOT_DIRECTORY: NotDirectoryError,
  NOT_EMPTY: NotEmptyError,
  NOT_SUPPORTED: NotSupportedError,
  CROSS_SERVER: CrossServerError,
  UNAVAILABLE: ServerUnavailableError,
  TOO_LARGE: PayloadTooLargeError,
  PROTOCOL_MISMATCH: ProtocolMismatchError,
  NO_SPACE: InsufficientStorageError,
  UNAUTHORIZED: UnauthorizedError,
  FORBIDDEN: ForbiddenError,
  UNTRUSTED_SERVER: UntrustedServerError,
  STALE: StaleHandleError
}

/** Rebuilds the typed error a server sent, so callers can branch with instanceof. */
export function errorFromBody (status: number, body: unknown): DfsError {
  const error = (body as Partial<ErrorBody> | undefined)?.error
  if (error && typeof error.code === 'string' && typeof error.message === 'string') {
    const { code, message, ...details } = error
    const ErrorClass = byCode[code] ?? DfsError
    return new ErrorClass(message, details)
  }
  if (status === 404) return new NotFoundError('not found')
  return new DfsError(`unexpected answer: HTTP ${status}`, { status })
}

/** Any thrown value as a DfsError; unknown failures become an internal error (EIO, 500). */
export function asDfsError (err: unknown): DfsError {
  if (err instanceof DfsError) return err
  const nodeCode = (err as NodeJS.ErrnoException | undefined)?.code
  if (nodeCode === 'ENOENT') return new NotFoundError('no such file', {}, { cause: err })
  if (nodeCode === 'EISDIR') return new IsDirectoryError('is a directory', {}, { cause: err })
  if (nodeCode === 'ENOTDIR') return new NotDirectoryError('not a directory', {}, { cause: err })
  if (nodeCode === 'ENOTEMPTY') return new NotEmptyError('directory not empty', {}, { cause: err })
  if (nodeCode === 'EEXIST') return new ConflictError('already exists', {}, { cause: err })
  // Legal at the mount, too long once the root is put before it: the disk path stays unsaid.
  if (nodeCode === 'ENAMETOOLONG') return new NameTooLongError('name too long', {}, { cause: err })
  // A disk (or quota) full in the middle of a step: the caller is told ENOSPC, not EIO.
  if (nodeCode === 'ENOSPC' || nodeCode === 'EDQUOT') return new InsufficientStorageError('no space left on the file server\'s disk', {}, { cause: err })
  return new DfsError(err instanceof Error ? err.message : String(err), {}, { cause: err })
}
