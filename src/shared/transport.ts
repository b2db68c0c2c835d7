import http from 'node:http'
import https from 'node:https'
import tls from 'node:tls'
import { pipeline, Transform } from 'node:stream'
import type { Readable } from 'node:stream'
import { DEFAULT_TIMEOUT_MS } from './defaults'
import { DfsError, errorFromBody, ProtocolMismatchError, ServerUnavailableError, UntrustedServerError } from './errors'
import { Headers, PROTOCOL_VERSION } from './protocol'
import { currentRequestId, newRequestId } from './requestContext'

/** Keep-alive saves a TCP handshake per call: most dfs calls are small and many. */
const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 64 })
let httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 64 })

/**
 * Trusts a private certificate authority (PEM) for https calls, besides the usual public
 * ones: a cluster run with its own CA (--ca). Transports made after this call use it.
 */
export function trustCertificateAuthority (pem: string | Buffer): void {
  httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 64, ca: [...tls.rootCertificates, pem.toString()] })
}

/** A TLS failure to trust the server's certificate: no retry makes it trusted. */
function isUntrustedCertificate (code: string | undefined): boolean {
  return code !== undefined && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)
}

/** Slowest transfer rate tolerated before a large upload counts as not answering (bytes/ms). */
const MIN_UPLOAD_BYTES_PER_MS = 1000

/** The body of a POST or PUT that has none: servers parse JSON bodies, and `{}` is the empty one. */
const EMPTY_JSON = Buffer.from('{}')

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
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  route: string
  query?: Record<string, string | number | boolean | undefined>
  /** JSON (any plain value), or bytes: a Buffer or a stream. */
  body?: unknown
  headers?: Record<string, string>
  /** A deadline longer than the transport's own (a long poll, a large copy). */
  timeoutMs?: number
  /** The answer's body as a stream (downloads); an error body is still read and thrown. */
  stream?: boolean
  /** Hangs up the call when it fires (a long poll nobody waits for any more); the call then fails. */
  signal?: AbortSignal
}

/** An answer as `send` returns it, whatever its status. */
export interface Answer {
  status: number
  /** Lower-case names; a header sent more than once is joined with ', '. */
  headers: Record<string, string>
  /** The parsed JSON body (its text if it is not JSON, '' if empty); with `stream`, the body as a Readable. */
  data: unknown
}

/** Where a transport sends its calls, parsed once from its base URL. */
interface Target {
  request: typeof http.request
  agent: http.Agent
  hostname: string
  port: string
  /** A path the base URL carries, put before every route; '' for most. */
  prefix: string
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
 *
 * It is Node's own http.request with a keep-alive agent and nothing between: a call costs
 * about what a bare request costs (bench/transport.ts), where axios cost 2.5-3 times that.
 */
export class Transport {
  private readonly target: Target | Error

  constructor (readonly name: string, readonly baseUrl: string, readonly timeoutMs = DEFAULT_TIMEOUT_MS, private readonly caller: CallerIdentity = {}) {
    this.target = targetOf(name, baseUrl)
  }

  get where (): string {
    return `${this.name} at ${this.target instanceof Error ? this.baseUrl : new URL(this.baseUrl).host}`
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
  async send (call: Call): Promise<Answer> {
    if (this.target instanceof Error) throw this.target
    const headers = this.headersFor(call)
    let payload: Buffer | Readable | undefined
    let deadlineMs: number | undefined = call.timeoutMs ?? this.timeoutMs
    let watchdog: IdleWatchdog | undefined
    if (isReadable(call.body)) {
      // A stream of unknown length: no deadline, but silence on it fails the call.
      watchdog = new IdleWatchdog(this.timeoutMs)
      payload = watchdog.through(call.body, 'upload')
      deadlineMs = undefined
    } else if (Buffer.isBuffer(call.body)) {
      payload = call.body
      deadlineMs += Math.ceil(call.body.length / MIN_UPLOAD_BYTES_PER_MS)
    } else if (call.body !== undefined || call.method === 'POST' || call.method === 'PUT') {
      payload = call.body !== undefined ? Buffer.from(JSON.stringify(call.body)) : EMPTY_JSON
      headers['Content-Type'] ??= 'application/json'
    }
    if (Buffer.isBuffer(payload)) headers['Content-Length'] = String(payload.length)
    const options: http.RequestOptions = {
      agent: this.target.agent,
      hostname: this.target.hostname,
      port: this.target.port,
      method: call.method,
      path: this.target.prefix + call.route + queryOf(call.query),
      headers
    }
    const stream = call.stream === true
    let res: Answer
    try {
      const first = { answered: false }
      try {
        res = await this.attempt(options, payload, deadlineMs, stream, watchdog, first, call.signal)
      } catch (err) {
        // A kept-alive connection the server closed (it restarted) fails the first request
        // sent on it; a read is safe to send once more, on a new connection.
        if (first.answered || !isReusedConnectionFailure(err) || !isIdempotent(call) || watchdog?.reason) throw err
        res = await this.attempt(options, payload, deadlineMs, stream, watchdog, { answered: false }, call.signal)
      }
    } catch (err) {
      watchdog?.stop()
      throw this.unavailable(watchdog?.reason ?? err)
    }
    watchdog?.stop()
    this.checkProtocol(res)
    if (stream) {
      // attempt() read an error body whole, under the deadline: here it is thrown.
      if (res.status >= 400) throw errorFromBody(res.status, res.data)
      // The body may still stall after the headers came: watch it until it ends (a 304 has none).
      if (res.status !== 304 && res.headers['content-length'] !== '0') {
        res.data = new IdleWatchdog(this.timeoutMs).through(res.data as Readable, 'download')
      } else {
        // Nobody reads an empty body for its errors; a reset after it must not crash the process.
        (res.data as Readable).on('error', () => {})
      }
    }
    return res
  }

  /** Any failure to reach this service, named: "file server 2 at ... is not answering". */
  unavailable (err: unknown): DfsError {
    if (err instanceof DfsError) return err
    const { code = 'error', timeoutMs = this.timeoutMs } = (err ?? {}) as { code?: string, timeoutMs?: number }
    if (isUntrustedCertificate(code)) {
      return new UntrustedServerError(`${this.where} has a certificate this client does not trust (${code}): give the cluster's CA certificate (--ca)`, { server: this.baseUrl }, { cause: err })
    }
    const why = code === 'ECONNABORTED' || code === 'ETIMEDOUT' || code === IDLE ? `no answer within ${timeoutMs} ms` : code
    return new ServerUnavailableError(`${this.where} is not answering (${why})`, { server: this.baseUrl }, { cause: err })
  }

  /**
   * One request. It settles when the answer is complete: its body read and parsed, or, for a
   * `stream` call that succeeded, when its headers came (the body is then the caller's).
   * Until then the deadline (if any) runs; `state.answered` tells a failure before any answer
   * (which a read may retry) from one after.
   */
  private async attempt (options: http.RequestOptions, payload: Buffer | Readable | undefined, deadlineMs: number | undefined,
    stream: boolean, watchdog: IdleWatchdog | undefined, state: { answered: boolean }, signal?: AbortSignal): Promise<Answer> {
    const target = this.target as Target
    return await new Promise<Answer>((resolve, reject) => {
      let settled = false
      let timer: NodeJS.Timeout | undefined
      const settle = (err: unknown, answer?: Answer): void => {
        if (settled) return
        settled = true
        if (timer) clearTimeout(timer)
        signal?.removeEventListener('abort', hangUp)
        // An upload cut short (the server answered early with an error, or failed): nobody needs
        // the rest, and a source left paused would hold its file or its peer's download open.
        if (payload !== undefined && !Buffer.isBuffer(payload) && !req.writableFinished) {
          payload.destroy()
          req.destroy()
        }
        if (answer) resolve(answer)
        else reject(err)
      }
      const req = target.request(options, (res) => {
        state.answered = true
        const status = res.statusCode ?? 0
        const headers = flatHeaders(res.headers)
        if (stream && status < 400) {
          settle(null, { status, headers, data: res })
          return
        }
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => settle(null, { status, headers, data: parseBody(chunks) }))
        res.on('error', settle)
        res.on('close', () => { if (!res.complete) settle(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })) })
      })
      req.on('error', settle)
      if (deadlineMs !== undefined) {
        timer = setTimeout(() => {
          const reason = Object.assign(new Error(`no answer within ${deadlineMs} ms`), { code: 'ETIMEDOUT', timeoutMs: deadlineMs })
          settle(reason)
          req.destroy(reason)
        }, deadlineMs)
      }
      if (watchdog) watchdog.onSilence = (reason) => req.destroy(reason)
      function hangUp (): void {
        const reason = Object.assign(new Error('the caller hung up'), { code: 'ABORTED' })
        settle(reason)
        req.destroy(reason)
      }
      if (signal?.aborted === true) hangUp()
      else signal?.addEventListener('abort', hangUp)
      if (payload === undefined || Buffer.isBuffer(payload)) {
        req.end(payload)
      } else {
        payload.on('error', (err) => req.destroy(err))
        payload.pipe(req)
      }
    })
  }

  private headersFor (call: Call): Record<string, string> {
    const headers: Record<string, string> = {
      [Headers.protocol]: String(PROTOCOL_VERSION),
      // A call made while serving a request carries that request's id on.
      [Headers.requestId]: currentRequestId() ?? newRequestId(),
      ...call.headers
    }
    if (Buffer.isBuffer(call.body) || isReadable(call.body)) headers['Content-Type'] ??= 'application/octet-stream'
    if (this.caller.clientId !== undefined) headers[Headers.clientId] = this.caller.clientId
    const credential = this.caller.credential?.()
    if (credential !== undefined) headers.Authorization = `Bearer ${credential}`
    return headers
  }

  /** A peer speaking another protocol version says so on every answer: refuse it clearly. */
  private checkProtocol (res: Answer): void {
    const theirs = res.headers[Headers.protocol]
    if (theirs !== undefined && theirs !== String(PROTOCOL_VERSION)) {
      // Nobody will read this answer's body: let it drain, and a reset on it go unheard.
      if (isReadable(res.data)) res.data.on('error', () => {}).resume()
      throw new ProtocolMismatchError(
        `${this.where} speaks dfs protocol ${theirs}, this program speaks ${PROTOCOL_VERSION}: run the same dfs version everywhere`,
        { server: this.baseUrl, theirs, ours: PROTOCOL_VERSION })
    }
  }
}

const IDLE = 'IDLE_TIMEOUT'

/** The base URL parsed once; a bad one is kept as the error every call then throws, naming the service. */
function targetOf (name: string, baseUrl: string): Target | Error {
  let url: URL
  try {
    url = new URL(baseUrl)
  } catch {
    return new ServerUnavailableError(`${name} at ${baseUrl} cannot be called: not a URL`, { server: baseUrl })
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return new ServerUnavailableError(`${name} at ${baseUrl} cannot be called: not an http URL`, { server: baseUrl })
  }
  const secure = url.protocol === 'https:'
  return {
    request: secure ? https.request : http.request,
    agent: secure ? httpsAgent : httpAgent,
    // An IPv6 literal comes bracketed in a URL and must go bare to the socket.
    hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port,
    prefix: url.pathname.replace(/\/+$/, '')
  }
}

/** `?a=1&b=true`: undefined values left out, numbers and booleans as their text. */
function queryOf (query: Call['query']): string {
  if (query === undefined) return ''
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.append(key, String(value))
  }
  const text = params.toString()
  return text === '' ? '' : `?${text}`
}

function flatHeaders (raw: http.IncomingHttpHeaders): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(raw)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return headers
}

/** JSON if it parses; otherwise the text, so an error page from a stranger still says what it is. */
function parseBody (chunks: Buffer[]): unknown {
  const text = chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8')
  if (text === '') return text
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function isReusedConnectionFailure (err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code
  return code === 'ECONNRESET' || code === 'EPIPE' || (err as Error | undefined)?.message === 'socket hang up'
}

function isIdempotent (call: Call): boolean {
  return (call.method === 'GET' || call.method === 'HEAD') && !isReadable(call.body)
}

function isReadable (value: unknown): value is Readable {
  return typeof (value as Readable | undefined)?.pipe === 'function' && typeof (value as Readable).on === 'function'
}

/**
 * Fails a stream that moves no data for timeoutMs (and, through onSilence, the request it
 * belongs to). Streams are watched by passing them through it (a 'data' listener would
 * start them flowing before their reader).
 */
class IdleWatchdog {
  private timer: NodeJS.Timeout | null = null
  reason: Error | null = null
  /** What else silence fails: for an upload, the request carrying it. */
  onSilence: (reason: Error) => void = () => {}

  constructor (private readonly timeoutMs: number) {}

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
      this.reason = Object.assign(new Error(`silent for ${this.timeoutMs} ms`), { code: IDLE, timeoutMs: this.timeoutMs })
      this.onSilence(this.reason)
      watched.destroy(this.reason)
    }, this.timeoutMs)
    this.timer.unref()
  }
}
