import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
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

const fdatasync = promisify(fs.fdatasync)
const closeFd = promisify(fs.close)

/** A log that grew by this many lines, and by more than twice the files it knows, is compacted while in use. */
export const COMPACT_AFTER_LINES = 100_000

/** Tuning for tests: a small threshold makes compaction happen within a few writes. */
export interface VersionLogOptions {
  compactAfterLines?: number
}

/** A line written and not yet known to be on disk: carried into a compaction that happens meanwhile. */
interface UnsyncedLine {
  text: string
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
 *
 * An append costs one round of fsyncs (see FileStore.append): its intent line is written,
 * not synced, before its first byte; the data and its version line are then synced side by
 * side, the log's syncs shared between appends that run at once (GroupSync). Recovery at
 * start covers both kinds of crash: after kill -9 the page cache keeps the order of writes,
 * so an intent line with no version line after it means the append was cut off; after a
 * power cut the version line may be on disk without its bytes, which the CRC of the range
 * it records tells, and that append is undone too (it was never acknowledged).
 *
 * The log is also compacted while in use, once it has grown by COMPACT_AFTER_LINES and by
 * twice the files it knows, so that a busy server's log (two lines an append) neither fills
 * its disk nor makes its next start read gigabytes. The compaction runs in one turn of the
 * event loop: a snapshot of the versions and change ids, then, verbatim, every line whose
 * fsync has not finished (its writer has not answered yet, and must find it on disk in the
 * new log), then the last line of every append still under way (its intent, or its version
 * line with the range), so that recovery at start sees what it would have seen in the old
 * log. The new log is synced and renamed over the old one before the next line is written.
 */
export class VersionLog {
  /** The log's fdatasyncs, shared by writes that wait at once. */
  private readonly syncs: GroupSync
  /** Lines written since the last compaction (at start or while in use). */
  private linesSinceCompaction = 0
  private readonly compactAfterLines: number
  /** Version lines written whose fsync has not finished, oldest first. */
  private readonly unsynced = new Set<UnsyncedLine>()
  /**
   * Per file with an append under way, or one that failed, the last line that append wrote:
   * its intent, then its version line with the range. Gone once the append is on disk
   * (appendDone), or once another version line of the file follows it (as at start).
   */
  private readonly appendLines = new Map<string, string>()
  private closed = false

  private constructor (
    private readonly file: string,
    /** The log's descriptor, opened for appending; replaced by each compaction. */
    private fd: number,
    private readonly versions: Map<string, number>,
    private readonly changes: RecentChanges,
    options: VersionLogOptions
  ) {
    this.compactAfterLines = options.compactAfterLines ?? COMPACT_AFTER_LINES
    // The descriptor of the moment: a sync that starts after a compaction syncs the new log.
    this.syncs = new GroupSync(async () => await fdatasync(this.openFd()))
  }

  /**
   * Reads the log and, before compacting it (which forgets intents and ranges), undoes
   * through `recovery` each append a crash cut off: one whose intent line has no version
   * line after it, or whose recorded range is not on disk as recorded.
   */
  static async open (stateDir: string, recovery: AppendRecovery = noRecovery, options: VersionLogOptions = {}): Promise<VersionLog> {
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
    return new VersionLog(file, fs.openSync(file, 'a'), versions, changes, options)
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
    const text = JSON.stringify(line) + '\n'
    // On the event loop: a line into the page cache (servers/common/diskSteps.ts).
    fs.writeSync(this.openFd(), text)
    this.appendLines.set(filePath, text)
    this.linesSinceCompaction++
  }

  /**
   * The append to `filePath` that the last appendStarting and set recorded is on disk, bytes
   * and version line: a compaction from now on need not carry its lines.
   */
  appendDone (filePath: string): void {
    this.appendLines.delete(filePath)
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
    const text = JSON.stringify(line) + '\n'
    fs.writeSync(this.openFd(), text)
    const unsynced = { text }
    this.unsynced.add(unsynced)
    // As at start: a version line ends what an earlier intent of the file said.
    if (appended !== undefined) this.appendLines.set(filePath, text)
    else this.appendLines.delete(filePath)
    if (++this.linesSinceCompaction > Math.max(this.compactAfterLines, 2 * this.versions.size)) this.compactInUse()
    try {
      await timedSync('versions', this.syncs.durable())
    } finally {
      this.unsynced.delete(unsynced)
    }
  }

  /**
   * Rewrites the log as described in the class comment, all in this turn of the event loop.
   * If a step fails, the old log stays in use (it holds every line) and the next attempt
   * waits for as many lines again.
   */
  private compactInUse (): void {
    this.linesSinceCompaction = 0
    const lines: string[] = []
    for (const [p, v] of this.versions) {
      const line: LogLine = { p, v }
      const cs = this.changes.idsOf(p)
      if (cs !== undefined) line.cs = cs
      lines.push(JSON.stringify(line) + '\n')
    }
    for (const { text } of this.unsynced) lines.push(text)
    for (const text of this.appendLines.values()) lines.push(text)
    const side = this.file + '.tmp'
    // The new log's descriptor is the one it was written through (its offset at its end):
    // once the rename is done, nothing is left that could fail and leave lines going to the
    // old, unlinked log.
    let fd: number | null = null
    try {
      fd = fs.openSync(side, 'w')
      fs.writeFileSync(fd, lines.join(''))
      fs.fsyncSync(fd)
      fs.renameSync(side, this.file)
    } catch {
      if (fd !== null) fs.closeSync(fd)
      try {
        fs.rmSync(side, { force: true })
      } catch {
        // Left for the next compaction, which writes the side file anew.
      }
      return
    }
    // The rename must be on disk before a line goes only to the new log.
    try {
      const folder = fs.openSync(path.dirname(this.file), 'r')
      try {
        fs.fsyncSync(folder)
      } finally {
        fs.closeSync(folder)
      }
    } catch {
      // Not on disk for sure: a power cut could bring the old log back, without the lines
      // written from now on. A disk that fails this fsync fails the writers' own fsyncs too.
    }
    const old = this.fd
    this.fd = fd
    // A sync of the old descriptor may be under way: closed once no sync is (the next one syncs the new log).
    void this.syncs.durable().catch(() => {}).finally(() => { void closeFd(old).catch(() => {}) })
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

  /** The log's descriptor; a closed log's number may be another file's by now, so it is never written to. */
  private openFd (): number {
    if (this.closed) throw Object.assign(new Error(`the version log ${this.file} is closed`), { code: 'EBADF' })
    return this.fd
  }

  /** Closes the log; later calls do nothing, as a FileHandle's close would. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await closeFd(this.fd)
  }

  get path (): string {
    return this.file
  }
}
