import type { ServerInfo } from '../protocol'
import { Transport } from '../transport'
import type { CallerIdentity } from '../transport'
import { FileApi } from './fileApi'

/**
 * One FileApi per file server, kept so its connections stay alive between calls. A server
 * that comes back at the same address under another machine id gets a new one, so errors
 * name it rightly.
 */
export class FileServerPool {
  private readonly apis = new Map<string, FileApi>()

  constructor (private readonly timeoutMs: number, private readonly caller: CallerIdentity = {}) {}

  of (server: ServerInfo): FileApi {
    const name = `file server ${server.machineId}`
    let api = this.apis.get(server.url)
    if (!api || api.transport.name !== name) {
      api = new FileApi(new Transport(name, server.url, this.timeoutMs, this.caller))
      this.apis.set(server.url, api)
    }
    return api
  }
}
