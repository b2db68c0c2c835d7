import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { readStateFile, writeFileDurably } from '../common/durable'

/** Bits a file server needs on its own disk to serve a file (read, write) or a folder (also search). */
export function bitsServerNeeds (isFolder: boolean): number {
  return isFolder ? 0o700 : 0o600
}

/** The mode a file or folder gets on the server's disk for a dfs mode: the dfs mode plus what the server needs. */
export function diskModeOf (mode: number, isFolder: boolean): number {
  return (mode & 0o7777) | bitsServerNeeds(isFolder)
}

interface ModeLine {
  p: string
  /** The dfs mode; null: the disk's mode is the dfs mode. */
  m: number | null
}

/**
 * The dfs modes a file server's disk cannot hold as they are. A file with mode 0 or 0o400,
 * a folder with 0o500, would be unreadable or unwritable for the server itself, so on disk
 * they get the owner's bits they lack (diskModeOf) and their true mode is kept here. Most
 * entries have a mode the disk holds as is and are not in this record at all, so it stays
 * small. One line per change, fsynced before the change is answered; compacted at start.
 * Keyed by path, as the version log is: renames carry an entry along (see FileStore).
 */
export class ModeRecord {
  private constructor (private readonly file: string, private readonly handle: fsp.FileHandle, private readonly modes: Map<string, number>) {}

  static async open (stateDir: string): Promise<ModeRecord> {
    const file = path.join(stateDir, 'modes.log')
    const modes = new Map<string, number>()
    for (const line of (await readStateFile(file) ?? '').split('\n')) {
      if (!line) continue
      try {
        const { p, m } = JSON.parse(line) as ModeLine
        if (m === null) modes.delete(p)
        else modes.set(p, m)
      } catch {
        // A torn last line from a crash mid-write: that change was never acknowledged.
      }
    }
    // Compacted to one line per recorded path.
    await writeFileDurably(file, [...modes].map(([p, m]) => JSON.stringify({ p, m }) + '\n').join(''))
    return new ModeRecord(file, await fsp.open(file, 'a'), modes)
  }

  /** The dfs mode of a path whose disk mode is `diskMode`. */
  modeOf (filePath: string, diskMode: number): number {
    return this.modes.get(filePath) ?? (diskMode & 0o7777)
  }

  /** Records a path's dfs mode, durably, if its disk cannot hold it; else forgets any record of it. */
  async set (filePath: string, mode: number, isFolder: boolean): Promise<void> {
    const exact = diskModeOf(mode, isFolder) === (mode & 0o7777)
    await this.write(filePath, exact ? null : mode & 0o7777)
  }

  /** Forgets the record of a path (and with `tree`, of everything below it). */
  async drop (filePath: string, tree = false): Promise<void> {
    for (const known of this.pathsAt(filePath, tree)) await this.write(known, null)
  }

  /** Moves the records of a path (and with `tree`, of everything below it) to another. */
  async move (from: string, to: string, tree = false): Promise<void> {
    for (const known of this.pathsAt(to, tree)) await this.write(known, null)
    for (const known of this.pathsAt(from, tree)) {
      const mode = this.modes.get(known) as number
      await this.write(to + known.slice(from.length), mode)
      await this.write(known, null)
    }
  }

  async close (): Promise<void> {
    await this.handle.close()
  }

  /** The recorded paths at a path (and with `tree`, below it: a folder's rename or removal, rare). */
  private pathsAt (filePath: string, tree: boolean): string[] {
    if (!tree) return this.modes.has(filePath) ? [filePath] : []
    return [...this.modes.keys()].filter((known) => known === filePath || known.startsWith(filePath + '/'))
  }

  private async write (filePath: string, mode: number | null): Promise<void> {
    if (mode === null && !this.modes.has(filePath)) return
    if (mode !== null && this.modes.get(filePath) === mode) return
    const line: ModeLine = { p: filePath, m: mode }
    // The line on the event loop, its sync in the thread pool (servers/common/diskSteps.ts).
    fs.writeSync(this.handle.fd, JSON.stringify(line) + '\n')
    await this.handle.datasync()
    if (mode === null) this.modes.delete(filePath)
    else this.modes.set(filePath, mode)
  }

  get path (): string {
    return this.file
  }
}
