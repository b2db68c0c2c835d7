import crypto from 'node:crypto'
import http from 'node:http'
import { pipeline, Transform } from 'node:stream'
import type { Readable } from 'node:stream'
import axios from 'axios'
import type { AxiosInstance, AxiosRequestConfig, AxiosResponse } from 'axios'
import { DEFAULT_TIMEOUT_MS } from './defaults'
import { DfsError, errorFromBody, ProtocolMismatchError, ServerUnavailableError } from './errors'
import { Headers, PROTOCOL_VERSION } from './protocol'

/** Keep-alive saves a TCP handshake per call: most dfs calls are small and many. */
const keepAliveAgent = new http.Agent({ keepAlive: true, maxSockets: 64 })

/** Slowest transfer rate tolerated before a large upload counts as not answering (bytes/ms). */
const MIN_UPLOAD_BYTES_PER_MS = 1000

/**
 * Who is calling, sent with every call. Empty for now: the credential and the client id are
 * where authentication and per-client state will plug in, in this one place.
 */
export interface CallerIdentity {
  /** A bearer credential, read at each call so a renewed one is picked up. */
  credential?: () => string | undefined
  /** A stable id of the calling client (a mount, a CLI run, a file server). */
  clientId?: string
}

/** One call as the typed service APIs describe it. */
export interface Call {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE'
  route: string
  query?: Record<string, string | number | boolean | undefined>
  /** JSON (any plain value), or bytes: a Buffer or a stream. */
  body?: unknown
  headers?: Record<string, string>
  /** A deadline longer than the transport's own (a long poll, a large copy). */
  timeoutMs?: number
  /** The answer's body as a stream (downloads); an error body is still read and thrown. */
  stream?: boolean
}

/**
 * The one HTTP transport every dfs call goes through: the typed service APIs
 * (src/shared/api/) build calls, this sends them. It alone decides deadlines (a Buffer
 * upload gets time in proportion to its size; streams in either direction are watched for
 * silence instead, so one that keeps moving is never cut), which calls are sent again after
 * a dropped kept-alive connection (reads only), and which headers every call carries
 * (protocol version, request id, client id, credential). It names the service in every
 * failure ("file server 2 at 127.0.0.1:7081 is not answering") and turns error bodies back
 * into the typed errors of errors.ts.
 */
export class Transport {
  private readonly http: AxiosInstance

  constructor (readonly name: string, readonly baseUrl: string, readonly timeoutMs = DEFAULT_TIMEOUT_MS, private readonly caller: CallerIdentity = {}) {
    this.http = axios.create({
      baseURL: baseUrl,
      timeout: timeoutMs,
      httpAgent: keepAliveAgent,
      maxBodyLength: Infinity,
      maxContentLength: Infinity,
      maxRedirects: 0,
      validateStatus: () => true,
      proxy: false
    })
  }

  get where (): string {
    return `${this.name} at ${new URL(this.baseUrl).host}`
  }

  /** A call whose answer is JSON; an error status is thrown as its typed error. */
  async json<T> (call: Call): Promise<T> {
    const res = await this.send(call)
    if (res.status >= 400) throw errorFromBody(res.status, res.data)
    return res.data as T
  }

  /**
   * Sends a call and returns the raw answer, whatever its status; with `stream` an error
   * body is read and thrown as its typed error.
   */
  async send (call: Call): Promise<AxiosResponse> {
    const watchdog = new IdleWatchdog(this.timeoutMs)
    const request: AxiosRequestConfig = {
      method: call.method,
      url: call.route,
      params: call.query,
      headers: this.headersFor(call),
      signal: watchdog.signal,
      responseType: call.stream === true ? 'stream' : 'json'
    }
    if (call.timeoutMs !== undefined) request.timeout = call.timeoutMs
    if (isReadable(call.body)) {
      request.timeout = 0
      request.data = watchdog.through(call.body, 'upload')
    } else if (Buffer.isBuffer(call.body)) {
      request.data = call.body
      request.timeout = (call.timeoutMs ?? this.timeoutMs) + Math.ceil(call.body.length / MIN_UPLOAD_BYTES_PER_MS)
    } else if (call.body !== undefined) {
      request.data = call.body
    } else if (call.method === 'POST' || call.method === 'PUT') {
      request.data = {}
    }
    let res: AxiosResponse
    try {
      try {
        res = await this.http.request(request)
      } catch (err) {
        // A kept-alive connection the server closed (it restarted) fails the first request
        // sent on it; a read is safe to send once more, on a new connection.
        if (!isReusedConnectionFailure(err) || !isIdempotent(call) || watchdog.reason) throw err
        res = await this.http.request(request)
      }
    } catch (err) {
      watchdog.stop()
      throw this.unavailable(watchdog.reason ?? err)
    }
    watchdog.stop()
    this.checkProtocol(res)
    if (call.stream === true) {
      if (res.status >= 400) throw errorFromBody(res.status, await readJson(res.data as Readable))
      // The body may still stall after the headers came: watch it until it ends (a 304 has none).
      if (res.status !== 304 && res.headers['content-length'] !== '0') {
        res.data = new IdleWatchdog(this.timeoutMs).through(res.data as Readable, 'download')
      }
    }
    return res
  }

  /** Any failure to reach this service, named: "file server 2 at ... is not answering". */
  unavailable (err: unknown): DfsError {
    if (err instanceof DfsError) return err
    const code = (err as { code?: string }).code ?? 'error'
    const why = code === 'ECONNABORTED' || code === 'ETIMEDOUT' || code === IDLE ? `no answer within ${this.timeoutMs} ms` : code
    return new ServerUnavailableError(`${this.where} is not answering (${why})`, { server: this.baseUrl }, { cause: err })
  }

  private headersFor (call: Call): Record<string, string> {
    const headers: Record<string, string> = {
      [Headers.protocol]: String(PROTOCOL_VERSION),
      [Headers.requestId]: crypto.randomBytes(8).toString('hex'),
      ...call.headers
    }
    if (Buffer.isBuffer(call.body) || isReadable(call.body)) headers['Content-Type'] ??= 'application/octet-stream'
    if (this.caller.clientId !== undefined) headers[Headers.clientId] = this.caller.clientId
    const credential = this.caller.credential?.()
    if (credential !== undefined) headers.Authorization = `Bearer ${credential}`
    return headers
  }

  /** A peer speaking another protocol version says so on every answer: refuse it clearly. */
  private checkProtocol (res: AxiosResponse): void {
    const theirs = res.headers[Headers.protocol] as string | undefined
    if (theirs !== undefined && theirs !== String(PROTOCOL_VERSION)) {
      if (isReadable(res.data)) (res.data as Readable).resume()
      throw new ProtocolMismatchError(
        `${this.where} speaks dfs protocol ${theirs}, this program speaks ${PROTOCOL_VERSION}: run the same dfs version everywhere`,
        { server: this.baseUrl, theirs, ours: PROTOCOL_VERSION })
    }
  }
}

const IDLE = 'IDLE_TIMEOUT'

function isReusedConnectionFailure (err: unknown): boolean {
  const code = (err as { code?: string }).code
  return code === 'ECONNRESET' || code === 'EPIPE' || (err as Error).message === 'socket hang up'
}

function isIdempotent (call: Call): boolean {
  return (call.method === 'GET' || call.method === 'HEAD') && !isReadable(call.body)
}

function isReadable (value: unknown): value is Readable {
  return typeof (value as Readable | undefined)?.pipe === 'function' && typeof (value as Readable).on === 'function'
}

/**
 * Aborts the request when a stream moves no data for timeoutMs. Streams are watched by
 * passing them through it (a 'data' listener would start them flowing before their reader).
 */
class IdleWatchdog {
  private readonly controller = new AbortController()
  private timer: NodeJS.Timeout | null = null
  reason: Error | null = null

  constructor (private readonly timeoutMs: number) {}

  get signal (): AbortSignal {
    return this.controller.signal
  }

  /**
   * The same bytes as `source`; silence on it for timeoutMs fails both the copy and the
   * request. For an upload, the answer must then come within timeoutMs of its last byte.
   */
  through (source: Readable, kind: 'upload' | 'download'): Readable {
    const watched = new Transform({
      transform: (chunk, _encoding, done) => {
        this.arm(watched)
        done(null, chunk)
      },
      flush: (done) => {
        if (kind === 'upload') this.arm(watched)
        else this.stop()
        done()
      }
    })
    this.arm(watched)
    pipeline(source, watched, () => {})
    if (kind === 'download') watched.once('close', () => this.stop())
    return watched
  }

  stop (): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
  }

  private arm (watched: Transform): void {
    this.stop()
    this.timer = setTimeout(() => {
      this.reason = Object.assign(new Error(`silent for ${this.timeoutMs} ms`), { code: IDLE })
      this.controller.abort(this.reason)
      watched.destroy(this.reason)
    }, this.timeoutMs)
    this.timer.unref()
  }
}

async function readJson (stream: Readable): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer)
    size += (chunk as Buffer).length
    if (size > 1 << 20) break
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    return undefined
  }
}
