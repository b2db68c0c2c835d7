import axios from 'axios'
import type { AxiosRequestConfig } from 'axios'
import { FileApi } from '../../src/shared/api'
import { FileRoutes, Headers } from '../../src/shared/protocol'
import type { FileServerStats } from '../../src/shared/protocol'
import { Transport } from '../../src/shared/transport'
import { callerFor } from './credentials'

/** An answer as the server sent it: status, headers and the parsed body, whatever the status. */
export interface RawAnswer {
  status: number
  headers: Record<string, unknown>
  body: any
}

/** A raw call's config; `token`: send it as the bearer credential (by default none: a stranger). */
export type RawConfig = AxiosRequestConfig & { token?: string }

/**
 * Talks to a server the way a stranger would (plain axios, none of dfs's headers, any body),
 * to check what goes over the wire and how bad input is answered. With `token`, a stranger
 * that holds that credential.
 */
export async function raw (baseUrl: string, config: RawConfig): Promise<RawAnswer> {
  const { token, ...rest } = config
  const headers = token === undefined ? rest.headers : { ...rest.headers as Record<string, string>, Authorization: `Bearer ${token}` }
  const res = await axios.request({ baseURL: baseUrl, timeout: 5000, validateStatus: () => true, proxy: false, maxRedirects: 0, ...rest, headers })
  return { status: res.status, headers: res.headers as Record<string, unknown>, body: res.data }
}

export async function rawGet (baseUrl: string, route: string, params: Record<string, unknown> = {}, config: RawConfig = {}): Promise<RawAnswer> {
  return await raw(baseUrl, { method: 'GET', url: route, params, ...config })
}

export async function rawPost (baseUrl: string, route: string, body: unknown, config: RawConfig = {}): Promise<RawAnswer> {
  return await raw(baseUrl, { method: 'POST', url: route, data: body, ...config })
}

/** raw, rawGet and rawPost that send `token` unless a call names another. */
/** POST /append with a lock token header (none: without one), as `credential`: to see what a file server does with a lease's token. */
export async function rawAppendWithToken (credential: string, fileServerUrl: string, file: string, text: string, token?: number | string): Promise<RawAnswer> {
  return await raw(fileServerUrl, {
    token: credential,
    method: 'POST',
    url: FileRoutes.append,
    params: { path: file },
    data: Buffer.from(text),
    headers: { 'Content-Type': 'application/octet-stream', ...(token === undefined ? {} : { [Headers.lockToken]: String(token) }) }
  })
}

export function rawAs (token: string): { raw: typeof raw, rawGet: typeof rawGet, rawPost: typeof rawPost } {
  return {
    raw: async (baseUrl, config) => await raw(baseUrl, { token, ...config }),
    rawGet: async (baseUrl, route, params = {}, config = {}) => await rawGet(baseUrl, route, params, { token, ...config }),
    rawPost: async (baseUrl, route, body, config = {}) => await rawPost(baseUrl, route, body, { token, ...config })
  }
}

/** A file server's API, as a client of its test cluster would use it (with its token). */
export function fileApiOf (server: { url: string }): FileApi {
  return new FileApi(new Transport('file server under test', server.url, 5000, callerFor(server)))
}

/** A file server's counters: how we tell a cache hit (304, no content) from a transfer. */
export async function statsOf (server: { url: string }): Promise<FileServerStats> {
  return await fileApiOf(server).stats()
}
