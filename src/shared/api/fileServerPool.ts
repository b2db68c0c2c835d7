import { seenVia } from '../clusterUrls'
import type { ServerInfo } from '../protocol'
import { Transport } from '../transport'
import type { CallerIdentity } from '../transport'
import { FileApi } from './fileApi'

/**
 * One FileApi per file server, kept so its connections stay alive between calls. A server
 * that comes back at the same address under another machine id gets a new one, so errors
 * name it rightly. `directoryUrl`: where this machine reaches the directory server, which
 * handed out the servers' URLs; a loopback one among them is a server on the directory's
 * machine (src/shared/clusterUrls.ts). Absent: the URLs are used as they are (the
 * directory's own pools).
 */
export class FileServerPool {
  private readonly apis = new Map<string, FileApi>()

  constructor (private readonly timeoutMs: number, private readonly caller: CallerIdentity = {}, private readonly directoryUrl?: string) {}

  of (server: ServerInfo): FileApi {
    const name = `file server ${server.machineId}`
    let api = this.apis.get(server.url)
    if (!api || api.transport.name !== name) {
      api = new FileApi(new Transport(name, this.urlOf(server), this.timeoutMs, this.caller))
      this.apis.set(server.url, api)
    }
    return api
  }

  /** The URL this pool calls the server at: the one the directory recorded, as seen from here. */
  urlOf (server: ServerInfo): string {
    return this.directoryUrl === undefined ? server.url : seenVia(server.url, this.directoryUrl)
  }
}
