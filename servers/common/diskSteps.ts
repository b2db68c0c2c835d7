import fs from 'node:fs'
import type fsp from 'node:fs/promises'
import { promisify } from 'node:util'

/*
 * How the servers split their disk work between the event loop and libuv's thread pool.
 *
 * A trip through the thread pool costs two thread switches and a turn of the event loop;
 * on a machine whose cores are busy (the mount, the program using it and the servers
 * sharing two cores) each trip waits for a CPU, and a request made of ten such steps spends
 * most of its time waiting for its turns. Measured on the file server: POST /append went
 * from 3.6 to 2.0 ms, PUT /create from 7.7 to 4.9 ms, a range write from 4.9 to 2.6 ms, when
 * the quick steps below ran on the event loop instead.
 *
 * So: steps that only touch the kernel's caches (lstat, fstat, realpath, open, close, link,
 * unlink, chmod, utimes, and writes of up to QUICK_WRITE_BYTES into the page cache) run
 * synchronously, a few microseconds each. Steps that wait for the device (fsync,
 * fdatasync), reads of a file's bytes and large writes (which the kernel may throttle while
 * it writes dirty pages back) stay asynchronous, so the event loop never waits for a disk.
 */

/**
 * Writes of up to this many bytes are made on the event loop; larger ones in the thread
 * pool. A line, a page of a database, a small file: not a large upload, whose writes the
 * kernel may hold up while it writes dirty pages back (measured: a 256 MiB upload spent a
 * second of the event loop in synchronous writes with 1 MiB here).
 */
export const QUICK_WRITE_BYTES = 64 * 1024

const fsyncFd = promisify(fs.fsync)
const readFd = promisify(fs.read)

/**
 * Writes all of `data` through `handle` at `position` (undefined: at the handle's offset,
 * as an O_APPEND handle does): synchronously when `data` is small, else in the thread pool.
 */
export async function writeFully (handle: fsp.FileHandle, data: Buffer, position?: number): Promise<void> {
  let done = 0
  if (data.length <= QUICK_WRITE_BYTES) {
    while (done < data.length) done += fs.writeSync(handle.fd, data, done, data.length - done, position === undefined ? null : position + done)
    return
  }
  while (done < data.length) done += (await handle.write(data, done, data.length - done, position === undefined ? null : position + done)).bytesWritten
}

/**
 * Writes `buffers` (`total` bytes in all) one after the other at the handle's offset (an
 * O_APPEND handle's end, a new file's next byte): on the event loop when they are small,
 * else as one writev in the thread pool. `quick: false` sends even a small write to the
 * pool (a piece of a large upload, which the kernel may hold up).
 */
export async function writeGathered (handle: fsp.FileHandle, buffers: Buffer[], total: number, quick = total <= QUICK_WRITE_BYTES): Promise<void> {
  if (quick) {
    for (const buffer of buffers) await writeFully(handle, buffer)
    return
  }
  let skip = (await handle.writev(buffers)).bytesWritten
  if (skip === total) return
  // A short writev (rare on a local disk): the rest, buffer by buffer.
  for (const buffer of buffers) {
    if (skip >= buffer.length) {
      skip -= buffer.length
      continue
    }
    await writeFully(handle, buffer.subarray(skip))
    skip = 0
  }
}

/** A read of up to `length` bytes at `position` into `buffer` at `offset`, in the thread pool (the bytes may come from the disk). */
export async function readAt (fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  return (await readFd(fd, buffer, offset, length, position)).bytesRead
}

/** Fills `buffer` from `position` on, or up to the end of the file: the bytes read (fewer at the end). */
export async function readFully (fd: number, buffer: Buffer, position: number): Promise<number> {
  let filled = 0
  while (filled < buffer.length) {
    const bytesRead = await readAt(fd, buffer, filled, buffer.length - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}

/** fsync of a file or folder by name, all on the event loop: for a step that must finish in this turn (a journal's compaction). */
export function syncFileNow (file: string): void {
  const fd = fs.openSync(file, fs.constants.O_RDONLY)
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** fsync of a file or folder by name: the open and close on the event loop, the fsync in the thread pool. */
export async function syncFile (file: string): Promise<void> {
  const fd = fs.openSync(file, fs.constants.O_RDONLY)
  try {
    await fsyncFd(fd)
  } finally {
    fs.closeSync(fd)
  }
}
