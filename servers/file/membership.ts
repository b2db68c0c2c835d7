import type { DirectoryApi, LockApi } from '../../src/shared/api'
import { ConflictError, NotFoundError, UnauthorizedError } from '../../src/shared/errors'
import type { Logger } from '../common/http'
import type { FileStore } from './fileStore'
import type { ServerIdentity } from './identity'

/**
 * A file server's place in the cluster. Joining is: register for a machine id (bound to the
 * server's own identity, ROOT/.dfs/identity.json), have the lock server create a key per
 * file, report the files. Then a heartbeat to the directory every heartbeatMs keeps the
 * server "up" there (a lease: without one for 5 s it is down, and gets no new files).
 *
 * The directory rebuilds its namespace, and the lock server its keys, from these reports,
 * so the file server joins again when either has restarted: the heartbeat's answer carries
 * the directory's boot id (a heartbeat the directory does not know is refused), and the
 * lock server's is read from its /health at the same pace.
 */
export class ClusterMembership {
  machineId: number | null = null
  private seen = { directory: '', lock: '' }
  private timer: NodeJS.Timeout | null = null
  /** A join under way (the first or a later one): meanwhile heartbeats go on, but they start no other join. */
  private joins = 0
  private beating = false

  constructor (
    private readonly directory: DirectoryApi,
    private readonly lock: LockApi,
    private readonly store: FileStore,
    private readonly identity: ServerIdentity,
    private readonly url: string,
    private readonly log: Logger,
    /** Told the machine id and the URL the directory recorded (registeredUrlOf in src/shared/clusterUrls.ts). */
    private readonly onJoined: (machineId: number, url: string) => void,
    /** Where it registers: the directory, called with the cluster key rather than this server's own secret. */
    private readonly registrar: DirectoryApi = directory,
    /** Work to finish before the report (renames a crash cut short), once the machine id is known. */
    private readonly beforeReport: (machineId: number) => Promise<void> = async () => {},
    /** Told when a join starts and ends: meanwhile no name may change here (the report replaces them all). */
    private readonly reporting: (underWay: boolean) => void = () => {}
  ) {}

  async join (): Promise<number> {
    this.joins++
    this.reporting(true)
    try {
      return await this.joinOnce()
    } finally {
      if (--this.joins === 0) this.reporting(false)
    }
  }

  private async joinOnce (): Promise<number> {
    const boots = await this.bootIds()
    const { machineId, url } = await this.registrar.register({
      url: this.url, serverId: this.identity.serverId, machineId: this.identity.machineId ?? undefined, secret: this.identity.secret.toString('base64url')
    })
    if (this.identity.machineId !== null && this.identity.machineId !== machineId) {
      this.log(`the directory server gave machine id ${machineId}, not ${this.identity.machineId} as before (its state was lost and the old id is taken)`)
    }
    await this.identity.assigned(machineId)
    // A directory older than the answer's url recorded the URL as sent.
    const recorded = url ?? this.url
    if (recorded !== this.url) this.log(`the directory server records this server at ${recorded}, the address it came from: ${this.url} reaches only this machine (give --public-url to name another)`)
    this.onJoined(machineId, recorded)
    // Heartbeats go on while the (maybe long) scan and report run: registration made this server up.
    this.machineId = machineId
    await this.beforeReport(machineId)
    const files = await this.store.scan()
    // Links have keys as files do, and the directory maps them as files (one holder per name).
    await this.lock.createKeys(files.filter((f) => f.kind !== 'dir').map((f) => f.path))
    await this.directory.reportFiles(machineId, files.map((f) => f.kind === 'symlink' ? { ...f, kind: 'file' } : f))
    this.seen = boots
    this.log(`file server ${machineId} serves ${this.store.root} at ${recorded} (${files.length} entries)`)
    return machineId
  }

  /** Sends a heartbeat every intervalMs, and joins again when the directory or lock server restarted. */
  watch (intervalMs: number): void {
    this.timer = setInterval(() => { void this.tick() }, intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  private async tick (): Promise<void> {
    if (this.beating || this.machineId === null) return
    this.beating = true
    try {
      const [heartbeat, lock] = await Promise.allSettled([
        this.directory.heartbeat(this.machineId, this.identity.serverId),
        this.lock.health()
      ])
      let restarted: string | null = null
      if (heartbeat.status === 'fulfilled' && heartbeat.value.bootId !== this.seen.directory) restarted = 'directory server restarted'
      // Unauthorized: a directory that restarted without its state no longer has this server's secret.
      if (heartbeat.status === 'rejected' && [NotFoundError, ConflictError, UnauthorizedError].some((kind) => heartbeat.reason instanceof kind)) {
        restarted = `directory server does not know this server (${(heartbeat.reason as Error).message})`
      }
      if (lock.status === 'fulfilled' && (lock.value.bootId ?? '') !== this.seen.lock) restarted = 'lock server restarted'
      // Not once stopped: a heartbeat in flight when a drained server left must not make it join again.
      if (restarted !== null && this.joins === 0 && this.timer !== null) {
        this.log(`${restarted}: joining again`)
        // A join that fails leaves the old boot ids seen, so the next tick tries again.
        void this.join().catch(() => {})
      }
      // Any other failure: the directory or lock server is down for now; tried at the next tick.
    } finally {
      this.beating = false
    }
  }

  private async bootIds (): Promise<{ directory: string, lock: string }> {
    const [directory, lock] = await Promise.all([this.directory.health(), this.lock.health()])
    return { directory: directory.bootId ?? '', lock: lock.bootId ?? '' }
  }
}
