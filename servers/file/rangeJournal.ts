import crypto from 'node:crypto'
import fsp from 'node:fs/promises'
import nodePath from 'node:path'
import zlib from 'node:zlib'
import type fs from 'node:fs'
import type { ByteRange } from '../../src/shared/rangeFrames'
import { syncFile } from './versionLog'
import { timedSync } from '../common/metrics'

/** A range write about to be applied in place: its ranges and the size the file then has. */
export interface RangeIntent {
  path: string
  /** The version the ranges apply to; the file has fromVersion + 1 once they are in. */
  fromVersion: number
  size: number
  /** The ranges, framed as on the wire (rangeFrames.ts). */
  body: Buffer
}

interface IntentHeader {
  p: string
  v: number
  s: number
  /** Body length and CRC-32: an intent a crash cut short, or whose bytes a power cut lost, is not replayed. */
  n: number
  h: number
}

/**
 * A redo journal for range writes (PATCH /content), which change a file in place rather than
 * replace it: writing the changed pages of a 50 MB database costs their size, not 50 MB. All
 * ranges of one write land, or none do. The intent (path, version, ranges, size) is on disk
 * before the file's first byte changes; then the ranges, the size and the version line. A
 * crash before the version line leaves the version at `fromVersion`, and the start replays
 * the intent (writing the same bytes again is harmless); a crash after it finds the version
 * moved on and drops the intent. Versions only go up, so an intent whose removal a crash
 * lost is never replayed over a later change. One file per intent in ROOT/.dfs/ranges/.
 */
export class RangeJournal {
  private constructor (private readonly dir: string) {}

  static async open (stateDir: string): Promise<RangeJournal> {
    const dir = nodePath.join(stateDir, 'ranges')
    await fsp.mkdir(dir, { recursive: true })
    return new RangeJournal(dir)
  }

  /** Writes an intent durably; answers its file, for done(). */
  async record (intent: RangeIntent): Promise<string> {
    const header: IntentHeader = { p: intent.path, v: intent.fromVersion, s: intent.size, n: intent.body.length, h: zlib.crc32(intent.body) }
    const file = nodePath.join(this.dir, crypto.randomBytes(8).toString('hex'))
    const handle = await fsp.open(file, 'wx')
    try {
      await handle.writeFile(Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), intent.body]))
      await Promise.all([timedSync('file', handle.datasync()), syncFile(this.dir)])
    } finally {
      await handle.close()
    }
    return file
  }

  /** The intent is applied and its version recorded: it goes (not synced: see the class comment). */
  async done (file: string): Promise<void> {
    await fsp.rm(file, { force: true })
  }

  /** The intents a crash left, whole ones only (a torn one was never acted on, and is removed). */
  async pending (): Promise<Array<{ file: string, intent: RangeIntent }>> {
    const found: Array<{ file: string, intent: RangeIntent }> = []
    for (const name of await fsp.readdir(this.dir)) {
      const file = nodePath.join(this.dir, name)
      const intent = parseIntent(await fsp.readFile(file))
      if (intent === null) await this.done(file)
      else found.push({ file, intent })
    }
    return found
  }
}

function parseIntent (bytes: Buffer): RangeIntent | null {
  const end = bytes.indexOf(0x0a)
  if (end < 0) return null
  try {
    const header = JSON.parse(bytes.subarray(0, end).toString('utf8')) as IntentHeader
    const body = bytes.subarray(end + 1)
    if (body.length !== header.n || zlib.crc32(body) !== header.h) return null
    return { path: header.p, fromVersion: header.v, size: header.s, body }
  } catch {
    return null
  }
}

/** Puts the ranges into an open file and gives it its new size (not synced). */
export async function applyRanges (handle: fsp.FileHandle, ranges: readonly ByteRange[], size: number): Promise<void> {
  for (const { offset, data } of ranges) {
    let done = 0
    while (done < data.length) done += (await handle.write(data, done, data.length - done, offset + done)).bytesWritten
  }
  const stats: fs.Stats = await handle.stat()
  if (stats.size !== size) await handle.truncate(size)
}

