import crypto from 'node:crypto'
import fsp from 'node:fs/promises'
import nodePath from 'node:path'
import zlib from 'node:zlib'
import type { ByteRange } from '../../src/shared/rangeFrames'
import { syncFile, writeFully } from '../common/diskSteps'
import { timedSync } from '../common/metrics'

/** A range write about to be applied in place: its ranges and the size the file then has. */
export interface RangeIntent {
  path: string
  /** The version the ranges apply to; the file has fromVersion + 1 once they are in. */
  fromVersion: number
  size: number
  /** The ranges, framed as on the wire (rangeFrames.ts). */
  body: Buffer
  /** The file's dev:ino when the intent was made: it is never replayed into another file at the path. */
  inode?: string
  /** The client's change id: a replayed write is recorded as applied, so the client's retry is told so. */
  changeId?: string
}

interface IntentHeader {
  p: string
  v: number
  s: number
  /** Body length and CRC-32: an intent a crash cut short, or whose bytes a power cut lost, is not replayed. */
  n: number
  h: number
  i?: string
  c?: string
}

/** A journal file that holds one intent at a time, reused from write to write. */
export interface IntentSlot {
  file: string
  handle: fsp.FileHandle
}

/**
 * A redo journal for range writes (PATCH /content), which change a file in place rather than
 * replace it: writing the changed pages of a 50 MB database costs their size, not 50 MB. All
 * ranges of one write land, or none do.
 *
 * Two rounds of fsyncs per write: the intent (path, version, ranges, size, inode) is on disk
 * before the file's first byte changes; then the ranges and the size, and the file's
 * fdatasync and the version line run side by side. A crash in the second round leaves the
 * version at `fromVersion` or at `fromVersion + 1` with the bytes anywhere between old and
 * new, and the start replays the intent in both cases (writing the same bytes again is
 * harmless). The write is answered between the two rounds (FileStore.writeRanges): from the
 * first on, the intent makes it durable. Once the second round is done, its data is on disk,
 * so a later change to the file (which waits for that round under the file's write lock)
 * never needs the intent again; a later change that bumps the version puts it past
 * `fromVersion + 1` for good (versions only go up, and every change that replaces the file
 * at the path gives it a version above), so a stale intent is never replayed over it. A
 * change that keeps the version (times, mode) is not undone by writing the same bytes.
 *
 * The intents live in slot files in ROOT/.dfs/ranges/, each reused for the next write once
 * its write's second round is done: no file made, no name synced and no unlink per write. A slot keeps
 * its last intent until it is overwritten (the rule above makes that harmless); the start
 * empties the folder once it has replayed what needed it.
 */
export class RangeJournal {
  private readonly free: IntentSlot[] = []
  private made = 0

  private constructor (private readonly dir: string) {}

  static async open (stateDir: string): Promise<RangeJournal> {
    const dir = nodePath.join(stateDir, 'ranges')
    await fsp.mkdir(dir, { recursive: true })
    return new RangeJournal(dir)
  }

  /** Writes an intent durably into a free slot (a new one if none is free); answers the slot, for done(). */
  async record (intent: RangeIntent): Promise<IntentSlot> {
    const header: IntentHeader = { p: intent.path, v: intent.fromVersion, s: intent.size, n: intent.body.length, h: zlib.crc32(intent.body) }
    if (intent.inode !== undefined) header.i = intent.inode
    if (intent.changeId !== undefined) header.c = intent.changeId
    const bytes = Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), intent.body])
    const reused = this.free.pop()
    const slot = reused ?? await this.newSlot()
    try {
      // Past its end a reused slot may still hold an older, longer intent: the header's length and CRC say where this one ends.
      await writeFully(slot.handle, bytes, 0)
      // A new slot's name must be on disk too, to be found at start.
      await Promise.all([timedSync('file', slot.handle.datasync()), reused === undefined ? syncFile(this.dir) : undefined])
    } catch (err) {
      await slot.handle.close().catch(() => {})
      throw err
    }
    return slot
  }

  /**
   * The write failed before its first byte: its intent is emptied, durably, so no start
   * replays a write whose client was told it failed; the slot takes the next one.
   */
  async cancel (slot: IntentSlot): Promise<void> {
    await slot.handle.truncate(0)
    await slot.handle.datasync()
    this.free.push(slot)
  }

  /** The intent's write is done (its bytes and version are on disk): the slot takes the next one. */
  done (slot: IntentSlot): void {
    this.free.push(slot)
  }

  /** The intents a crash left, whole ones only (a torn one was never acted on), in the order to replay them. */
  async pending (): Promise<RangeIntent[]> {
    const found: RangeIntent[] = []
    for (const name of await fsp.readdir(this.dir)) {
      const intent = parseIntent(await fsp.readFile(nodePath.join(this.dir, name)))
      if (intent !== null) found.push(intent)
    }
    // One file's intents oldest first: a later one builds on the bytes of the one before.
    return found.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : a.fromVersion - b.fromVersion)
  }

  /** After the start's replay: every slot goes (durably), so nothing is replayed twice. */
  async clear (): Promise<void> {
    for (const name of await fsp.readdir(this.dir)) await fsp.rm(nodePath.join(this.dir, name), { force: true })
    await syncFile(this.dir)
  }

  async close (): Promise<void> {
    for (const slot of this.free.splice(0)) await slot.handle.close().catch(() => {})
  }

  private async newSlot (): Promise<IntentSlot> {
    const file = nodePath.join(this.dir, `slot-${this.made++}-${crypto.randomBytes(4).toString('hex')}`)
    return { file, handle: await fsp.open(file, 'wx+') }
  }
}

function parseIntent (bytes: Buffer): RangeIntent | null {
  const end = bytes.indexOf(0x0a)
  if (end < 0) return null
  try {
    const header = JSON.parse(bytes.subarray(0, end).toString('utf8')) as IntentHeader
    const body = bytes.subarray(end + 1, end + 1 + header.n)
    if (body.length !== header.n || zlib.crc32(body) !== header.h) return null
    return { path: header.p, fromVersion: header.v, size: header.s, body, inode: header.i, changeId: header.c }
  } catch {
    return null
  }
}

/**
 * Puts the ranges into an open file and gives it its new size (not synced). `sizeBefore`, when
 * the caller knows it, saves a trip to fstat the file for its size after the writes.
 */
export async function applyRanges (handle: fsp.FileHandle, ranges: readonly ByteRange[], size: number, sizeBefore?: number): Promise<void> {
  for (const { offset, data } of ranges) await writeFully(handle, data, offset)
  const written = sizeBefore === undefined
    ? (await handle.stat()).size
    : ranges.reduce((end, { offset, data }) => data.length === 0 ? end : Math.max(end, offset + data.length), sizeBefore)
  if (written !== size) await handle.truncate(size)
}

