import type { AdvisoryLocks, LockOwner } from '../client/advisoryLocks'
import type { FuseFlockRequest, FuseLockConflict, FuseLockRequest } from './loadFuse'

/**
 * The binding's lock and flock requests in terms of the mount's advisory locks. POSIX wants a
 * process's fcntl locks on a file gone at any close of it by that process: libfuse asks for
 * that itself, as an unlock of the whole file by the closing owner at every flush. flock
 * locks belong to the open file and go at its last close (release), which libfuse 2 does not
 * pass on: this remembers which flock owners each open file used.
 */
export class FuseLocks {
  /** Per open file (fd): its path and the flock owners that locked through it. */
  private readonly flockUsers = new Map<number, { path: string, owners: Set<string> }>()

  constructor (private readonly locks: AdvisoryLocks) {}

  /** fcntl F_GETLK, F_SETLK, F_SETLKW; getlk answers the conflicting lock (undefined: none). */
  async lock (path: string, request: FuseLockRequest, signal: AbortSignal): Promise<FuseLockConflict | undefined> {
    const who: LockOwner = { owner: request.owner, kind: 'posix' }
    const range = { start: request.start, length: request.len }
    if (request.cmd === 'getlk') {
      if (request.type === 'unlock') return undefined
      const conflict = await this.locks.test(path, who, request.type, range)
      // Its process is on another machine, or another mount: no pid of this machine's would be true.
      return conflict === null ? undefined : { type: conflict.type, start: conflict.start, len: conflict.length, pid: 0 }
    }
    if (request.type === 'unlock' && request.start === 0 && request.len === 0) {
      await this.locks.unlockAll(path, who)
      return undefined
    }
    await this.locks.lock(path, who, request.type, range, request.cmd === 'setlkw', signal)
    return undefined
  }

  async flock (path: string, fd: number, request: FuseFlockRequest, signal: AbortSignal): Promise<void> {
    const who: LockOwner = { owner: request.owner, kind: 'flock' }
    if (request.op === 'unlock') {
      await this.locks.unlockAll(path, who)
      return
    }
    const user = this.flockUsers.get(fd) ?? { path, owners: new Set<string>() }
    user.owners.add(request.owner)
    this.flockUsers.set(fd, user)
    await this.locks.lock(path, who, request.op === 'shared' ? 'read' : 'write', { start: 0, length: 0 }, request.wait, signal)
  }

  /** The open file's last close: its flock locks go. */
  async released (fd: number): Promise<void> {
    const user = this.flockUsers.get(fd)
    if (user === undefined) return
    this.flockUsers.delete(fd)
    for (const owner of user.owners) await this.locks.unlockAll(user.path, { owner, kind: 'flock' })
  }
}
