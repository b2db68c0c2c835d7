import http from 'node:http'
import { pipeline, Transform } from 'node:stream'
import type { Readable } from 'node:stream'
import axios from 'axios'
import type { AxiosInstance, AxiosRequestConfig, AxiosResponse } from 'axios'
import { DEFAULT_TIMEOUT_MS } from './defaults'
import { DfsError, errorFromBody, ServerUnavailableError } from './errors'

/** Keep-alive saves a TCP handshake per call: most dfs calls are small and many. */
const keepAliveAgent = new http.Agent({ keepAlive: true, maxSockets: 64 })

// Defined in defaults.ts with every other default; re-exported for code that imports it from here.
export { DEFAULT_TIMEOUT_MS }

/** Slowest transfer rate tolerated before a large upload counts as not answering (bytes/ms). */
const MIN_UPLOAD_BYTES_PER_MS = 1000

/**
 * A JSON-over-HTTP client for one dfs service. It names the service in every failure
 * ("file server 2 at 127.0.0.1:7081 is not answering") and turns error bodies back into
 * the typed errors of errors.ts. Every call has a timeout: axios's own is wall-clock until
 * the answer's headers, so a Buffer upload gets time in proportion to its size, and streams
 * in either direction are watched for silence instead (a stream that keeps moving is never
 * cut, one that stalls for timeoutMs is).
 */
export class ServiceClient {
  readonly http: AxiosInstance

  constructor (readonly name: string, readonly baseUrl: string, readonly timeoutMs = DEFAULT_TIMEOUT_MS) {
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

  async get<T> (route: string, params?: Record<string, unknown>): Promise<T> {
    return await this.json<T>({ method: 'GET', url: route, params })
  }

  async post<T> (route: string, body?: unknown, params?: Record<string, unknown>): Promise<T> {
    return await this.json<T>({ method: 'POST', url: route, data: body ?? {}, params })
  }

  async put<T> (route: string, body?: unknown, params?: Record<string, unknown>): Promise<T> {
    return await this.json<T>({ method: 'PUT', url: route, data: body ?? {}, params })
  }

  async delete<T> (route: string, params?: Record<string, unknown>): Promise<T> {
    return await this.json<T>({ method: 'DELETE', url: route, params })
  }

  async json<T> (config: AxiosRequestConfig): Promise<T> {
    const res = await this.send(config)
    if (res.status >= 400) throw errorFromBody(res.status, res.data)
    return res.data as T
  }

  /**
   * Sends a request and returns the raw answer, whatever its status; with responseType
   * 'stream' an error body is read and thrown as its typed error.
   */
  async send (config: AxiosRequestConfig): Promise<AxiosResponse> {
    const watchdog = new IdleWatchdog(this.timeoutMs)
    const request: AxiosRequestConfig = { ...config, signal: watchdog.signal }
    if (isReadable(config.data)) {
      request.timeout = 0
      request.data = watchdog.through(config.data, 'upload')
    } else if (Buffer.isBuffer(config.data)) {
      request.timeout = this.timeoutMs + Math.ceil(config.data.length / MIN_UPLOAD_BYTES_PER_MS)
    }
    let res: AxiosResponse
    try {
      try {
        res = await this.http.request(request)
      } catch (err) {
        // A kept-alive connection the server closed (it restarted) fails the first request
        // sent on it; a read is safe to send once more, on a new connection.
        if (!isReusedConnectionFailure(err) || !isIdempotent(request) || watchdog.reason) throw err
        res = await this.http.request(request)
      }
    } catch (err) {
      watchdog.stop()
      throw this.unavailable(watchdog.reason ?? err)
    }
    watchdog.stop()
    if (config.responseType === 'stream') {
      if (res.status >= 400) throw errorFromBody(res.status, await readJson(res.data as Readable))
      // The body may still stall after the headers came: watch it until it ends (a 304 has none).
      if (res.status !== 304 && res.headers['content-length'] !== '0') {
        res.data = new IdleWatchdog(this.timeoutMs).through(res.data as Readable, 'download')
      }
    }
    return res
  }

  unavailable (err: unknown): DfsError {
    if (err instanceof DfsError) return err
    const code = (err as { code?: string }).code ?? 'error'
    const why = code === 'ECONNABORTED' || code === 'ETIMEDOUT' || code === IDLE ? `no answer within ${this.timeoutMs} ms` : code
    return new ServerUnavailableError(`${this.where} is not answering (${why})`, { server: this.baseUrl }, { cause: err })
  }
}

const IDLE = 'IDLE_TIMEOUT'

function isReusedConnectionFailure (err: unknown): boolean {
  const code = (err as { code?: string }).code
  return code === 'ECONNRESET' || code === 'EPIPE' || (err as Error).message === 'socket hang up'
}

function isIdempotent (config: AxiosRequestConfig): boolean {
  const method = (config.method ?? 'GET').toUpperCase()
  return (method === 'GET' || method === 'HEAD') && !isReadable(config.data)
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
