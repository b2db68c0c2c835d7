import axios from 'axios'
import type { AxiosRequestConfig } from 'axios'
import { FileApi } from '../../src/shared/api'
import type { FileServerStats } from '../../src/shared/protocol'
import { Transport } from '../../src/shared/transport'

/** An answer as the server sent it: status, headers and the parsed body, whatever the status. */
export interface RawAnswer {
  status: number
  headers: Record<string, unknown>
  body: any
}

/**
 * Talks to a server the way a stranger would (plain axios, none of dfs's headers, any body),
 * to check what goes over the wire and how bad input is answered.
 */
export async function raw (baseUrl: string, config: AxiosRequestConfig): Promise<RawAnswer> {
  const res = await axios.request({ baseURL: baseUrl, timeout: 5000, validateStatus: () => true, proxy: false, maxRedirects: 0, ...config })
  return { status: res.status, headers: res.headers as Record<string, unknown>, body: res.data }
}

export async function rawGet (baseUrl: string, route: string, params: Record<string, unknown> = {}): Promise<RawAnswer> {
  return await raw(baseUrl, { method: 'GET', url: route, params })
}

export async function rawPost (baseUrl: string, route: string, body: unknown, config: AxiosRequestConfig = {}): Promise<RawAnswer> {
  return await raw(baseUrl, { method: 'POST', url: route, data: body, ...config })
}

/** A file server's API, as another server or a client would use it. */
export function fileApiOf (server: { url: string }): FileApi {
  return new FileApi(new Transport('file server under test', server.url, 5000))
}

/** A file server's counters: how we tell a cache hit (304, no content) from a transfer. */
export async function statsOf (server: { url: string }): Promise<FileServerStats> {
  return await fileApiOf(server).stats()
}
