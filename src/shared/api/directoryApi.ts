import type {
  ClaimRequest, DirectoryListAnswer, DropEntryAnswer, EntryKind, FileMeta, FileReportAnswer, HealthAnswer, LookupAnswer,
  PlacementAnswer, RegisterAnswer, RegisterRequest, RenameSwitchAnswer, RenameSwitchRequest, ServersAnswer
} from '../protocol'
import { DirectoryRoutes } from '../protocol'
import type { Transport } from '../transport'

/** The directory server's API: which file server holds which path. */
export class DirectoryApi {
  constructor (readonly transport: Transport) {}

  async health (): Promise<HealthAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.health })
  }

  /** A file server joins (or rejoins at the same address, keeping its machine id). */
  async register (url: string): Promise<RegisterAnswer> {
    const body: RegisterRequest = { url }
    return await this.transport.json({ method: 'POST', route: DirectoryRoutes.register, body })
  }

  async servers (): Promise<ServersAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.servers })
  }

  /** Everything a file server holds, replacing what it reported before. */
  async reportFiles (machineId: number, files: FileMeta[]): Promise<FileReportAnswer> {
    return await this.transport.json({ method: 'PUT', route: DirectoryRoutes.reportFiles(machineId), body: { files } })
  }

  async lookup (path: string): Promise<LookupAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.lookup, query: { path } })
  }

  async list (path: string): Promise<DirectoryListAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.list, query: { path } })
  }

  /** Where a new entry goes; `prefer` keeps it on that server when it can hold it. */
  async placement (path: string, prefer?: number): Promise<PlacementAnswer> {
    return await this.transport.json({ method: 'GET', route: DirectoryRoutes.placement, query: { path, prefer } })
  }

  /** A file server just created a path; CONFLICT if it exists. */
  async claim (machineId: number, path: string, kind: EntryKind): Promise<LookupAnswer> {
    const body: ClaimRequest = { path, kind }
    return await this.transport.json({ method: 'POST', route: DirectoryRoutes.entries(machineId), body })
  }

  async drop (machineId: number, path: string): Promise<DropEntryAnswer> {
    return await this.transport.json({ method: 'DELETE', route: DirectoryRoutes.entries(machineId), query: { path } })
  }

  /** The commit point of a rename. */
  async switchRename (request: RenameSwitchRequest): Promise<RenameSwitchAnswer> {
    return await this.transport.json({ method: 'POST', route: DirectoryRoutes.rename, body: request })
  }
}
