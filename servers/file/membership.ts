import type { DirectoryApi, LockApi } from '../../src/shared/api'
import type { Logger } from '../common/http'
import type { FileStore } from './fileStore'

/**
 * A file server's place in the cluster. Joining is: register for a machine id, have the lock
 * server create a key per file, report the files. The directory and lock servers keep their
 * state in memory, so the file server watches their boot ids and joins again when either has
 * restarted; otherwise every lookup would be "not found" and every lock refused until the
 * file server itself restarted.
 */
export class ClusterMembership {
  machineId: number | null = null
  private seen = { directory: '', lock: '' }
  private timer: NodeJS.Timeout | null = null
  private rejoining = false

  constructor (
    private readonly directory: DirectoryApi,
    private readonly lock: LockApi,
    private readonly store: FileStore,
    private readonly url: string,
    private readonly log: Logger,
    private readonly onJoined: (machineId: number) => void
  ) {}

  async join (): Promise<number> {
    const boots = await this.bootIds()
    const { machineId } = await this.directory.register(this.url)
    this.onJoined(machineId)
    const files = await this.store.scan()
    await this.lock.createKeys(files.filter((f) => f.kind === 'file').map((f) => f.path))
    await this.directory.reportFiles(machineId, files)
    this.machineId = machineId
    this.seen = boots
    this.log(`file server ${machineId} serves ${this.store.root} at ${this.url} (${files.length} entries)`)
    return machineId
  }

  watch (intervalMs: number): void {
    this.timer = setInterval(() => { void this.check() }, intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
  }

  private async check (): Promise<void> {
    if (this.rejoining) return
    this.rejoining = true
    try {
      const boots = await this.bootIds()
      if (boots.directory !== this.seen.directory || boots.lock !== this.seen.lock) {
        this.log(`${boots.directory !== this.seen.directory ? 'directory' : 'lock'} server restarted: joining again`)
        await this.join()
      }
    } catch {
      // Down for now: tried again at the next tick.
    } finally {
      this.rejoining = false
    }
  }

  private async bootIds (): Promise<{ directory: string, lock: string }> {
    const [directory, lock] = await Promise.all([this.directory.health(), this.lock.health()])
    return { directory: directory.bootId ?? '', lock: lock.bootId ?? '' }
  }
}
