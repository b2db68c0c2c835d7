import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { timedSync } from '../common/metrics'

/** Change ids remembered per file: enough for every client's retries in flight. */
const CHANGES_KEPT_PER_FILE = 64

interface LogLine {
  p: string
  /** Absent on an append's intent line (see `a`). */
  v?: number | null
  /**
   * An append is about to write: the file's size before it. A crash before the append's
   * version line leaves the file longer than that; it is cut back at start.
   */
  a?: number
  /** The id of the change that made this version, if the client gave one. */
  c?: string
  /** At compaction: the ids of the file's latest changes, oldest first. */
  cs?: string[]
}

/**
 * File versions survive restarts: a client's cached copy is trusted only while its version
 * matches, so a version that fell back to 1 after a restart could make a stale copy look
 * current. Each write appends one line and fsyncs before the write is acknowledged; the
 * log is compacted to one line per file at start.
 *
 * The same line records the id of the change that made the version, so a client that
 * retries a change whose answer it lost (the server restarted in between, say) is told it
 * was applied, and it is not applied twice.
 */
export class VersionLog {
  private constructor (
    private readonly file: string,
    private handle: fsp.FileHandle,
    private readonly versions: Map<string, number>,
    private readonly changes: Map<string, string[]>
  ) {}

  /**
   * Reads the log; `restore` is called for each append a crash cut off (its intent line has
   * no version line after it) with the size to cut the file back to, before the log is
   * compacted (which forgets the intent).
   */
  static async open (stateDir: string, restore: (filePath: string, size: number) => Promise<void> = async () => {}): Promise<VersionLog> {
    await fsp.mkdir(stateDir, { recursive: true })
    const file = path.join(stateDir, 'versions.log')
    const versions = new Map<string, number>()
    const changes = new Map<string, string[]>()
    const interrupted = new Map<string, number>()
    let text = ''
    try {
      text = await fsp.readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    for (const line of text.split('\n')) {
      if (!line) continue
      try {
        const { p, v, c, cs, a } = JSON.parse(line) as LogLine
        if (a !== undefined) {
          interrupted.set(p, a)
          continue
        }
        interrupted.delete(p)
        if (v === undefined) continue
        if (v === null) {
          versions.delete(p)
          changes.delete(p)
        } else {
          versions.set(p, v)
          for (const id of [...(cs ?? []), ...(c !== undefined ? [c] : [])]) remember(changes, p, id)
        }
      } catch {
        // A torn last line from a crash mid-append: that write was never acknowledged.
      }
    }
    for (const [filePath, size] of interrupted) await restore(filePath, size)
    const compacted = path.join(stateDir, 'versions.log.tmp')
    await fsp.writeFile(compacted, [...versions].map(([p, v]) => {
      const line: LogLine = { p, v }
      const cs = changes.get(p)
      if (cs !== undefined) line.cs = cs
      return JSON.stringify(line) + '\n'
    }).join(''))
    await syncFile(compacted)
    await fsp.rename(compacted, file)
    await syncFile(stateDir)
    return new VersionLog(file, await fsp.open(file, 'a'), versions, changes)
  }

  get (filePath: string): number | undefined {
    return this.versions.get(filePath)
  }

  /** Whether the change with this id was applied to the file (and recorded) already. */
  applied (filePath: string, changeId: string): boolean {
    return this.changes.get(filePath)?.includes(changeId) === true
  }

  /** Records durably that an append to a file of `sizeBefore` bytes is about to write. */
  async appendStarting (filePath: string, sizeBefore: number): Promise<void> {
    const line: LogLine = { p: filePath, a: sizeBefore }
    await this.handle.appendFile(JSON.stringify(line) + '\n')
    await timedSync('versions', this.handle.datasync())
  }

  /** Records a version durably, with the id of the change that made it. */
  async set (filePath: string, version: number | null, changeId?: string): Promise<void> {
    const line: LogLine = { p: filePath, v: version }
    if (changeId !== undefined) line.c = changeId
    await this.handle.appendFile(JSON.stringify(line) + '\n')
    await timedSync('versions', this.handle.datasync())
    if (version === null) {
      this.versions.delete(filePath)
      this.changes.delete(filePath)
    } else {
      this.versions.set(filePath, version)
      if (changeId !== undefined) remember(this.changes, filePath, changeId)
    }
  }

  async close (): Promise<void> {
    await this.handle.close()
  }

  get path (): string {
    return this.file
  }
}

function remember (changes: Map<string, string[]>, filePath: string, changeId: string): void {
  let ids = changes.get(filePath)
  if (!ids) changes.set(filePath, ids = [])
  ids.push(changeId)
  if (ids.length > CHANGES_KEPT_PER_FILE) ids.shift()
}

export async function syncFile (file: string): Promise<void> {
  const handle = await fsp.open(file, fs.constants.O_RDONLY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
