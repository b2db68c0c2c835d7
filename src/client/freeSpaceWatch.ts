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

/** How long a measure of a server with room to spare is used before it is taken again (behind the writes). */
const TRUST_MS = 5_000

interface Measure {
  freeBytes: number
  atMs: number
  /** Bytes let through since the measure. */
  letThrough: number
}

/**
 * The free space of the file servers as this mount last measured it (GET /statfs), by
 * server: whether a write of some bytes may be taken, with no request while the server has
 * room to spare. A check, not a reservation: writes of other mounts that fill the last bytes
 * between a check and the store still fail at the store.
 */
export class FreeSpaceWatch {
  private readonly measures = new Map<string, Measure>()
  private readonly measuring = new Map<string, Promise<Measure>>()

  constructor (private readonly now: () => number = monotonicMs) {}

  /**
   * Whether a write of `adding` bytes may be taken for a file of which this mount then holds
   * back `heldBack` bytes (the new ones included), all to be stored on the server `key`.
   * `measure` asks it for its free space: called only when the last measure is missing or
   * shows little room, else in the background once it is old.
   */
  async fits (key: string, adding: number, heldBack: number, measure: () => Promise<number>): Promise<boolean> {
    const known = this.measures.get(key)
    if (known !== undefined && known.freeBytes - known.letThrough - heldBack >= LOW_SPACE_BYTES) {
      known.letThrough += adding
      const old = this.now() - known.atMs > TRUST_MS || known.letThrough > known.freeBytes / 2
      if (old) void this.measureOnce(key, measure).catch(() => {})
      return true
    }
    const fresh = await this.measureOnce(key, measure)
    if (heldBack > fresh.freeBytes - fresh.letThrough) return false
    fresh.letThrough += adding
    return true
  }

  /** One measure of a server at a time; callers meanwhile share it. */
  private async measureOnce (key: string, measure: () => Promise<number>): Promise<Measure> {
    const underway = this.measuring.get(key)
    if (underway !== undefined) return await underway
    const taking = (async () => {
      // A server that does not answer is not taken to be full: its store will wait for it
      // (or fail) as always, and writes do not each wait for a measure meanwhile.
      const freeBytes = await measure().catch(() => Number.POSITIVE_INFINITY)
      const taken: Measure = { freeBytes, atMs: this.now(), letThrough: 0 }
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
