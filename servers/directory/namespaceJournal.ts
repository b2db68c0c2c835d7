import fs from 'node:fs'
import path from 'node:path'
import type { EntryKind, FileMeta } from '../../src/shared/protocol'
import type { Logger } from '../common/http'
import { Namespace } from './namespace'

/** The journal's name inside the directory's state folder. */
export const NAMESPACE_JOURNAL_FILE = 'namespace.journal'
/** Grown by this many records past the entries it holds, the journal is rewritten compacted. */
const COMPACT_AFTER_RECORDS = 10_000

/** One change to the namespace, as one JSON line: the call that made it, replayed at start. */
type NamespaceRecord =
  | { op: 'claims', machineId: number, entries: Array<[string, EntryKind]> }
  | { op: 'new', machineId: number, path: string, kind: EntryKind }
  | { op: 'drop', machineId: number, path: string }
  | { op: 'file', from: string, fromMachineId: number, to: string, toMachineId: number, replaces: number | null }
  | { op: 'folder', from: string, to: string, machineId: number }
  | { op: 'forget', machineId: number }
  | { op: 'hold', machineId: number, path: string }

const entry = ([path, kind]: [string, EntryKind]): FileMeta => ({ path, kind, version: 0, size: 0, mtimeMs: 0 })

/**
 * The directory's namespace, journaled in its state folder, so that a restarted directory
 * answers for every name at once instead of "no such file" until the file servers report
 * again (their reports still replace what each of them holds, and stay the source of truth).
 *
 * Each change is applied in memory first (which checks it), then written as one line with a
 * plain write() before it is answered: a killed directory process loses nothing of it (the
 * kernel has the bytes). There is no fsync: after a power cut the journal may lack its last
 * changes, which the file servers' reports put back when they join again. A line cut short
 * by a crash, or one that no longer applies, is skipped at load; the journal is then
 * rewritten compacted (one line of claims per file server).
 */
export class JournaledNamespace extends Namespace {
  private fd: number | null = null
  private records = 0
  private replaying = false

  private constructor (private readonly file: string, private readonly log: Logger) {
    super()
  }

  /** The namespace as the journal in `stateDir` left it (empty if there is none), journaled from now on. */
  static open (stateDir: string, log: Logger): JournaledNamespace {
    fs.mkdirSync(stateDir, { recursive: true })
    const namespace = new JournaledNamespace(path.join(stateDir, NAMESPACE_JOURNAL_FILE), log)
    namespace.replay()
    namespace.compact()
    return namespace
  }

  override replaceClaims (machineId: number, entries: FileMeta[]): void {
    super.replaceClaims(machineId, entries)
    this.record({ op: 'claims', machineId, entries: entries.map((e) => [e.path, e.kind === 'dir' ? 'dir' : 'file']) })
  }

  override claimNew (machineId: number, path: string, kind: EntryKind): void {
    super.claimNew(machineId, path, kind)
    this.record({ op: 'new', machineId, path, kind })
  }

  override drop (machineId: number, path: string): void {
    super.drop(machineId, path)
    this.record({ op: 'drop', machineId, path })
  }

  override switchFile (from: string, fromMachineId: number, to: string, toMachineId: number, replaces: number | null): void {
    super.switchFile(from, fromMachineId, to, toMachineId, replaces)
    this.record({ op: 'file', from, fromMachineId, to, toMachineId, replaces })
  }

  override switchFolder (from: string, to: string, machineId: number): Array<[string, string]> {
    const moved = super.switchFolder(from, to, machineId)
    this.record({ op: 'folder', from, to, machineId })
    return moved
  }

  override holdFolder (machineId: number, path: string): void {
    super.holdFolder(machineId, path)
    this.record({ op: 'hold', machineId, path })
  }

  override dropServer (machineId: number): number {
    const entries = super.dropServer(machineId)
    this.record({ op: 'forget', machineId })
    return entries
  }

  /** Closes the journal; the namespace stays usable in memory. */
  close (): void {
    if (this.fd !== null) fs.closeSync(this.fd)
    this.fd = null
  }

  private apply (record: NamespaceRecord): void {
    switch (record.op) {
      case 'claims': this.replaceClaims(record.machineId, record.entries.map(entry)); break
      case 'new': this.claimNew(record.machineId, record.path, record.kind); break
      case 'drop': this.drop(record.machineId, record.path); break
      case 'file': this.switchFile(record.from, record.fromMachineId, record.to, record.toMachineId, record.replaces); break
      case 'folder': this.switchFolder(record.from, record.to, record.machineId); break
      case 'forget': this.dropServer(record.machineId); break
      case 'hold': this.holdFolder(record.machineId, record.path); break
      default: throw new Error(`unknown record ${JSON.stringify(record).slice(0, 80)}`)
    }
  }

  private replay (): void {
    let text: string
    try {
      text = fs.readFileSync(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    this.replaying = true
    let skipped = 0
    try {
      for (const line of text.split('\n')) {
        if (line === '') continue
        try {
          this.apply(JSON.parse(line) as NamespaceRecord)
        } catch {
          // A line a crash cut short, or a change that a later report made moot: the
          // file servers' next reports are the truth anyway.
          skipped++
        }
      }
    } finally {
      this.replaying = false
    }
    if (skipped > 0) this.log(`namespace journal ${this.file}: ${skipped} records skipped`)
  }

  /** Rewrites the journal as one claims line per file server (beside it, then renamed over it), and appends from there. */
  private compact (): void {
    this.close()
    const staged = `${this.file}.tmp`
    const fd = fs.openSync(staged, 'w')
    try {
      for (const [machineId, entries] of this.claimsByServer()) {
        fs.writeSync(fd, JSON.stringify({ op: 'claims', machineId, entries }) + '\n')
      }
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(staged, this.file)
    this.fd = fs.openSync(this.file, 'a')
    this.records = 0
  }

  private record (record: NamespaceRecord): void {
    if (this.replaying || this.fd === null) return
    try {
      fs.writeSync(this.fd, JSON.stringify(record) + '\n')
      if (++this.records > Math.max(COMPACT_AFTER_RECORDS, this.fileCount())) this.compact()
    } catch (err) {
      // Memory has the change and the file servers hold it on disk: go on without the
      // journal rather than fail a change that is made. A restart then waits for their
      // reports, as a directory without a state folder does; so the stale journal goes.
      this.log(`namespace journal ${this.file} cannot be written (${(err as Error).message}); journaling stops, the namespace is kept in memory only`)
      this.close()
      fs.rmSync(this.file, { force: true })
    }
  }
}
