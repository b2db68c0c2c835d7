import type { AxiosRequestConfig } from 'axios'
import type { FileServerStats } from '../../src/shared/protocol'
import { FileRoutes } from '../../src/shared/protocol'
import { ServiceClient } from '../../src/shared/transport'

/** An answer as the server sent it: status, headers and the parsed body, whatever the status. */
export interface RawAnswer {
  status: number
  headers: Record<string, unknown>
  body: any
}

/** Talks to a server the way a stranger would, to check what goes over the wire. */
export async function raw (baseUrl: string, config: AxiosRequestConfig): Promise<RawAnswer> {
  const res = await new ServiceClient('server under test', baseUrl, 5000).send(config)
  return { status: res.status, headers: res.headers as Record<string, unknown>, body: res.data }
}

export async function rawGet (baseUrl: string, route: string, params: Record<string, unknown> = {}): Promise<RawAnswer> {
  return await raw(baseUrl, { method: 'GET', url: route, params })
}

export async function rawPost (baseUrl: string, route: string, body: unknown, config: AxiosRequestConfig = {}): Promise<RawAnswer> {
  return await raw(baseUrl, { method: 'POST', url: route, data: body, ...config })
}

/** A file server's counters: how we tell a cache hit (304, no content) from a transfer. */
export async function statsOf (server: { url: string }): Promise<FileServerStats> {
  return await new ServiceClient('file server under test', server.url, 5000).get<FileServerStats>(FileRoutes.stats)
}
