import fs from 'node:fs'
import { promisify } from 'node:util'

const readFd = promisify(fs.read)

/**
 * What an open handle reads a file's bytes through: the descriptor of a cached copy
 * (DescriptorReader) or a small file's bytes held in memory (BytesReader).
 */
export interface CopyReader {
  /** `resident`: the bytes were written moments ago and are surely in the page cache (see DescriptorReader.read). */
  read (buffer: Buffer, offset: number, length: number, position: number, resident?: boolean): Promise<{ bytesRead: number }>
  close (): Promise<void>
}

/**
 * A descriptor of a copy in the local cache, opened and closed on the event loop: both only
 * touch the kernel's caches, a few microseconds each, where a trip through the thread pool
 * (fs.promises) costs two thread switches and a turn of the event loop. An open+read+close
 * of a cached file makes one open and one close here and often no read at all (the kernel's
 * page cache answers it): 13 to 50 % less time per cached open in three of four interleaved
 * pairs on a 2-core VM, where the thread pool's wake-ups are dear, the same in the fourth.
 * Reads stay in the thread pool, as they may wait for the disk, unless the caller knows the
 * bytes are in the page cache (read's `resident`). (The cache is never inside the mount:
 * src/cli/mount.ts refuses that, so these calls cannot wait on this process's own mount.)
 */
export class DescriptorReader implements CopyReader {
  private fd: number | null
  /** Reads under way: the descriptor is closed only after them, so that its number, which the kernel gives to the next open, is never read through by a read of this copy. */
  private reading = 0
  private readsDone: (() => void) | null = null
  private closing: Promise<void> | null = null

  private constructor (fd: number) {
    this.fd = fd
  }

  /** Opens `file` for reading; throws as fs.openSync does (ENOENT: the copy went meanwhile). */
  static open (file: string): DescriptorReader {
    return new DescriptorReader(fs.openSync(file, 'r'))
  }

  /**
   * Reads through the thread pool, or, when the bytes are `resident` (a copy this process
   * has just written, as a cold read's download), on the event loop: a copy from the page
   * cache takes microseconds, where the thread pool's trip costs two thread switches on
   * every 128 KiB the kernel asks for. (A cold read of 256 MiB went 296 -> 357 MB/s, the
   * mean of three interleaved pairs of three passes.)
   */
  async read (buffer: Buffer, offset: number, length: number, position: number, resident = false): Promise<{ bytesRead: number }> {
    const fd = this.fd
    if (fd === null || this.closing !== null) throw Object.assign(new Error('read of a closed copy'), { code: 'EBADF' })
    if (resident) return { bytesRead: fs.readSync(fd, buffer, offset, length, position) }
    this.reading++
    try {
      return { bytesRead: (await readFd(fd, buffer, offset, length, position)).bytesRead }
    } finally {
      this.reading--
      if (this.reading === 0) this.readsDone?.()
    }
  }

  /** Closes the descriptor once the reads under way are done, as a FileHandle's close waits for them; later calls wait for the same close. */
  async close (): Promise<void> {
    this.closing ??= this.closeAfterReads()
    await this.closing
  }

  private async closeAfterReads (): Promise<void> {
    if (this.reading > 0) await new Promise<void>((resolve) => { this.readsDone = resolve })
    const fd = this.fd
    this.fd = null
    if (fd !== null) fs.closeSync(fd)
  }
}

/** A file's bytes in memory, read as a copy's descriptor is. */
export class BytesReader implements CopyReader {
  constructor (private readonly bytes: Buffer) {}

  async read (buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    if (position >= this.bytes.length) return { bytesRead: 0 }
    return { bytesRead: this.bytes.copy(buffer, offset, position, Math.min(this.bytes.length, position + length)) }
  }

  async close (): Promise<void> {}
}
