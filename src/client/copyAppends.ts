import fs from 'node:fs'
import { LRUCache } from 'lru-cache'

/** Copies kept open for appends at most: a log appended to line by line keeps its one. */
const HANDLES_KEPT = 64

/** Above this, an append to a copy goes through the thread pool: the kernel may hold up a large write while it writes dirty pages back. */
const QUICK_APPEND_BYTES = 64 * 1024

interface Kept {
  fd: number
  /** The copy's inode when it was opened: a copy replaced since (by rename) is opened afresh. */
  ino: number
}

/**
 * O_APPEND descriptors of cached copies, kept between the appends this client makes to a
 * file, so bringing its copy forward by a small append is one write, not an open, a write
 * and a close through libuv's thread pool (the mount's share of every `echo >> log`). The
 * write is made synchronously: a few microseconds into the page cache, where each trip
 * through the pool costs thread switches the next append waits for on a busy machine. A
 * descriptor is used only while the copy's name still leads to the inode it was opened on;
 * the cache drops it whenever it replaces or removes the copy.
 */
export class CopyAppends {
  private readonly kept = new LRUCache<string, Kept>({
    max: HANDLES_KEPT,
    dispose: (entry) => closeQuietly(entry.fd)
  })

  /** Appends `data` to the copy at `file` (the cached copy of `path`), which must exist. */
  async appendTo (path: string, file: string, data: Buffer): Promise<void> {
    if (data.length > QUICK_APPEND_BYTES) {
      this.drop(path)
      await fs.promises.appendFile(file, data, { flag: fs.constants.O_WRONLY | fs.constants.O_APPEND })
      return
    }
    const { ino } = fs.statSync(file) // ENOENT: the copy is gone (the caller drops it from the cache)
    let entry = this.kept.get(path)
    if (entry !== undefined && entry.ino !== ino) {
      this.kept.delete(path)
      entry = undefined
    }
    if (entry === undefined) {
      // Never O_CREAT: a copy removed meanwhile is not made anew holding only these bytes.
      const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND)
      entry = { fd, ino: fs.fstatSync(fd).ino }
      this.kept.set(path, entry)
    }
    for (let done = 0; done < data.length;) done += fs.writeSync(entry.fd, data, done, data.length - done)
  }

  /** The copy of `path` is replaced or removed: its descriptor is closed. */
  drop (path: string): void {
    this.kept.delete(path)
  }

  closeAll (): void {
    this.kept.clear()
  }
}

function closeQuietly (fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {
    // Closed already: nothing is left to release.
  }
}
