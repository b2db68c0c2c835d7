import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { timedSync } from '../common/metrics'
import { GroupSync } from './groupSync'
import { syncFile } from '../common/diskSteps'
import { RecentChanges } from './recentChanges'

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
  /** At compaction: the ids of the file's latest changes (RecentChanges.idsOf). */
  cs?: string[]
  /** On an append's version line: the file's size after it ([a, s) are the bytes it added)... */
  s?: number
  /** ...and their CRC-32, so a start after a power cut can tell whether they reached the disk. */
  h?: number
}

/** The bytes an append added, as its version line records them. */
export interface AppendedRange {
  /** Size before the append. */
  from: number
  /** Size after it. */
  to: number
  /** CRC-32 of the bytes in between. */
  crc: number
}

/** What the log needs of the store to undo, at start, an append a crash cut off. */
export interface AppendRecovery {
  /** Cuts the file back to `size` bytes if it is longer. */
  cut: (filePath: string, size: number) => Promise<void>
  /** The CRC-32 of the file's bytes in [from, to), or null if it is shorter than `to` (or gone). */
  crcOf: (filePath: string, from: number, to: number) => Promise<number | null>
}

const noRecovery: AppendRecovery = { cut: async () => {}, crcOf: async () => null }

/**
 * File versions survive restarts: a client's cached copy is trusted only while its version
 * matches, so a version that fell back to 1 after a restart could make a stale copy look
 * current. Each write appends one line and fsyncs before the write is acknowledged; the
 * log is compacted to one line per file at start.
 *
 * The same line records the id of the change that made the version, so a client that
 * retries a change whose answer it lost (the server restarted in between, say) is told it
 * was applied, and it is not applied twice.
 *
 * An append costs one round of fsyncs (see FileStore.append): its intent line is written,
 * not synced, before its first byte; the data and its version line are then synced side by
 * side, the log's syncs shared between appends that run at once (GroupSync). Recovery at
 * start covers both kinds of crash: after kill -9 the page cache keeps the order of writes,
 * so an intent line with no version line after it means the append was cut off; after a
 * power cut the version line may be on disk without its bytes, which the CRC of the range
 * it records tells, and that append is undone too (it was never acknowledged).
 */
export class VersionLog {
  /** The log's fdatasyncs, shared by writes that wait at once. */
  private readonly syncs: GroupSync

  private constructor (
    private readonly file: string,
    private handle: fsp.FileHandle,
    private readonly versions: Map<string, number>,
    private readonly changes: RecentChanges
  ) {
    this.syncs = new GroupSync(async () => await this.handle.datasync())
  }

  /**
   * Reads the log and, before compacting it (which forgets intents and ranges), undoes
   * through `recovery` each append a crash cut off: one whose intent line has no version
   * line after it, or whose recorded range is not on disk as recorded.
   */
  static async open (stateDir: string, recovery: AppendRecovery = noRecovery): Promise<VersionLog> {
    await fsp.mkdir(stateDir, { recursive: true })
    const file = path.join(stateDir, 'versions.log')
    const versions = new Map<string, number>()
    const changes = new RecentChanges()
    const interrupted = new Map<string, number>()
    /** Per file, its last line if that was an append's version line: since the last start, so maybe not all on disk. */
    const lastAppends = new Map<string, AppendedRange & { changeId?: string }>()
    let text = ''
    try {
      text = await fsp.readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    for (const line of text.split('\n')) {
      if (!line) continue
      try {
        const { p, v, c, cs, a, s, h } = JSON.parse(line) as LogLine
        if (a !== undefined && v === undefined) {
          interrupted.set(p, a)
          continue
        }
        interrupted.delete(p)
        lastAppends.delete(p)
        if (a !== undefined && s !== undefined && h !== undefined) lastAppends.set(p, { from: a, to: s, crc: h, changeId: c })
        if (v === undefined) continue
        if (v === null) {
          versions.delete(p)
          changes.drop(p)
        } else {
          versions.set(p, v)
          for (const id of [...(cs ?? []), ...(c !== undefined ? [c] : [])]) changes.remember(p, id)
        }
      } catch {
        // A torn last line from a crash mid-append: that write was never acknowledged.
      }
    }
    for (const [filePath, size] of interrupted) await recovery.cut(filePath, size)
    for (const [filePath, range] of lastAppends) {
      if (interrupted.has(filePath)) continue // a later append started: this one was acknowledged, so synced
      if (await recovery.crcOf(filePath, range.from, range.to) === range.crc) {
        // Bytes past it came from an append whose intent line a power cut lost.
        await recovery.cut(filePath, range.to)
      } else {
        // Its version line reached the disk and its bytes did not: it was never acknowledged.
        await recovery.cut(filePath, range.from)
        if (range.changeId !== undefined) changes.forget(filePath, range.changeId)
      }
    }
    const compacted = path.join(stateDir, 'versions.log.tmp')
    await fsp.writeFile(compacted, [...versions].map(([p, v]) => {
      const line: LogLine = { p, v }
      const cs = changes.idsOf(p)
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
    return this.changes.applied(filePath, changeId)
  }

  /**
   * Records that an append to a file of `sizeBefore` bytes is about to write: written before
   * its first byte, not synced (it goes to disk with the version line, or a crash before
   * that leaves it in the page cache, and either way in order before the data).
   */
  async appendStarting (filePath: string, sizeBefore: number): Promise<void> {
    const line: LogLine = { p: filePath, a: sizeBefore }
    // On the event loop: a line into the page cache (servers/common/diskSteps.ts).
    fs.writeSync(this.handle.fd, JSON.stringify(line) + '\n')
  }

  /**
   * Records a version durably, with the id of the change that made it and, for an append,
   * the range it added (checked at start: see the class comment).
   */
  async set (filePath: string, version: number | null, changeId?: string, appended?: AppendedRange): Promise<void> {
    await this.writeLine(filePath, version, changeId, appended)
    this.count(filePath, version, changeId)
  }

  /**
   * As set, but the version counts here at once, before its line is durable: for a change
   * made durable by other means first (a range write's redo intent, which a start replays
   * to this same version), whose caller answers before this line's fsync.
   */
  async setBeforeDurable (filePath: string, version: number, changeId?: string): Promise<void> {
    const durable = this.writeLine(filePath, version, changeId)
    this.count(filePath, version, changeId)
    await durable
  }

  /** Writes the line (on the event loop: into the page cache); answers once it is on disk. */
  private async writeLine (filePath: string, version: number | null, changeId?: string, appended?: AppendedRange): Promise<void> {
    const line: LogLine = { p: filePath, v: version }
    if (changeId !== undefined) line.c = changeId
    if (appended !== undefined) Object.assign(line, { a: appended.from, s: appended.to, h: appended.crc })
    fs.writeSync(this.handle.fd, JSON.stringify(line) + '\n')
    await timedSync('versions', this.syncs.durable())
  }

  private count (filePath: string, version: number | null, changeId?: string): void {
    if (version === null) {
      this.versions.delete(filePath)
      this.changes.drop(filePath)
    } else {
      this.versions.set(filePath, version)
      if (changeId !== undefined) this.changes.remember(filePath, changeId)
    }
  }

  async close (): Promise<void> {
    await this.handle.close()
  }

  get path (): string {
    return this.file
  }
}
