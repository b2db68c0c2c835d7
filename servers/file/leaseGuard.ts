import type { Request } from 'express'
import { LeaseError, NotFoundError } from '../../src/shared/errors'
import type { LockApi } from '../../src/shared/api'
import { Headers } from '../../src/shared/protocol'

/**
 * The file server's side of fencing: a write must carry the live lease on its path. The
 * highest token seen per path is kept, so a writer whose lease was superseded is refused
 * even if its request arrives after the newer writer's.
 */
export class LeaseGuard {
  private readonly highestToken = new Map<string, number>()

  constructor (private readonly lock: LockApi) {}

  /** The request's X-Dfs-Lock-Token must be the live lease on `lockPath`. */
  async require (req: Request, lockPath: string): Promise<number> {
    return await this.check(req.get(Headers.lockToken), lockPath)
  }

  async check (tokenValue: string | number | undefined, lockPath: string): Promise<number> {
    const token = Number(tokenValue)
    if (tokenValue === undefined || tokenValue === '' || !Number.isSafeInteger(token)) {
      throw new LeaseError(`writing ${lockPath} needs its lock: no ${Headers.lockToken} given`, { path: lockPath })
    }
    if (token < (this.highestToken.get(lockPath) ?? 0)) {
      throw new LeaseError(`lease ${token} on ${lockPath} was superseded by a newer writer`, { path: lockPath, token })
    }
    try {
      await this.lock.check(lockPath, token)
    } catch (err) {
      if (err instanceof NotFoundError) throw new LeaseError(`the lock server has no key for ${lockPath}`, { path: lockPath, token })
      throw err
    }
    this.highestToken.set(lockPath, token)
    return token
  }

  /** The path is gone from this server; tokens only grow, so nothing is lost by forgetting. */
  forget (path: string): void {
    this.highestToken.delete(path)
  }
}
