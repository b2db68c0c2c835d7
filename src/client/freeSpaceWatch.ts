import { monotonicMs } from '../shared/clock'

/**
 * Below this much free space on a file server, each write() to it asks the server how much
 * is left before taking the bytes. A mount keeps what programs write and sends it at close
 * (or when a buffer fills); a store the server then refuses for want of room fails the
 * close, and shells ignore close's errors: `echo line >> file` on a full disk would say
 * nothing and lose the line. Refused at write(), the program is told (bash prints "write
 * error: No space left on device" and fails). Above it, what is free covers the bytes this
 * mount and others write for a while, and writes ask nothing.
 */
export const LOW_SPACE_BYTES = 64 * 1024 * 1024

/** The same for files (inodes), on a disk with a fixed number of them: below it, a new file's write() asks. */
export const LOW_SPACE_FILES = 1000

/** A server's free space as it answers GET /statfs; `freeFiles` absent where the disk has no fixed number of inodes. */
export interface FreeSpace {
  freeBytes: number
  freeFiles?: number
}

/** How long a measure of a server with room to spare is used before it is taken again (behind the writes). */
const TRUST_MS = 5_000

interface Measure extends FreeSpace {
  atMs: number
  /** Bytes let through since the measure. */
  letThrough: number
}

/**
 * The free space (bytes, and inodes where a disk has a fixed number) of the file servers
 * as this mount last measured it (GET /statfs), by server: whether a write may be taken, with no request while the server has
 * room to spare. A check, not a reservation: writes of other mounts that fill the last bytes
 * between a check and the store still fail at the store.
 */
export class FreeSpaceWatch {
  private readonly measures = new Map<string, Measure>()
  private readonly measuring = new Map<string, Promise<Measure>>()

  constructor (private readonly now: () => number = monotonicMs) {}

  /**
   * Whether a write of `adding` bytes may be taken for a file of which this mount then holds
   * back `heldBack` bytes (the new ones included), all to be stored on the server `key`;
   * `newFile`: a file made here and not stored yet, which needs a free inode too. `measure`
   * asks the server for its free space: called only when the last measure is missing or
   * shows little room, else in the background once it is old.
   */
  async fits (key: string, write: { adding: number, heldBack: number, newFile: boolean }, measure: () => Promise<FreeSpace>): Promise<boolean> {
    const known = this.measures.get(key)
    if (known !== undefined && known.freeBytes - known.letThrough - write.heldBack >= LOW_SPACE_BYTES && (!write.newFile || (known.freeFiles ?? Infinity) >= LOW_SPACE_FILES)) {
      known.letThrough += write.adding
      const old = this.now() - known.atMs > TRUST_MS || known.letThrough > known.freeBytes / 2
      if (old) void this.measureOnce(key, measure).catch(() => {})
      return true
    }
    const fresh = await this.measureOnce(key, measure)
    if (write.heldBack > fresh.freeBytes - fresh.letThrough) return false
    if (write.newFile && (fresh.freeFiles ?? Infinity) < 1) return false
    fresh.letThrough += write.adding
    return true
  }

  /** One measure of a server at a time; callers meanwhile share it. */
  private async measureOnce (key: string, measure: () => Promise<FreeSpace>): Promise<Measure> {
    const underway = this.measuring.get(key)
    if (underway !== undefined) return await underway
    const taking = (async () => {
      // A server that does not answer is not taken to be full: its store will wait for it
      // (or fail) as always, and writes do not each wait for a measure meanwhile.
      const free = await measure().catch((): FreeSpace => ({ freeBytes: Number.POSITIVE_INFINITY }))
      const taken: Measure = { freeBytes: free.freeBytes, freeFiles: free.freeFiles, atMs: this.now(), letThrough: 0 }
      this.measures.set(key, taken)
      return taken
    })()
    this.measuring.set(key, taking)
    try {
      return await taking
    } finally {
      this.measuring.delete(key)
    }
  }
}
