import fs from 'node:fs'
import fsp from 'node:fs/promises'
import { BadRequestError, NotSupportedError } from '../errors'
import { normalizePath } from '../paths'
import type { DfsClient } from './dfsClient'

const { O_RDONLY, O_WRONLY, O_APPEND, O_TRUNC } = fs.constants
/** Linux's mask of the access mode bits; Node does not export it. */
const O_ACCMODE = 3

/** Appends held back longer than this are sent early, so memory stays bounded. */
export const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024

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
}

/**
 * The open-file table behind a mount: what one open() of a remote file means until its
 * close. Opening for reading revalidates the local copy with the file server (close-to-open
 * consistency) and reads come from that copy. Writes at the end of the file are gathered
 * and sent as one locked append when the file is flushed or closed, so many small write()
 * calls cost one request.
 */
export class OpenFileTable {
  private readonly files = new Map<number, OpenFile>()
  private nextId = 1

  constructor (private readonly client: DfsClient, private readonly maxPendingBytes = DEFAULT_MAX_PENDING_BYTES) {}

  async open (path: string, flags: number): Promise<number> {
    const canonical = normalizePath(path)
    const access = flags & O_ACCMODE
    if (access !== O_RDONLY && (flags & O_TRUNC) !== 0) {
      throw new NotSupportedError(`overwriting ${canonical} is not supported yet: only appends`, { path: canonical })
    }
    let reader: fsp.FileHandle | null = null
    let appendBase: number
    if (access === O_WRONLY) {
      appendBase = (await this.client.statFresh(canonical)).size
    } else {
      const cached = await this.client.fetch(canonical)
      reader = await fsp.open(cached.file, 'r')
      appendBase = cached.meta.size
    }
    const id = this.nextId++
    this.files.set(id, { id, path: canonical, flags, reader, appendBase, pending: [], pendingBytes: 0 })
    return id
  }

  async read (id: number, buffer: Buffer, length: number, position: number): Promise<number> {
    const file = this.get(id)
    if (file.pendingBytes > 0) await this.flush(id)
    if (!file.reader) throw new BadRequestError(`${file.path} is not open for reading`)
    const { bytesRead } = await file.reader.read(buffer, 0, length, position)
    return bytesRead
  }

  async write (id: number, data: Buffer, position: number): Promise<number> {
    const file = this.get(id)
    const atEnd = (file.flags & O_APPEND) !== 0 || position === file.appendBase + file.pendingBytes
    if (!atEnd) {
      throw new NotSupportedError(`writing inside ${file.path} is not supported yet: only appends`, { path: file.path })
    }
    // The kernel reuses its buffer once we answer.
    file.pending.push(Buffer.from(data))
    file.pendingBytes += data.length
    if (file.pendingBytes >= this.maxPendingBytes) await this.flush(id)
    return data.length
  }

  /** Sends what this handle wrote so far; errors reach the caller's close(). */
  async flush (id: number): Promise<void> {
    const file = this.get(id)
    if (file.pendingBytes === 0) return
    const data = file.pending.length === 1 ? file.pending[0] : Buffer.concat(file.pending)
    const meta = await this.client.append(file.path, data)
    file.pending = []
    file.pendingBytes = 0
    file.appendBase = meta.size
  }

  async release (id: number): Promise<void> {
    const file = this.get(id)
    try {
      await this.flush(id)
    } finally {
      this.files.delete(id)
      await file.reader?.close()
    }
  }

  /** Bytes written through open handles but not yet sent: stat shows them, as a local fs would. */
  pendingBytesOf (path: string): number {
    let total = 0
    for (const file of this.files.values()) if (file.path === path) total += file.pendingBytes
    return total
  }

  /** Sends everything held back, e.g. before unmounting. */
  async flushAll (): Promise<void> {
    await Promise.allSettled([...this.files.keys()].map(async (id) => await this.flush(id)))
  }

  private get (id: number): OpenFile {
    const file = this.files.get(id)
    if (!file) throw new BadRequestError(`no open file ${id}`)
    return file
  }
}
