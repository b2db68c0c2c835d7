import type { Readable } from 'node:stream'
import type {
  FileListAnswer, FileMeta, FileServerStats, MetaKind,
  HealthAnswer, IncomingRequest, RemovedAnswer, RenameAnswer, RenameRequest, StatAnswer, StatfsAnswer
} from '../protocol'
import { FileRoutes, Headers, MAX_CALLBACK_LEASE_MS, metaFromContentHeaders } from '../protocol'
import { errorFromBody } from '../errors'
import type { Transport } from '../transport'
import { CallbackCalls } from './callbackCalls'
import type { LeaseCredential } from '../leaseCredential'

/** A listing may take this many times a request's usual deadline (one stat per entry on the server). */
const LIST_DEADLINE_FACTOR = 6

/** A file's bytes for an upload: whole in memory, or streamed from a file or a peer. */
export type Bytes = Buffer | Readable

/** GET /content: the caller's copy is current, or here is the current version as a stream. */
export type ContentAnswer = ({ current: true } | { current: false, meta: FileMeta, body: Readable }) & {
  /** The server promised a callback on the file (asked for with `callback`). */
  callback: boolean
}

export interface ContentOptions {
  /** An ETag: the answer is `current` (no body) while it names the current version. */
  ifNoneMatch?: string
  /** A writer about to change the file whole (its lease credential): the server holds back appends without a lease from now on. */
  token?: LeaseCredential
  /** Ask for a callback (the transport must carry a client id, and the client an event channel). */
  callback?: boolean
}

/** One file server's API: the files and folders under its root. */
export class FileApi {
  /** The client's event channel, lease renewal and break acknowledgements for callbacks here. */
  readonly callbackCalls: CallbackCalls

  constructor (readonly transport: Transport) {
    this.callbackCalls = new CallbackCalls(transport, FileRoutes)
  }

  /**
   * A change is answered only once every other client holding a callback on the file has
   * heard of it, or its callback lease ran out: it may take that much longer than a read.
   */
  private changeDeadline (): number {
    return this.transport.timeoutMs + MAX_CALLBACK_LEASE_MS
  }

  /** Names the server in errors made outside a call (a download that breaks midway). */
  unavailable (err: unknown): Error {
    return this.transport.unavailable(err)
  }

  async health (): Promise<HealthAnswer> {
    return await this.transport.json({ method: 'GET', route: FileRoutes.health })
  }

  async stats (): Promise<FileServerStats> {
    return await this.transport.json({ method: 'GET', route: FileRoutes.stats })
  }

  async statfs (): Promise<StatfsAnswer> {
    return await this.transport.json({ method: 'GET', route: FileRoutes.statfs })
  }

  async stat (path: string): Promise<FileMeta> {
    return await this.transport.json({ method: 'GET', route: FileRoutes.stat, query: { path } })
  }

  /** A folder's entries; a folder of many thousands takes a while, so the deadline is longer. */
  async list (path: string, opts: { callbacks?: boolean } = {}): Promise<FileListAnswer> {
    const headers: Record<string, string> = opts.callbacks === true ? { [Headers.callback]: 'want' } : {}
    return await this.transport.json({ method: 'GET', route: FileRoutes.list, query: { path }, headers, timeoutMs: this.transport.timeoutMs * LIST_DEADLINE_FACTOR })
  }

  /**
   * The file's bytes, unless `ifNoneMatch` (an ETag) still names its current version. A
   * writer about to change the file whole passes its lease token, so the server holds back
   * appends without a lease from now on.
   */
  async content (path: string, opts: ContentOptions = {}): Promise<ContentAnswer> {
    const headers: Record<string, string> = opts.token !== undefined ? lockHeader(opts.token) : {}
    if (opts.ifNoneMatch !== undefined) headers['If-None-Match'] = opts.ifNoneMatch
    if (opts.callback === true) headers[Headers.callback] = 'want'
    const res = await this.transport.send({ method: 'GET', route: FileRoutes.content, query: { path }, headers, stream: true })
    const body = res.data as Readable
    const callback = res.headers[Headers.callback] === 'granted'
    if (res.status === 304) {
      body.resume()
      return { current: true, callback }
    }
    return { current: false, meta: metaFromContentHeaders(path, res.headers as Record<string, unknown>), body, callback }
  }

  /**
   * Up to `length` bytes from `position` of the version `etag` names (a reader far ahead of
   * its download, a partial working copy): the bytes, fewer at the end of the file; a
   * ConflictError once the file is another version. Under `token` (a writer's lease) the
   * server knows the lease from then on, as after a fetch under it.
   */
  async contentRange (path: string, etag: string, position: number, length: number, token?: LeaseCredential): Promise<Buffer> {
    const headers = { ...(token !== undefined ? lockHeader(token) : {}), Range: `bytes=${position}-${position + length - 1}`, 'If-Match': etag }
    const res = await this.transport.send({ method: 'GET', route: FileRoutes.content, query: { path }, headers, stream: true })
    const chunks: Buffer[] = []
    for await (const chunk of res.data as Readable) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  }

  /**
   * stat, asking for a callback on the file as well and, with `inlineUpTo`, for the bytes of
   * a file of at most that many bytes (`content`, read together with `meta`).
   */
  async statWithCallback (path: string, inlineUpTo?: number): Promise<{ meta: FileMeta, callback: boolean, content?: Buffer }> {
    const query = { path, inline: inlineUpTo }
    const res = await this.transport.send({ method: 'GET', route: FileRoutes.stat, query, headers: { [Headers.callback]: 'want' } })
    if (res.status >= 400) throw errorFromBody(res.status, res.data)
    const { content, ...meta } = res.data as StatAnswer
    return { meta, callback: res.headers[Headers.callback] === 'granted', ...(content === undefined ? {} : { content: Buffer.from(content, 'base64') }) }
  }

  /**
   * Appends at the file's end. Without a lease token the server serializes the append
   * itself and answers LOCKED while someone holds the key; `changeId` makes a retry safe.
   */
  async append (path: string, bytes: Bytes, opts: { token?: LeaseCredential, changeId?: string } = {}): Promise<FileMeta> {
    const headers: Record<string, string> = opts.token !== undefined ? lockHeader(opts.token) : {}
    if (opts.changeId !== undefined) headers[Headers.changeId] = opts.changeId
    return await this.transport.json({ method: 'POST', route: FileRoutes.append, query: { path }, body: bytes, headers, timeoutMs: this.changeDeadline() })
  }

  /** Replaces the file's content whole, under its lease; `changeId` makes a retry safe. */
  async store (path: string, bytes: Bytes, token: LeaseCredential, changeId?: string): Promise<FileMeta> {
    const headers = lockHeader(token)
    if (changeId !== undefined) headers[Headers.changeId] = changeId
    return await this.transport.json({ method: 'PUT', route: FileRoutes.content, query: { path }, body: bytes, headers, timeoutMs: this.changeDeadline() })
  }

  /**
   * A range write: `body` (rangeFrames.ts) into the file at `fromVersion`, which then has
   * `size` bytes; a ConflictError if it has moved past that version.
   */
  async writeRanges (path: string, body: Buffer, opts: { size: number, fromVersion: number, token: LeaseCredential, changeId?: string }): Promise<FileMeta> {
    const headers = lockHeader(opts.token)
    if (opts.changeId !== undefined) headers[Headers.changeId] = opts.changeId
    return await this.transport.json({
      method: 'PATCH', route: FileRoutes.content, query: { path, size: opts.size, fromVersion: opts.fromVersion }, body, headers, timeoutMs: this.changeDeadline()
    })
  }

  /** A file, folder or symbolic link (`target`); `mode`: its permission bits, else the server's default. */
  async create (path: string, kind: MetaKind, opts: { mode?: number, target?: string } = {}): Promise<FileMeta> {
    return await this.transport.json({ method: 'POST', route: FileRoutes.create, query: { path, kind, mode: opts.mode, target: opts.target } })
  }

  /**
   * A new file with its bytes, mode and mtime in one request (PUT /create): ConflictError if
   * the path exists anywhere. `changeId` makes a retry after a lost answer safe. A creator
   * that goes on writing sends the path's lease (`token`) and asks for a callback on the file
   * (`callback`): `callback` in the answer says whether it was promised.
   */
  async createWithContent (path: string, bytes: Buffer, opts: { mode?: number, mtimeMs?: number, changeId?: string, token?: LeaseCredential, callback?: boolean } = {}): Promise<{ meta: FileMeta, callback: boolean }> {
    const headers: Record<string, string> = {
      ...(opts.changeId !== undefined ? { [Headers.changeId]: opts.changeId } : {}),
      ...(opts.token !== undefined ? lockHeader(opts.token) : {}),
      ...(opts.callback === true ? { [Headers.callback]: 'want' } : {})
    }
    const res = await this.transport.send({
      method: 'PUT', route: FileRoutes.create, query: { path, mode: opts.mode, mtimeMs: opts.mtimeMs }, body: bytes, headers, timeoutMs: this.changeDeadline()
    })
    if (res.status >= 400) throw errorFromBody(res.status, res.data)
    return { meta: res.data as FileMeta, callback: res.headers[Headers.callback] === 'granted' }
  }

  async truncate (path: string, size: number, token: LeaseCredential): Promise<FileMeta> {
    return await this.transport.json({ method: 'POST', route: FileRoutes.truncate, query: { path, size }, headers: lockHeader(token), timeoutMs: this.changeDeadline() })
  }

  /** `keepLease`: the lease stays the caller's past the unlink (Headers.keepLease). */
  /** With no `token`, the file server removes the file only if no lease holds it (LockedError otherwise). */
  async unlink (path: string, token: LeaseCredential | undefined, opts: { keepLease?: boolean } = {}): Promise<RemovedAnswer> {
    const headers: Record<string, string> = token === undefined ? {} : lockHeader(token)
    if (opts.keepLease === true) headers[Headers.keepLease] = '1'
    return await this.transport.json({ method: 'POST', route: FileRoutes.unlink, query: { path }, headers, timeoutMs: this.changeDeadline() })
  }

  async rmdir (path: string): Promise<RemovedAnswer> {
    return await this.transport.json({ method: 'POST', route: FileRoutes.rmdir, query: { path } })
  }

  async utimes (path: string, mtimeMs: number, atimeMs?: number): Promise<FileMeta> {
    return await this.transport.json({ method: 'POST', route: FileRoutes.utimes, query: { path, mtimeMs, atimeMs }, timeoutMs: this.changeDeadline() })
  }

  async chmod (path: string, mode: number): Promise<FileMeta> {
    return await this.transport.json({ method: 'POST', route: FileRoutes.chmod, query: { path, mode }, timeoutMs: this.changeDeadline() })
  }

  /** A file's rename carries its lease (`fromToken`); a folder's none. */
  async rename (request: RenameRequest, fromToken: LeaseCredential | undefined, timeoutMs: number): Promise<RenameAnswer> {
    return await this.transport.json({
      method: 'POST', route: FileRoutes.rename, body: request, headers: fromToken === undefined ? {} : lockHeader(fromToken), timeoutMs: timeoutMs + 2 * MAX_CALLBACK_LEASE_MS
    })
  }

  /** Server to server: a renamed file's bytes arrive at the server that will hold them. */
  async incoming (request: IncomingRequest, bytes: Bytes, token: LeaseCredential): Promise<FileMeta> {
    const { path, lockPath, fromVersion, mtimeMs, mode, target, replace, keepVersion } = request
    return await this.transport.json({
      method: 'PUT', route: FileRoutes.incoming, query: { path, lockPath, fromVersion, mtimeMs, mode, target, replace, keepVersion }, body: bytes, headers: lockHeader(token)
    })
  }

  /** Server to server: the rename could not be switched, the unclaimed copy goes again. */
  async incomingAbort (path: string, lockPath: string, token: LeaseCredential): Promise<RemovedAnswer> {
    return await this.transport.json({ method: 'POST', route: FileRoutes.incomingAbort, query: { path, lockPath }, headers: lockHeader(token) })
  }
}

/** Tokens here are lease credentials, TOKEN.SECRET (leaseCredential.ts), not bare fencing numbers. */
function lockHeader (token: LeaseCredential): Record<string, string> {
  return { [Headers.lockToken]: token }
}
