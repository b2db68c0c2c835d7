import crypto from 'node:crypto'
import fsp from 'node:fs/promises'
import nodePath from 'node:path'
import { BadRequestError } from '../shared/errors'
import type { FileMeta } from '../shared/protocol'
import type { HeldLock } from './lockClient'
import type { OpenFileTable, Survivor } from './openFiles'
import { removeLocalFile } from './localFiles'

/**
 * libfuse 2 does not remove a file this mount holds open: it renames it to
 * `.fuse_hidden<counter><inode>` in the same folder and removes that name at the last close.
 * The mount takes that rename as the unlink it is (OpenFileTable.detach): the name goes from
 * the servers at once, for every client, and the bytes go on living here, under the hidden
 * name only this mount knows, until the last descriptor is closed.
 *
 * (hard_remove would spare the rename, but libfuse 2 then refuses every read and write on
 * the descriptors with ENOENT unless the binding sets flag_nullpath_ok, which fuse-native
 * does not.) A program that renames a file to such a name itself is taken the same way:
 * libfuse's names cannot be told from it, and nothing else makes them.
 */
export function isHiddenName (path: string): boolean {
  return /^\.fuse_hidden[0-9a-f]{16}$/.test(nodePath.posix.basename(path))
}

interface UnlinkedFile {
  path: string
  file: string
  handle: fsp.FileHandle
  meta: FileMeta
  users: number
}


/**
 * Files unlinked while this mount held them open: one local file per unlinked file, shared
 * by its descriptors as an inode is, read and written in place, and removed at the last close.
 * Nothing of it is ever stored: the file is gone for everyone else.
 */
export class UnlinkedFiles {
  private readonly byId = new Map<number, UnlinkedFile>()
  private readonly appending = new Set<number>()
  /** Hidden names handed out, until libfuse unlinks them (after the last close). */
  private readonly hiddenNames = new Set<string>()
  private readonly byPath = new Map<string, UnlinkedFile>()

  constructor (private readonly dir: string) {}

  /**
   * libfuse hides `path`, open here, as `hiddenPath`: the unlink that stands for. `unlink`
   * takes the name away on the servers (under the lease it is given, if any); the open
   * descriptors of `path` go on with a local copy, known here as `hiddenPath`.
   */
  async hide (files: OpenFileTable, path: string, hiddenPath: string, unlink: (lease?: HeldLock) => Promise<void>): Promise<void> {
    const meta = await files.attributes(path)
    await fsp.mkdir(this.dir, { recursive: true })
    const local = nodePath.join(this.dir, `unlinked-${process.pid}-${crypto.randomBytes(6).toString('hex')}`)
    let survivors: Survivor[]
    try {
      survivors = await files.detach(path, local, unlink)
    } catch (err) {
      await removeLocalFile(local)
      throw err
    }
    await this.adopt(hiddenPath, meta, local, survivors)
  }

  /** The descriptors go on with `file`, known here as `path` (the hidden name) until their last close. */
  private async adopt (path: string, meta: FileMeta, file: string, survivors: Survivor[]): Promise<void> {
    this.hiddenNames.add(path)
    if (survivors.length === 0) {
      await removeLocalFile(file)
      return
    }
    const unlinked: UnlinkedFile = { path, file, handle: await fsp.open(file, 'r+'), meta, users: survivors.length }
    for (const { id, append } of survivors) {
      this.byId.set(id, unlinked)
      if (append) this.appending.add(id)
    }
    this.byPath.set(path, unlinked)
  }

  /** libfuse unlinks a hidden name it made: whether this was one (its bytes are gone already). */
  forget (path: string): boolean {
    return this.hiddenNames.delete(path)
  }

  has (id: number): boolean {
    return this.byId.has(id)
  }

  /** Whether the path is a hidden name of an unlinked file still open here. */
  holds (path: string): boolean {
    return this.byPath.has(path)
  }

  /** The attributes of a hidden name (fstat on a descriptor of an unlinked file), or null for any other path. */
  async attributes (path: string): Promise<FileMeta | null> {
    const unlinked = this.byPath.get(path)
    if (!unlinked) return null
    const stats = await unlinked.handle.stat()
    return { ...unlinked.meta, path, size: stats.size, mtimeMs: Math.floor(stats.mtimeMs) }
  }

  async read (id: number, buffer: Buffer, length: number, position: number): Promise<number> {
    return (await this.get(id).handle.read(buffer, 0, length, position)).bytesRead
  }

  async write (id: number, data: Buffer, position: number): Promise<number> {
    const { handle } = this.get(id)
    const at = this.appending.has(id) ? (await handle.stat()).size : position
    let done = 0
    while (done < data.length) done += (await handle.write(data, done, data.length - done, at + done)).bytesWritten
    return data.length
  }

  async truncate (id: number, size: number): Promise<void> {
    await this.get(id).handle.truncate(size)
  }

  /** The last close of a descriptor: the last one takes the local file with it. */
  async release (id: number): Promise<void> {
    const unlinked = this.get(id)
    this.byId.delete(id)
    this.appending.delete(id)
    if (--unlinked.users > 0) return
    this.byPath.delete(unlinked.path)
    await unlinked.handle.close()
    await removeLocalFile(unlinked.file)
  }

  private get (id: number): UnlinkedFile {
    const unlinked = this.byId.get(id)
    if (!unlinked) throw new BadRequestError(`no unlinked file ${id}`)
    return unlinked
  }
}
