import type { ServerStatus } from './protocol'
import type { Transport } from './transport'

/*
 * The cluster at a glance, for operators: what `dfs status` prints and the directory
 * server's status page (/status) shows. docs/protocol.md, "Operating", describes the routes.
 */

export const StatusRoutes = {
  /** Directory server: GET -> the status page (HTML; its script reads `cluster`). */
  page: '/status',
  /** Directory server: GET -> ClusterStatus */
  cluster: '/status/cluster',
  /** Lock server: GET -> HeldLocksAnswer */
  heldLocks: '/locks/held',
  /** File server: GET -> ClientsAnswer */
  clients: '/clients'
} as const

/** A live lease, as the lock server lists it. */
export interface HeldLock {
  path: string
  /**
   * Who holds it: the subject of the holder's credential, then in parentheses the owner the
   * client named (a mount's id and pid); the owner alone on an --insecure lock server.
   */
  holder: string
  /** How long it has been held since it was granted; null if granted before this lock server started. */
  heldForMs: number | null
  expiresInMs: number
}

export interface HeldLocksAnswer {
  locks: HeldLock[]
}

/** Clients with an open event channel (GET /events) to a file server. */
export interface ClientsAnswer {
  clients: string[]
}

export interface ServerReport extends ServerStatus {
  /** From the server itself; null when it did not answer (down, or too slow). */
  freeBytes: number | null
  totalBytes: number | null
  /** Files (not folders) the directory maps to this server. */
  files: number
  /** Clients connected to it (event channels); null when it did not answer. */
  clients: number | null
}

export interface ClusterStatus {
  /** ms since the epoch, on the directory server's clock */
  generatedAtMs: number
  servers: ServerReport[]
  /** null: the lock server did not answer (`locksError` says why). */
  locks: HeldLock[] | null
  locksError?: string
  /** Every client known to a file server, with the machine ids it is connected to. */
  clients: Array<{ clientId: string, machineIds: number[] }>
  /** The directory process's latest problems (5xx answers, servers gone down), newest first. */
  problems: Array<{ atMs: number, message: string }>
}

/** The operator routes, for the CLI and the directory server. */
export class StatusApi {
  constructor (readonly transport: Transport) {}

  async cluster (): Promise<ClusterStatus> {
    return await this.transport.json({ method: 'GET', route: StatusRoutes.cluster })
  }

  async heldLocks (): Promise<HeldLocksAnswer> {
    return await this.transport.json({ method: 'GET', route: StatusRoutes.heldLocks })
  }

  async clients (): Promise<ClientsAnswer> {
    return await this.transport.json({ method: 'GET', route: StatusRoutes.clients })
  }
}
