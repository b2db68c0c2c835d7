import fs from 'node:fs'
import fsp from 'node:fs/promises'
import nodePath from 'node:path'
import { Readable } from 'node:stream'
import { BadPathError, IsDirectoryError, NotFoundError } from '../../src/errors'
import { KeyedMutex } from '../../src/keyedMutex'
import type { FileMeta } from '../../src/protocol'
import { baseName, joinPath } from '../../src/paths'
import { VersionLog } from './versionLog'

/** Folder under the root where the server keeps its own state; never served. */
export const STATE_DIR_NAME = '.dfs'

export interface OpenedFile {
  meta: FileMeta
  /** Exactly meta.size bytes: appends that land while it streams are not included. */
  stream: Readable
}

/**
 * The files under one root folder, with their versions. Every path given to it is already
 * canonical (src/paths.ts); it still refuses anything that resolves outside the root, such
 * as a symlink pointing out. Writes to one file are serialized; each is on disk before it
 * returns.
 */
export class FileStore {
  private readonly writes = new KeyedMutex()

  private constructor (
    readonly root: string,
    private readonly realRoot: string,
    private readonly versions: VersionLog
  ) {}

  static async open (root: string): Promise<FileStore> {
    const absolute = nodePath.resolve(root)
    await fsp.mkdir(absolute, { recursive: true })
    const realRoot = await fsp.realpath(absolute)
    return new FileStore(absolute, realRoot, await VersionLog.open(nodePath.join(absolute, STATE_DIR_NAME)))
  }

  async close (): Promise<void> {
    await this.versions.close()
  }

  /** Every file and folder below the root, for the report to the directory server. */
  async scan (): Promise<FileMeta[]> {
    const found: FileMeta[] = []
    const walk = async (folder: string): Promise<void> => {
      const entries = await fsp.readdir(this.diskPath(folder), { withFileTypes: true })
      for (const entry of entries) {
        if (folder === '/' && entry.name === STATE_DIR_NAME) continue
        const child = joinPath(folder, entry.name)
        if (entry.isDirectory()) {
          found.push(await this.stat(child))
          await walk(child)
        } else if (entry.isFile()) {
          found.push(await this.stat(child))
        }
      }
    }
    await walk('/')
    return found
  }

  async stat (path: string): Promise<FileMeta> {
    const stats = await this.lstatInside(path)
    return this.metaOf(path, stats)
  }

  async list (path: string): Promise<Array<FileMeta & { name: string }>> {
    const stats = await this.lstatInside(path)
    if (!stats.isDirectory()) throw new BadPathError(`not a folder: ${path}`, { path })
    const names = await fsp.readdir(this.diskPath(path), { withFileTypes: true })
    const result: Array<FileMeta & { name: string }> = []
    for (const entry of names) {
      if ((path === '/' && entry.name === STATE_DIR_NAME) || !(entry.isFile() || entry.isDirectory())) continue
      try {
        result.push({ name: entry.name, ...(await this.stat(joinPath(path, entry.name))) })
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err // deleted while listing
      }
    }
    return result
  }

  /** Opens a file for reading and pins the version, size and bytes that belong together. */
  async openRead (path: string): Promise<OpenedFile> {
    await this.lstatInside(path)
    // Under the write lock, so no append is half done between fstat and version read.
    return await this.writes.run(path, async () => {
      const handle = await fsp.open(this.diskPath(path), 'r')
      try {
        const stats = await handle.stat()
        if (stats.isDirectory()) throw new IsDirectoryError(`is a folder: ${path}`, { path })
        const meta = this.metaOf(path, stats)
        if (meta.size === 0) {
          await handle.close()
          return { meta, stream: Readable.from([]) }
        }
        return { meta, stream: handle.createReadStream({ start: 0, end: meta.size - 1, autoClose: true }) }
      } catch (err) {
        await handle.close()
        throw err
      }
    })
  }

  /**
   * Appends a body to a file and makes both data and new version durable before returning.
   * A body that fails midway is cut off again, so a failed append leaves the file as before.
   */
  async append (path: string, body: Readable): Promise<FileMeta> {
    const before = await this.stat(path)
    if (before.kind !== 'file') throw new IsDirectoryError(`is a folder: ${path}`, { path })
    return await this.writes.run(path, async () => {
      const current = await this.stat(path)
      const handle = await fsp.open(this.diskPath(path), 'a')
      try {
        try {
          await writeAll(handle, body)
        } catch (err) {
          await handle.truncate(current.size)
          throw err
        }
        await this.keepMtimeGrowing(handle, current)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await this.versions.set(path, current.version + 1)
      return await this.stat(path)
    })
  }

  /**
   * The kernel and clients notice a change by mtime and size; two writes within one
   * millisecond that keep the size would otherwise look like no change at all.
   */
  private async keepMtimeGrowing (handle: fsp.FileHandle, before: FileMeta): Promise<void> {
    const after = await handle.stat()
    if (Math.floor(after.mtimeMs) <= Math.floor(before.mtimeMs)) {
      const next = (Math.floor(before.mtimeMs) + 1) / 1000
      await handle.utimes(after.atime, next)
    }
  }

  private metaOf (path: string, stats: fs.Stats): FileMeta {
    const kind = stats.isDirectory() ? 'dir' : 'file'
    return {
      path,
      kind,
      version: kind === 'dir' ? 0 : this.versions.get(path) ?? 1,
      size: kind === 'dir' ? 0 : stats.size,
      mtimeMs: Math.floor(stats.mtimeMs)
    }
  }

  private diskPath (path: string): string {
    if (path.split('/')[1] === STATE_DIR_NAME) throw new BadPathError(`${STATE_DIR_NAME} is reserved`, { path })
    return nodePath.join(this.root, path)
  }

  /** lstat that refuses symlinks and anything whose real location is outside the root. */
  private async lstatInside (path: string): Promise<fs.Stats> {
    const disk = this.diskPath(path)
    let stats: fs.Stats
    let real: string
    try {
      stats = await fsp.lstat(disk)
      real = await fsp.realpath(disk)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`no such file: ${path}`, { path })
      throw err
    }
    if (stats.isSymbolicLink() || (real !== this.realRoot && !real.startsWith(this.realRoot + nodePath.sep))) {
      throw new NotFoundError(`no such file: ${path}`, { path })
    }
    if (!stats.isFile() && !stats.isDirectory()) throw new NotFoundError(`not a regular file: ${baseName(path)}`, { path })
    return stats
  }
}

/** Writes a stream through a handle we keep: a stream made from the handle would pin it open. */
async function writeAll (handle: fsp.FileHandle, body: Readable): Promise<void> {
  for await (const chunk of body) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string)
    let done = 0
    while (done < buffer.length) done += (await handle.write(buffer, done, buffer.length - done)).bytesWritten
  }
}
