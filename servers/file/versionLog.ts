import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { timedSync } from '../common/metrics'
import { GroupSync } from './groupSync'
import { syncFile, syncFileNow } from '../common/diskSteps'
import { RecentChanges } from './recentChanges'

interface LogLine {
  p: string
  /** The file was removed (or renamed away) at version `v`: a file made at the path later starts above it. */
  r?: 1
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

/**
 * Removed paths whose last version is kept each; beyond that the oldest are forgotten, and a
 * floor above all their versions is kept instead (see Records).
 */
export const REMOVED_KEPT = 100_000

/** A log that grew by this many lines, and by more than twice the files it knows, is compacted while in use. */
export const COMPACT_AFTER_LINES = 100_000

/** Tuning for tests: a small threshold makes compaction happen within a few writes. */
export interface VersionLogOptions {
  compactAfterLines?: number
  removedKept?: number
}

/** A compacted log's line for the floor of forgotten removed versions (it names no file). */
interface FloorLine {
  f: number
}

/**
 * What the log says: each file's version and latest change ids; for a removed path, the
 * version it had, so that a file made there later starts above it (a client's copy of the
 * removed file can never pass for the new one). Removed paths would otherwise pile up
 * without end (a build's temporary files, an editor's renamed saves), in memory and in the
 * compacted log: the last REMOVED_KEPT of them are kept by path, and the versions of those
 * forgotten are kept as one floor that every path's next version starts above.
 */
class Records {
  readonly versions = new Map<string, number>()
  /** Removed paths, the least recently removed first. */
  readonly removed = new Map<string, number>()
  /** Above every version of a removed path that is no longer kept by path. */
  floor = 0
  readonly changes = new RecentChanges()

  constructor (private readonly removedKept: number) {}

  set (filePath: string, version: number, changeIds: string[] = []): void {
    this.removed.delete(filePath)
    this.versions.set(filePath, version)
    for (const id of changeIds) this.changes.remember(filePath, id)
  }

  drop (filePath: string): void {
    this.versions.delete(filePath)
    this.removed.delete(filePath)
    this.changes.drop(filePath)
  }

  markRemoved (filePath: string, version: number): void {
    this.drop(filePath)
    this.removed.set(filePath, version)
    for (const [oldest, at] of this.removed) {
      if (this.removed.size <= this.removedKept) break
      this.removed.delete(oldest)
      this.floor = Math.max(this.floor, at)
    }
  }

  /** The highest version the path may have had here: its file's, its removed file's, or the floor. */
  highest (filePath: string): number {
    return this.versions.get(filePath) ?? this.removed.get(filePath) ?? this.floor
  }

  /** The whole state as lines of a compacted log. */
  snapshot (): string[] {
    const lines: string[] = []
    if (this.floor > 0) lines.push(JSON.stringify({ f: this.floor } satisfies FloorLine) + '\n')
    for (const [p, v] of this.removed) lines.push(JSON.stringify({ p, v, r: 1 } satisfies LogLine) + '\n')
    for (const [p, v] of this.versions) {
      const line: LogLine = { p, v }
      const cs = this.changes.idsOf(p)
      if (cs !== undefined) line.cs = cs
      lines.push(JSON.stringify(line) + '\n')
    }
    return lines
  }
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
    private readonly records: Records,
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
    const records = new Records(options.removedKept ?? REMOVED_KEPT)
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
        const parsed = JSON.parse(line) as LogLine | FloorLine
        if ('f' in parsed) {
          records.floor = Math.max(records.floor, parsed.f)
          continue
        }
        const { p, v, c, cs, a, s, h, r } = parsed
        if (a !== undefined && v === undefined) {
          interrupted.set(p, a)
          continue
        }
        interrupted.delete(p)
        lastAppends.delete(p)
        if (a !== undefined && s !== undefined && h !== undefined) lastAppends.set(p, { from: a, to: s, crc: h, changeId: c })
        if (v === undefined) continue
        if (v === null) records.drop(p)
        else if (r === 1) records.markRemoved(p, v)
        else records.set(p, v, [...(cs ?? []), ...(c !== undefined ? [c] : [])])
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
        if (range.changeId !== undefined) records.changes.forget(filePath, range.changeId)
      }
    }
    const compacted = path.join(stateDir, 'versions.log.tmp')
    await fsp.writeFile(compacted, records.snapshot().join(''))
    await syncFile(compacted)
    await fsp.rename(compacted, file)
    await syncFile(stateDir)
    return new VersionLog(file, fs.openSync(file, 'a'), records, options)
  }

  /** The version on record of a file that is here (not of a removed one: see removedVersion). */
  get (filePath: string): number | undefined {
    return this.records.versions.get(filePath)
  }

  /** The version a removed file at the path had, while it is kept by path. */
  removedVersion (filePath: string): number | undefined {
    return this.records.removed.get(filePath)
  }

  /** The highest version the path may have had here (0 if none): a new file there starts above it. */
  highest (filePath: string): number {
    return this.records.highest(filePath)
  }

  /** Whether the change with this id was applied to the file (and recorded) already. */
  applied (filePath: string, changeId: string): boolean {
    return this.records.changes.applied(filePath, changeId)
  }

  /**
   * The file at the path is gone (removed, or renamed away) at its version on record, once
   * that removal is on disk. The line is written, not synced: lost in a crash, the version
   * stays on record as a file's, as before this call, which costs only memory.
   */
  removed (filePath: string): void {
    const version = this.records.versions.get(filePath)
    if (version === undefined || this.closed) return
    const text = JSON.stringify({ p: filePath, v: version, r: 1 } satisfies LogLine) + '\n'
    try {
      fs.writeSync(this.fd, text)
    } catch {
      return // the version stays on record as a file's, which is safe
    }
    this.appendLines.delete(filePath)
    this.records.markRemoved(filePath, version)
    this.linesSinceCompaction++
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
    if (++this.linesSinceCompaction > Math.max(this.compactAfterLines, 2 * (this.records.versions.size + this.records.removed.size))) this.compactInUse()
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
    const lines = this.records.snapshot()
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
      syncFileNow(path.dirname(this.file))
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
    if (version === null) this.records.drop(filePath)
    else this.records.set(filePath, version, changeId !== undefined ? [changeId] : [])
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
