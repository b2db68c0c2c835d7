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

  /** Moves the file at `file` to `parking` (a free name, on the same file system if it can be); its space is freed later. */
  take (file: string, parking: string): void {
    // On the event loop: a rename changes two directory entries and frees nothing.
    try {
      fs.renameSync(file, parking)
    } catch (err) {
      // A folder of the root that is another file system's mount point: removed in place.
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
      fs.unlinkSync(file)
      return
    }
    this.waiting.push(parking)
    this.draining ??= this.drain()
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
