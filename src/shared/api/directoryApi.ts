import type {
  Changer, ClaimRequest, FolderChangedRequest, DirectoryListAnswer, DropEntryAnswer, EntryKind, FileMeta, FileReportAnswer, ForgetServerAnswer, HealthAnswer,
  HeartbeatAnswer, HeartbeatRequest, LookupAnswer, MovedAnswer, PlacementAnswer, RegisterAnswer, RegisterRequest, RenameSwitchAnswer,
  RenameSwitchRequest, ServersAnswer
} from '../protocol'
import { DirectoryRoutes, Headers, MAX_CALLBACK_LEASE_MS } from '../protocol'
import { errorFromBody } from '../errors'
import type { Transport } from '../transport'
import { CallbackCalls } from './callbackCalls'

/** The directory server's API: which file server holds which path. */
export class DirectoryApi {
  /** The client's event channel, lease renewal and break acknowledgements for callbacks here. */
  readonly callbackCalls: CallbackCalls

  constructor (readonly transport: Transport) {
    this.callbackCalls = new CallbackCalls(transport, DirectoryRoutes)
  }

  async health (): Promise<HealthAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.health })
  }

  /** A file server joins, or rejoins (after a restart of either side, or at a new URL) keeping its machine id. */
  async register (request: RegisterRequest): Promise<RegisterAnswer> {
    return await this.transport.json({ method: 'POST', route: DirectoryRoutes.register, body: request })
  }

  /** Every registered file server with its state (up or down) and last heartbeat. */
  async servers (): Promise<ServersAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.servers })
  }

  /** A file server says it is alive; NOT_FOUND if the directory does not know it (since its start): register again. */
  async heartbeat (machineId: number, serverId: string): Promise<HeartbeatAnswer> {
    const body: HeartbeatRequest = { serverId }
    return await this.transport.json({ method: 'POST', route: DirectoryRoutes.heartbeat(machineId), body })
  }

  /** An operator drops a file server that is down for good, with every entry it held. */
  async forgetServer (machineId: number): Promise<ForgetServerAnswer> {
    return await this.transport.json({ method: 'DELETE', route: DirectoryRoutes.server(machineId) })
  }

  /** Everything a file server holds, replacing what it reported before. */
  async reportFiles (machineId: number, files: FileMeta[]): Promise<FileReportAnswer> {
    return await this.transport.json({ method: 'PUT', route: DirectoryRoutes.reportFiles(machineId), body: { files } })
  }

  async lookup (path: string): Promise<LookupAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.lookup, query: { path } })
  }

  /** Where a rename took the file that was at `path` (MovedAnswer). */
  async moved (path: string): Promise<MovedAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.moved, query: { path } })
  }

  async list (path: string): Promise<DirectoryListAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.list, query: { path } })
  }

  /** The folder's names, asking for a folder callback (the transport must carry a client id, and the client an event channel). */
  async listWithCallback (path: string): Promise<{ listing: DirectoryListAnswer, callback: boolean }> {
    const res = await this.transport.send({ method: 'GET', route: DirectoryRoutes.list, query: { path }, headers: { [Headers.callback]: 'want' } })
    if (res.status >= 400) throw errorFromBody(res.status, res.data)
    return { listing: res.data as DirectoryListAnswer, callback: res.headers[Headers.callback] === 'granted' }
  }

  /** A client changed a folder's attributes on its file servers: clients holding it, or its parent, under a folder callback hear of it. */
  async folderChanged (path: string): Promise<void> {
    const body: FolderChangedRequest = { path }
    await this.transport.json({ method: 'POST', route: DirectoryRoutes.folderChanged, body, timeoutMs: this.transport.timeoutMs + MAX_CALLBACK_LEASE_MS })
  }

  /** Where a new entry goes; `prefer` keeps it on that server when it can hold it. */
  async placement (path: string, prefer?: number): Promise<PlacementAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.placement, query: { path, prefer } })
  }

  /** A file server just created a path (for `changer`, see Changer); CONFLICT if it exists. */
  async claim (machineId: number, path: string, kind: EntryKind, changer?: Changer): Promise<LookupAnswer> {
    const body: ClaimRequest = { path, kind, changerClient: changer?.client, changerSubject: changer?.subject }
    return await this.transport.json({ method: 'POST', route: DirectoryRoutes.entries(machineId), body })
  }

  /** A file server removed a path (for `changer`, see Changer). */
  async drop (machineId: number, path: string, changer?: Changer): Promise<DropEntryAnswer> {
    const query = { path, changerClient: changer?.client, changerSubject: changer?.subject }
    return await this.transport.json({ method: 'DELETE', route: DirectoryRoutes.entries(machineId), query })
  }

  /** The commit point of a rename. */
  async switchRename (request: RenameSwitchRequest): Promise<RenameSwitchAnswer> {
    return await this.transport.json({ method: 'POST', route: DirectoryRoutes.rename, body: request })
  }
}
