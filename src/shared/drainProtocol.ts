import type { FileMeta, ServerInfo } from './protocol'
import type { Transport } from './transport'

/*
 * Draining a file server: its files move to the others, then it leaves the cluster
 * (`dfs-serve drain`; README "Draining a file server", docs/protocol.md "Draining"). The
 * operator marks it draining at the directory (no new files go there), starts the move on
 * the file server itself, which moves each file under its lock with the cross-server rename
 * steps, and leaves once nothing is left; the operator follows its progress meanwhile.
 */

export const DrainRoutes = {
  /** Directory: POST -> DrainMarkAnswer (an operator marks it draining); DELETE -> DrainMarkAnswer (back in service). */
  mark: (machineId: number | string) => `/servers/${machineId}/drain`,
  /** Directory: POST -> LeaveAnswer; the drained file server itself, once it holds no file. */
  leave: (machineId: number | string) => `/servers/${machineId}/leave`,
  /** Directory: POST HoldFolderRequest -> {} ; a file server takes a folder over from a draining one (it exists already). */
  holdFolder: (machineId: number | string) => `/servers/${machineId}/folders`,
  /** File server: POST -> DrainProgress (starts the move, or answers the one under way); GET -> DrainProgress. */
  drain: '/drain',
  /** File server: POST ?path=[&mode=] -> FileMeta; makes a draining server's folder here and holds it at the directory. */
  adoptFolder: '/drain/folders'
} as const

export interface DrainMarkAnswer {
  server: ServerInfo
  draining: boolean
}

export interface LeaveAnswer {
  machineId: number
  left: true
  /** Folder holds dropped with it (its files have all moved). */
  entries: number
}

export interface HoldFolderRequest {
  path: string
}

/**
 * What a drain has done so far. `state`: idle (none started since this process began),
 * moving, left (every file moved, the server left the directory: it is about to exit), or
 * failed (`message` says why; rerun `dfs-serve drain` to go on).
 */
export interface DrainProgress {
  machineId: number
  state: 'idle' | 'moving' | 'left' | 'failed'
  moved: number
  remaining: number
  /** Files whose lock is held by someone else: waited for, then tried again. */
  waitingForLocks: string[]
  message?: string
}

/** The drain routes of the directory and of a file server: one class, as each has its transport. */
export class DrainApi {
  constructor (readonly transport: Transport) {}

  async mark (machineId: number, draining: boolean): Promise<DrainMarkAnswer> {
    return await this.transport.json({ method: draining ? 'POST' : 'DELETE', route: DrainRoutes.mark(machineId) })
  }

  async leave (machineId: number): Promise<LeaveAnswer> {
    return await this.transport.json({ method: 'POST', route: DrainRoutes.leave(machineId) })
  }

  async holdFolder (machineId: number, path: string): Promise<Record<string, never>> {
    const body: HoldFolderRequest = { path }
    return await this.transport.json({ method: 'POST', route: DrainRoutes.holdFolder(machineId), body })
  }

  async start (): Promise<DrainProgress> {
    return await this.transport.json({ method: 'POST', route: DrainRoutes.drain })
  }

  async progress (): Promise<DrainProgress> {
    return await this.transport.json({ method: 'GET', route: DrainRoutes.drain })
  }

  async adoptFolder (path: string, mode?: number): Promise<FileMeta> {
    return await this.transport.json({ method: 'POST', route: DrainRoutes.adoptFolder, query: { path, mode } })
  }
}
