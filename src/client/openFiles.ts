import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { BadRequestError } from '../errors'
import { normalizePath } from '../paths'
import type { FileMeta } from '../protocol'
import type { DfsClient } from './dfsClient'
import type { HeldLock } from './lockClient'

const { O_RDONLY, O_WRONLY, O_APPEND } = fs.constants
/** Linux's mask of the access mode bits; Node does not export it. */
const O_ACCMODE = 3

/** Appends held back longer than this are sent early, so memory stays bounded. */
export const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024

/** A private copy being changed in place, stored whole on flush (store-on-close). */
interface WorkingCopy {
  file: string
  handle: fsp.FileHandle
  /** The file's lock, held from the first write that needed the copy until release. */
  held: HeldLock
  size: number
  /** Changed since it was last stored. */
  dirty: boolean
  /** What the server answered for the last store, if the copy has not changed since. */
  stored: FileMeta | null
}

interface OpenFile {
  id: number
  path: string
  flags: number
  /** The local copy this handle reads from (a cached version). */
  reader: fsp.FileHandle | null
  /** Remote size the pending bytes will be appended to. */
  appendBase: number
  pending: Buffer[]
  pendingBytes: number
  /** This handle's appends were sent since `reader` was opened: it may not hold them. */
  readerBehind: boolean
  working: WorkingCopy | null
}

/**
 * The open-file table behind a mount: what one open() of a remote file means until its
 * close. Opening for reading revalidates the local copy with the file server (close-to-open
 * consistency) and reads come from that copy. Writes at the end of the file are gathered
 * and sent as one locked append on flush, so many small write() calls cost one request.
 * A write anywhere else takes the file's lock until release, moves the handle onto a private
 * working copy of the current version, and the whole copy is stored on flush: other clients
 * see the file as it was before or after, never half written.
 */
export class OpenFileTable {
  private readonly files = new Map<number, OpenFile>()
  private nextId = 1
  private readonly workDir: string

  constructor (private readonly client: DfsClient, private readonly maxPendingBytes = DEFAULT_MAX_PENDING_BYTES) {
    this.workDir = path.join(client.cache.dir, 'work')
  }

  async open (filePath: string, flags: number): Promise<number> {
    const canonical = normalizePath(filePath)
    const access = flags & O_ACCMODE
    let reader: fsp.FileHandle | null = null
    let appendBase = 0
    if (access !== O_WRONLY) {
      const cached = await this.client.fetch(canonical)
      reader = await fsp.open(cached.file, 'r')
      appendBase = cached.meta.size
    } else {
      // Tells an append (a write at the end) from an overwrite; and a server that is down
      // fails the open, where the shell reports it: `echo x >> f` ignores errors of close().
      appendBase = (await this.client.statFresh(canonical)).size
    }
    const id = this.nextId++
    this.files.set(id, { id, path: canonical, flags, reader, appendBase, pending: [], pendingBytes: 0, readerBehind: false, working: null })
    return id
  }

  async read (id: number, buffer: Buffer, length: number, position: number): Promise<number> {
    const file = this.get(id)
    if (file.pendingBytes > 0) await this.flush(id)
    // The cache may have replaced the copy the reader has open rather than append to it.
    if (!file.working && file.readerBehind) await this.reopenReader(file)
    const source = file.working?.handle ?? file.reader
    if (!source) throw new BadRequestError(`${file.path} is not open for reading`)
    const { bytesRead } = await source.read(buffer, 0, length, position)
    return bytesRead
  }

  async write (id: number, data: Buffer, position: number): Promise<number> {
    const file = this.get(id)
    if (!file.working) {
      if ((file.flags & O_APPEND) !== 0 || position === file.appendBase + file.pendingBytes) {
        // The kernel reuses its buffer once we answer.
        file.pending.push(Buffer.from(data))
        file.pendingBytes += data.length
        if (file.pendingBytes >= this.maxPendingBytes) await this.flush(id)
        return data.length
      }
      await this.startWorkingCopy(file)
    }
    const working = file.working as WorkingCopy
    let done = 0
    while (done < data.length) done += (await working.handle.write(data, done, data.length - done, position + done)).bytesWritten
    working.size = Math.max(working.size, position + data.length)
    working.dirty = true
    return data.length
  }

  /** ftruncate: always through a working copy, so it is stored with the handle's other changes. */
  async truncate (id: number, size: number): Promise<void> {
    const file = this.get(id)
    if (!file.working) await this.startWorkingCopy(file)
    const working = file.working as WorkingCopy
    await working.handle.truncate(size)
    working.size = size
    working.dirty = true
  }

  /**
   * truncate(path): applied to a handle that has the path open for writing if there is one,
   * one with a working copy first (the change then lands with that handle's store on
   * close), else on the file server at once. The kernel sends open(O_TRUNC) this way, with
   * no handle: applied to the server at once, `echo x > file` would leave the file empty for
   * everyone until close, and empty for good if the write then failed.
   */
  async truncatePath (filePath: string, size: number): Promise<void> {
    const canonical = normalizePath(filePath)
    const writers = [...this.files.values()].filter((f) => f.path === canonical && (f.working || (f.flags & O_ACCMODE) !== O_RDONLY))
    const open = writers.find((f) => f.working) ?? writers[writers.length - 1]
    if (open) await this.truncate(open.id, size)
    else await this.client.truncate(canonical, size)
  }

  /** Sends what this handle wrote so far; errors reach the caller's close(). */
  async flush (id: number): Promise<void> {
    const file = this.get(id)
    if (file.pendingBytes > 0) {
      const data = file.pending.length === 1 ? file.pending[0] : Buffer.concat(file.pending)
      const meta = await this.client.append(file.path, data)
      file.pending = []
      file.pendingBytes = 0
      file.appendBase = meta.size
      file.readerBehind = file.reader !== null
    }
    const working = file.working
    if (working?.dirty) {
      await working.handle.sync()
      const meta = await this.client.writeFile(file.path, fs.createReadStream(working.file), { lease: working.held })
      working.dirty = false
      working.stored = meta
    }
  }

  async release (id: number): Promise<void> {
    const file = this.get(id)
    try {
      await this.flush(id)
    } finally {
      this.files.delete(id)
      await file.reader?.close()
      if (file.working) await this.closeWorkingCopy(file.path, file.working)
    }
  }

  /** A size that counts what open handles hold back, as a local file system would show it. */
  localView (meta: FileMeta): FileMeta {
    if (meta.kind !== 'file') return meta
    let size = meta.size
    let extra = 0
    for (const file of this.files.values()) {
      if (file.path !== meta.path) continue
      if (file.working) size = file.working.size
      extra += file.pendingBytes
    }
    return extra === 0 && size === meta.size ? meta : { ...meta, size: size + extra }
  }

  /** Sends everything held back, e.g. before unmounting. */
  async flushAll (): Promise<void> {
    await Promise.allSettled([...this.files.keys()].map(async (id) => await this.flush(id)))
  }

  /**
   * Takes the lock, then copies the version current under the lock, with this handle's
   * unsent appends put in place locally: they are stored with the copy.
   */
  private async startWorkingCopy (file: OpenFile): Promise<void> {
    const held = await this.client.locks.acquire(file.path)
    let workingFile: string | null = null
    try {
      const cached = await this.client.fetch(file.path)
      await fsp.mkdir(this.workDir, { recursive: true })
      workingFile = path.join(this.workDir, `${process.pid}-${file.id}-${crypto.randomBytes(4).toString('hex')}`)
      await fsp.copyFile(cached.file, workingFile)
      const handle = await fsp.open(workingFile, 'r+')
      let size = cached.meta.size
      if (file.pendingBytes > 0) {
        await handle.write(Buffer.concat(file.pending), 0, file.pendingBytes, size)
        size += file.pendingBytes
      }
      file.working = { file: workingFile, handle, held, size, dirty: file.pendingBytes > 0, stored: null }
      file.pending = []
      file.pendingBytes = 0
    } catch (err) {
      await held.release()
      if (workingFile) await fsp.rm(workingFile, { force: true })
      throw err
    }
  }

  private async reopenReader (file: OpenFile): Promise<void> {
    const cached = await this.client.fetch(file.path)
    const reader = await fsp.open(cached.file, 'r')
    await file.reader?.close()
    file.reader = reader
    file.readerBehind = false
  }

  /** Gives the lock back; a copy that is exactly what was stored becomes the cached copy. */
  private async closeWorkingCopy (filePath: string, working: WorkingCopy): Promise<void> {
    try {
      await working.handle.close()
      if (!working.dirty && working.stored) {
        await this.client.cache.adopt(filePath, working.stored, working.file).catch(() => {})
      }
    } finally {
      await working.held.release()
      await fsp.rm(working.file, { force: true })
    }
  }

  private get (id: number): OpenFile {
    const file = this.files.get(id)
    if (!file) throw new BadRequestError(`no open file ${id}`)
    return file
  }
}
