import path from 'node:path'
import { performance } from 'node:perf_hooks'
import crypto from 'node:crypto'
import { ConflictError, DfsError, ForbiddenError, NotFoundError } from '../../src/shared/errors'
import type { ServerInfo, ServerState, ServerStatus } from '../../src/shared/protocol'
import { readStateFile, writeFileDurably } from '../common/durable'

/** Which machine id belongs to which file server: the one thing file servers' reports cannot rebuild. */
interface Assignment {
  machineId: number
  /** The file server's own identity (a UUID in its ROOT/.dfs/identity.json). */
  serverId: string
  /** Where it was reached last; updated when it registers from a new address. */
  url: string
  /**
   * The server's own secret (base64url), bound at its first registration: it signs the
   * server's calls here, and a registration under this serverId must bring it again.
   */
  secret?: string
  /** Being drained (dfs-serve drain): it gets no new files, and leaves once its files have moved. */
  draining?: boolean
}

/** The state file's content. */
interface RegistryFile {
  format: 1
  /** Ids are never handed out twice, even after a forget, so an old id never names a new server. */
  nextMachineId: number
  servers: Assignment[]
}

export const REGISTRY_FILE_NAME = 'servers.json'

/** The directory's state file cannot be read: it refuses to start rather than renumber the file servers. */
export class RegistryStateError extends DfsError {}

interface Beat {
  /** performance.now() of the last heartbeat or registration: immune to wall-clock jumps. */
  at: number
  /** Date.now() of the same, to show operators. */
  wallMs: number
}

export interface RegistryOptions {
  /** Folder of the state file; null keeps the assignments in memory only (in-process clusters, tests). */
  stateDir: string | null
  /** A server without a heartbeat for this long is down. */
  downAfterMs: number
  /** The clock liveness is measured on (tests may step it); performance.now by default. */
  now?: () => number
}

/**
 * The directory's registered file servers: their machine ids, kept in a state file so they
 * survive a restart of the directory, bound to each server's own identity so they survive a
 * restart or a move of the server; and their liveness, a lease renewed by each heartbeat
 * and kept in memory only (after a directory restart each known server has a fresh lease in
 * which it must register again and report its files; one that does not is then down).
 */
export class ServerRegistry {
  private readonly assignments = new Map<number, Assignment>()
  private readonly beats = new Map<number, Beat>()
  /** Servers that registered since this directory started: only their heartbeats are taken. */
  private readonly joined = new Set<number>()
  private nextMachineId = 1
  /** State file writes, one after another, each writing the state as it is then. */
  private saving: Promise<void> = Promise.resolve()
  private readonly now: () => number

  private constructor (private readonly file: string | null, private readonly downAfterMs: number, now?: () => number) {
    this.now = now ?? (() => performance.now())
  }

  static async open (opts: RegistryOptions): Promise<ServerRegistry> {
    const file = opts.stateDir === null ? null : path.join(opts.stateDir, REGISTRY_FILE_NAME)
    const registry = new ServerRegistry(file, opts.downAfterMs, opts.now)
    if (file !== null) registry.load(file, await readStateFile(file))
    // A restart of the directory is no news about the file servers: each known one keeps a
    // fresh lease (up for downAfterMs) in which it joins again; one that does not is down.
    for (const machineId of registry.assignments.keys()) registry.beat(machineId)
    return registry
  }

  /**
   * Gives a file server its machine id: the one already bound to its serverId (its URL is
   * updated if it moved); else the id it asks for, if that id is free (the directory lost
   * its state, the server kept its id); else the next new one. Counts as a heartbeat.
   */
  async register (serverId: string, url: string, wanted?: number, secret?: string): Promise<{ server: Assignment, was: 'known' | 'moved' | 'new' }> {
    let server = this.byServerId(serverId)
    let was: 'known' | 'moved' | 'new' = 'known'
    let bound = false
    if (server?.secret !== undefined && !sameSecret(server.secret, secret)) {
      throw new ForbiddenError(`serverId ${serverId} belongs to file server ${server.machineId}, and this registration does not carry its secret`, { machineId: server.machineId })
    }
    if (server && server.secret === undefined && secret !== undefined) {
      server.secret = secret
      bound = true
    }
    if (server && server.url !== url) {
      was = 'moved'
      server.url = url
    } else if (!server) {
      was = 'new'
      const machineId = wanted !== undefined && !this.assignments.has(wanted) ? wanted : this.nextMachineId
      server = { machineId, serverId, url, secret }
      this.assignments.set(machineId, server)
      this.nextMachineId = Math.max(this.nextMachineId, machineId + 1)
    }
    // Whoever answered at this URL before is not there any more: whoever listens now is this server.
    for (const other of this.assignments.values()) {
      if (other !== server && other.url === url) {
        this.beats.delete(other.machineId)
        this.joined.delete(other.machineId)
      }
    }
    if (was !== 'known' || bound) await this.save()
    this.joined.add(server.machineId)
    this.beat(server.machineId)
    return { server, was }
  }

  /** The secret a registered server signs its calls with, if it has registered one. */
  secretOf (serverId: string): Buffer | undefined {
    const secret = this.byServerId(serverId)?.secret
    return secret === undefined ? undefined : Buffer.from(secret, 'base64url')
  }

  /** The serverId a machine id is bound to; NOT_FOUND for an unknown id. */
  serverIdOf (machineId: number): string {
    const server = this.assignments.get(machineId)
    if (!server) throw new NotFoundError(`no file server ${machineId}`, { machineId })
    return server.serverId
  }

  /** The server bound to a serverId, if any. */
  byServerId (serverId: string): Assignment | undefined {
    return [...this.assignments.values()].find((s) => s.serverId === serverId)
  }

  /**
   * A heartbeat renews the server's lease; `cameBack` says it was down until now. NOT_FOUND
   * if it has not registered since this directory started (it must register and report its
   * files again); CONFLICT if the machine id is bound to another serverId.
   */
  heartbeat (machineId: number, serverId: string): { server: Assignment, cameBack: boolean } {
    const server = this.assignments.get(machineId)
    if (!server) throw new NotFoundError(`no file server ${machineId}: register again`, { machineId })
    if (server.serverId !== serverId) throw new ConflictError(`machine id ${machineId} belongs to another file server: register again`, { machineId })
    if (!this.joined.has(machineId)) throw new NotFoundError(`file server ${machineId} has not registered since the directory server started: register again`, { machineId })
    const cameBack = !this.isUp(machineId)
    this.beat(machineId)
    return { server, cameBack }
  }

  /** Drops a server for good; it must be down. */
  async forget (machineId: number): Promise<void> {
    const server = this.assignments.get(machineId)
    if (!server) throw new NotFoundError(`no file server ${machineId}`, { machineId })
    if (this.isUp(machineId)) {
      throw new ConflictError(`file server ${machineId} at ${server.url} is up (a heartbeat ${Math.round(this.sinceBeat(machineId) ?? 0)} ms ago): stop it first`, { machineId })
    }
    this.assignments.delete(machineId)
    this.beats.delete(machineId)
    this.joined.delete(machineId)
    await this.save()
  }

  /**
   * Marks a server draining (or back in service): kept in the state file, so a restart of
   * the directory does not put a server half drained back into placement.
   */
  async setDraining (machineId: number, draining: boolean): Promise<void> {
    const server = this.assignments.get(machineId)
    if (!server) throw new NotFoundError(`no file server ${machineId}`, { machineId })
    if ((server.draining === true) === draining) return
    if (draining) server.draining = true
    else delete server.draining
    await this.save()
  }

  isDraining (machineId: number): boolean {
    return this.assignments.get(machineId)?.draining === true
  }

  /** A drained server leaves for good, up as it is; it must be draining. */
  async leave (machineId: number): Promise<void> {
    if (!this.isDraining(machineId)) throw new ConflictError(`file server ${machineId} is not draining: only a drained server leaves (dfs-serve drain)`, { machineId })
    this.assignments.delete(machineId)
    this.beats.delete(machineId)
    this.joined.delete(machineId)
    await this.save()
  }

  has (machineId: number): boolean {
    return this.assignments.has(machineId)
  }

  isUp (machineId: number): boolean {
    const since = this.sinceBeat(machineId)
    return since !== null && since <= this.downAfterMs
  }

  /** Down wins over draining: a drained server that stopped is out of reach all the same. */
  stateOf (machineId: number): ServerState {
    if (!this.isUp(machineId)) return 'down'
    return this.isDraining(machineId) ? 'draining' : 'up'
  }

  /** A server as answers name it: id, URL and state now. NOT_FOUND for an unknown id. */
  info (machineId: number): ServerInfo {
    const server = this.assignments.get(machineId)
    if (!server) throw new NotFoundError(`no file server ${machineId}`, { machineId })
    return { machineId, url: server.url, state: this.stateOf(machineId) }
  }

  status (machineId: number): ServerStatus {
    const server = this.info(machineId)
    const beat = this.beats.get(machineId)
    const since = this.sinceBeat(machineId)
    return {
      ...server,
      state: server.state as ServerState,
      serverId: (this.assignments.get(machineId) as Assignment).serverId,
      lastHeartbeatMs: beat?.wallMs ?? null,
      sinceHeartbeatMs: since === null ? null : Math.round(since)
    }
  }

  /** Every server, by machine id. */
  all (): ServerStatus[] {
    return [...this.assignments.keys()].sort((a, b) => a - b).map((id) => this.status(id))
  }

  /** Every server that is up, by machine id. */
  up (): ServerInfo[] {
    return [...this.assignments.keys()].sort((a, b) => a - b).filter((id) => this.isUp(id)).map((id) => this.info(id))
  }

  get size (): number {
    return this.assignments.size
  }

  private sinceBeat (machineId: number): number | null {
    const beat = this.beats.get(machineId)
    return beat === undefined ? null : this.now() - beat.at
  }

  private beat (machineId: number): void {
    this.beats.set(machineId, { at: this.now(), wallMs: Date.now() })
  }

  private load (file: string, text: string | null): void {
    if (text === null) return
    let state: RegistryFile
    try {
      state = JSON.parse(text) as RegistryFile
      if (state.format !== 1 || !Array.isArray(state.servers) || !Number.isSafeInteger(state.nextMachineId)) throw new Error('unknown format')
      for (const s of state.servers) {
        if (!Number.isSafeInteger(s.machineId) || s.machineId < 1 || typeof s.serverId !== 'string' || typeof s.url !== 'string') throw new Error('a malformed server')
      }
    } catch (err) {
      // Starting empty would hand the known servers new ids: refuse, and say where the file is.
      throw new RegistryStateError(`cannot read the directory server's state ${file} (${(err as Error).message}); fix or remove it (file servers then keep their ids only if they ask for them again)`)
    }
    for (const s of state.servers) {
      this.assignments.set(s.machineId, {
        machineId: s.machineId, serverId: s.serverId, url: s.url, secret: typeof s.secret === 'string' ? s.secret : undefined, ...(s.draining === true ? { draining: true } : {})
      })
    }
    this.nextMachineId = Math.max(state.nextMachineId, ...state.servers.map((s) => s.machineId + 1))
  }

  /** Queues a write of the state as it is when the write runs; resolves once that is on disk. */
  private async save (): Promise<void> {
    const file = this.file
    if (file === null) return
    const write = async (): Promise<void> => {
      const state: RegistryFile = { format: 1, nextMachineId: this.nextMachineId, servers: [...this.assignments.values()] }
      // It holds the file servers' secrets: for this user only.
      await writeFileDurably(file, JSON.stringify(state, null, 2) + '\n', 0o600)
    }
    const done = this.saving.then(write, write)
    this.saving = done.catch(() => {})
    await done
  }
}

function sameSecret (known: string, given: string | undefined): boolean {
  if (given === undefined) return false
  const a = Buffer.from(known)
  const b = Buffer.from(given)
  return a.length === b.length && crypto.timingSafeEqual(a, b)
}
