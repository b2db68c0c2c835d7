import fs from 'node:fs'
import fsp from 'node:fs/promises'

/**
 * Removes files from their folder at once and frees their space later. An unlink frees the
 * file's blocks before it returns, and on a disk that discards freed blocks (ext4 mounted
 * with `discard`, as on this project's machines) that took 1.5 ms of a 9 KiB file, on the
 * event loop, in every request that removes one (sqlite's journal, once per transaction).
 * A rename into a folder of the same file system (the upload folder, emptied at every
 * start) takes the name away as atomically, costs a directory entry, and leaves the blocks
 * to a background unlink, one at a time so the thread pool stays free for fsyncs.
 */
export class DeferredUnlinks {
  private readonly waiting: string[] = []
  private draining: Promise<void> | null = null

  /**
   * Moves the file at `file` to `parking` and keeps it there until release() frees it or
   * restore() puts it back: a removal that another server may still refuse. False when it
   * cannot be parked (`parking` is on another file system): nothing was done then.
   */
  park (file: string, parking: string): boolean {
    // On the event loop: a rename changes two directory entries and frees nothing.
    try {
      fs.renameSync(file, parking)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
      return false
    }
  }

  /** A parked file's space is freed, in the background. */
  release (parking: string): void {
    this.waiting.push(parking)
    this.draining ??= this.drain()
  }

  /** A parked file back at its name (the caller holds the name's write lock: nothing was made there meanwhile). */
  restore (parking: string, file: string): void {
    fs.renameSync(parking, file)
  }

  /** Resolves once every file taken so far is unlinked. */
  async idle (): Promise<void> {
    await this.draining
  }

  private async drain (): Promise<void> {
    for (let next = this.waiting.shift(); next !== undefined; next = this.waiting.shift()) {
      // A file left behind (the disk failed) goes with the upload folder at the next start.
      // One unlink: fsp.rm would lstat first (what is parked here is never a folder).
      await fsp.unlink(next).catch(() => {})
    }
    this.draining = null
  }
}
