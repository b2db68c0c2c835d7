import http from 'node:http'
import type { Readable } from 'node:stream'
import axios from 'axios'
import type { AxiosInstance, AxiosRequestConfig, AxiosResponse } from 'axios'
import { DfsError, errorFromBody, ServerUnavailableError } from './errors'

/** Keep-alive saves a TCP handshake per call: most dfs calls are small and many. */
const keepAliveAgent = new http.Agent({ keepAlive: true, maxSockets: 64 })

export const DEFAULT_TIMEOUT_MS = 5_000

/**
 * A JSON-over-HTTP client for one dfs service. It names the service in every failure
 * ("file server 2 at 127.0.0.1:7081 is not answering") and turns error bodies back into
 * the typed errors of errors.ts. Every call has a timeout (idle time on the socket, so a
 * long stream that keeps moving is not cut).
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
    let res: AxiosResponse
    try {
      res = await this.http.request(config)
    } catch (err) {
      throw this.unavailable(err)
    }
    if (config.responseType === 'stream' && res.status >= 400) {
      throw errorFromBody(res.status, await readJson(res.data as Readable))
    }
    return res
  }

  unavailable (err: unknown): DfsError {
    if (err instanceof DfsError) return err
    const code = (err as { code?: string }).code ?? 'error'
    const why = code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? `no answer within ${this.timeoutMs} ms` : code
    return new ServerUnavailableError(`${this.where} is not answering (${why})`, { server: this.baseUrl }, { cause: err })
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
