import os from 'node:os'
import type { FuseLockConflict, FuseLockRequest } from '../src/fuse/loadFuse'

type Callback = (code: number, ...values: unknown[]) => void

/** One owner's lock on a byte range of a file: end is exclusive (Infinity: to the end of the file). */
interface HeldRange {
  owner: string
  type: 'read' | 'write'
  start: number
  end: number
}

const EAGAIN = -os.constants.errno.EAGAIN

/**
 * fcntl byte-range locks answered from this process's memory, for the durable floor
 * (bench/passthrough.ts --sync-server): dfs takes every fcntl lock at its mount, where it
 * holds them for other mounts to see (issue #12), so each lock a database takes costs dfs a
 * FUSE round trip that a file system leaving locks to the kernel never pays. With this
 * table the floor pays that round trip too, and no more: the answer comes from memory, as
 * dfs's does while its mount holds the file's locks. A measuring tool's table: conflicts
 * between owners are found (getlk answers them, setlk refuses with EAGAIN), but a blocking
 * setlkw that meets one is refused as well rather than queued, which no workload of the
 * benchmark (one sqlite3 process) ever asks for.
 */
export class MemoryLocks {
  private readonly byPath = new Map<string, HeldRange[]>()

  /** The binding's lock operation (patched fuse-native): path, fd, request, abort signal, callback. */
  readonly lock = (path: string, _fd: number, request: FuseLockRequest, _signal: AbortSignal, cb: Callback): void => {
    const start = request.start
    const end = request.len === 0 ? Infinity : request.start + request.len
    const held = this.byPath.get(path) ?? []
    if (request.cmd === 'getlk') {
      const conflict = request.type === 'unlock' ? undefined : this.conflictOf(held, request.owner, request.type, start, end)
      const answer: FuseLockConflict | undefined = conflict === undefined
        ? undefined
        : { type: conflict.type, start: conflict.start, len: conflict.end === Infinity ? 0 : conflict.end - conflict.start, pid: 0 }
      cb(0, answer)
      return
    }
    if (request.type !== 'unlock' && this.conflictOf(held, request.owner, request.type, start, end) !== undefined) {
      cb(EAGAIN)
      return
    }
    // As POSIX has it: the owner's locks in the range are replaced (split where they reach beyond it).
    const kept: HeldRange[] = []
    for (const range of held) {
      if (range.owner !== request.owner || range.end <= start || range.start >= end) {
        kept.push(range)
        continue
      }
      if (range.start < start) kept.push({ ...range, end: start })
      if (range.end > end) kept.push({ ...range, start: end })
    }
    if (request.type !== 'unlock') kept.push({ owner: request.owner, type: request.type, start, end })
    if (kept.length === 0) this.byPath.delete(path)
    else this.byPath.set(path, kept)
    cb(0)
  }

  /** Another owner's lock over the range that a lock of `type` cannot share with. */
  private conflictOf (held: HeldRange[], owner: string, type: 'read' | 'write', start: number, end: number): HeldRange | undefined {
    return held.find((range) => range.owner !== owner && range.start < end && range.end > start && (type === 'write' || range.type === 'write'))
  }
}
