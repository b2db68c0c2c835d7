import { FileServerPool } from '../../src/shared/api'
import type { ServerInfo } from '../../src/shared/protocol'
import type { CallerIdentity } from '../../src/shared/transport'

/** How long placement waits for a file server's free space before ranking it last. */
export const STATFS_TIMEOUT_MS = 1000

/**
 * Picks the file server for a new entry among those that hold its parent folder: the
 * preferred one if it is among them (a rename stays on its server), else the one with the
 * most free space. A server that does not say how much it has ranks last but stays a
 * candidate, so the caller gets that server's own error rather than a vague refusal.
 */
export class Placement {
  private readonly fileServers: FileServerPool

  constructor (timeoutMs = STATFS_TIMEOUT_MS, caller: CallerIdentity = {}) {
    this.fileServers = new FileServerPool(timeoutMs, caller)
  }

  async choose (candidates: ServerInfo[], prefer?: number): Promise<ServerInfo> {
    if (candidates.length === 0) throw new Error('no file server to place on')
    const preferred = candidates.find((s) => s.machineId === prefer)
    if (preferred) return preferred
    if (candidates.length === 1) return candidates[0]
    const free = await Promise.all(candidates.map(async (server) => {
      try {
        return (await this.fileServers.of(server).statfs()).freeBytes
      } catch {
        return -1
      }
    }))
    let best = 0
    for (let i = 1; i < candidates.length; i++) if (free[i] > free[best]) best = i
    return candidates[best]
  }
}
