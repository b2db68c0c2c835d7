import fs from 'node:fs'
import path from 'node:path'

/*
 * One benchmark workload on one folder, run as a child process of bench/run.ts:
 *
 *   node dist/bench/workload.js <workload> <dir> [options as key=value]
 *
 * It prints one JSON line (a WorkloadResult) on stdout. The same script measures the local
 * folder and the mount, so both go through exactly the same calls. Synchronous fs calls on
 * purpose: this process is not the one serving the mount, and sync calls measure the file
 * system rather than libuv's thread pool.
 */

/** 'sqlite' is run by bench/sqlite.ts, not by this script. */
export type WorkloadName = 'read' | 'small' | 'append' | 'overwrite' | 'ls' | 'create' | 'write' | 'first-byte' | 'tail' | 'folder-op' | 'sqlite'

/** The operations the large-folder workload times, one kind per child process. */
export const FOLDER_OPS = ['stat', 'read', 'create', 'unlink'] as const
export type FolderOp = typeof FOLDER_OPS[number]

/**
 * The name of the i-th data file in a folder the large-folder workload uses. The 10-file and
 * the 50,000-file folder share their first names, so both are asked about the same names.
 */
export function folderFileName (i: number): string {
  return `f-${String(i).padStart(5, '0')}`
}

/** How many of a folder's files the stat and read operations cycle through: all of the small folder. */
export const FOLDER_OP_FILES = 10

export interface WorkloadResult {
  workload: WorkloadName
  /** Milliseconds of each timed pass; for first-byte and folder-op, of each single operation. */
  runsMs: number[]
  /** Operations per timed pass: files opened or created, appends, entries listed, or 1 for a read, a write or a single operation. */
  ops: number
  /** Bytes read or written per timed pass. */
  bytes: number
  /** Sequential reads only: how long each pass waited in open() (on dfs, a cold open fetches the whole file). */
  openMs?: number[]
  /** Writes only: how long fsync and close took, within the pass (on dfs, close sends the file). */
  syncMs?: number
}

const READ_BUFFER_BYTES = 1024 * 1024

function elapsedMs (since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e6
}

/** Reads a whole file front to back in 1 MiB reads; returns the bytes read and when open() returned. */
function readWhole (file: string, buffer: Buffer): { bytes: number, opened: bigint } {
  const fd = fs.openSync(file, 'r')
  const opened = process.hrtime.bigint()
  try {
    let total = 0
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null)
      if (n === 0) return { bytes: total, opened }
      total += n
    }
  } finally {
    fs.closeSync(fd)
  }
}

/** Sequential read of one file, `runs` times in a row (each pass: open, read to the end, close). */
function sequentialRead (file: string, runs: number): WorkloadResult {
  const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)
  const runsMs: number[] = []
  const openMs: number[] = []
  let bytes = 0
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint()
    const pass = readWhole(file, buffer)
    runsMs.push(elapsedMs(start))
    openMs.push(Number(pass.opened - start) / 1e6)
    bytes = pass.bytes
  }
  return { workload: 'read', runsMs, ops: 1, bytes, openMs }
}

/** open+read+close of every file in a folder: one untimed pass to warm caches, then `runs` timed passes. */
function smallFiles (folder: string, runs: number): WorkloadResult {
  const files = fs.readdirSync(folder).sort().map((name) => path.join(folder, name))
  // Bigger than the files, so one read() answers each and a short file would show in `bytes`.
  const buffer = Buffer.allocUnsafe(64 * 1024)
  const pass = (): number => {
    let bytes = 0
    for (const file of files) {
      const fd = fs.openSync(file, 'r')
      bytes += fs.readSync(fd, buffer, 0, buffer.length, 0)
      fs.closeSync(fd)
    }
    return bytes
  }
  pass()
  const runsMs: number[] = []
  let bytes = 0
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint()
    bytes = pass()
    runsMs.push(elapsedMs(start))
  }
  return { workload: 'small', runsMs, ops: files.length, bytes }
}

/** `count` one-line appends to one file, each with its own open, write and close. */
function appends (file: string, count: number): WorkloadResult {
  let bytes = 0
  const start = process.hrtime.bigint()
  for (let i = 0; i < count; i++) {
    const line = `bench append ${String(i).padStart(6, '0')} pid ${process.pid}\n`
    const fd = fs.openSync(file, 'a')
    try {
      bytes += fs.writeSync(fd, line)
    } finally {
      fs.closeSync(fd)
    }
  }
  return { workload: 'append', runsMs: [elapsedMs(start)], ops: count, bytes }
}

/**
 * `count` overwrites of one small file, as a shell's `echo line > file` or a program that
 * saves in place: open with 'w' (O_TRUNC), write one line, close. The file ends holding
 * overwriteLine(count - 1).
 */
function overwrites (file: string, count: number): WorkloadResult {
  let bytes = 0
  const start = process.hrtime.bigint()
  for (let i = 0; i < count; i++) {
    const fd = fs.openSync(file, 'w')
    try {
      bytes += fs.writeSync(fd, overwriteLine(i))
    } finally {
      fs.closeSync(fd)
    }
  }
  return { workload: 'overwrite', runsMs: [elapsedMs(start)], ops: count, bytes }
}

/** The line the i-th overwrite writes (the bench checks the last one on the file server). */
export function overwriteLine (i: number): string {
  return `bench overwrite ${String(i).padStart(6, '0')}\n`
}

/** What `ls -l` asks of the file system: the names of a folder, then lstat of each, `runs` times. */
function longListing (folder: string, runs: number): WorkloadResult {
  const runsMs: number[] = []
  let entries = 0
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint()
    const names = fs.readdirSync(folder)
    for (const name of names) fs.lstatSync(path.join(folder, name))
    runsMs.push(elapsedMs(start))
    entries = names.length
  }
  return { workload: 'ls', runsMs, ops: entries, bytes: 0 }
}

/**
 * `count` new files in an empty folder, each: create (O_EXCL), one write of `bytes`, close,
 * as tar -x and cp -r do; one timed pass.
 */
function createFiles (folder: string, count: number, bytes: number): WorkloadResult {
  const data = Buffer.alloc(bytes, 'x')
  let written = 0
  const start = process.hrtime.bigint()
  for (let i = 0; i < count; i++) {
    const fd = fs.openSync(path.join(folder, `new-${String(i).padStart(5, '0')}`), 'wx')
    try {
      written += fs.writeSync(fd, data)
    } finally {
      fs.closeSync(fd)
    }
  }
  return { workload: 'create', runsMs: [elapsedMs(start)], ops: count, bytes: written }
}

/** A new file of `mib` MiB written in 1 MiB writes, then fsync and close, all in the timed pass. */
function writeFsync (file: string, mib: number): WorkloadResult {
  // Random-looking bytes, so no layer on the way can compress them away.
  const chunk = Buffer.alloc(READ_BUFFER_BYTES)
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i)
  let bytes = 0
  const start = process.hrtime.bigint()
  const fd = fs.openSync(file, 'wx')
  let syncing = start
  try {
    for (let i = 0; i < mib; i++) bytes += fs.writeSync(fd, chunk)
    syncing = process.hrtime.bigint()
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  return { workload: 'write', runsMs: [elapsedMs(start)], ops: 1, bytes, syncMs: elapsedMs(syncing) }
}

/**
 * Open, read of 1 byte, close of each of `count` files never read before (the caller empties
 * the caches): each operation timed on its own. The names come sorted from the caller's
 * layout, not from a readdir here, so no listing warms anything first.
 */
function firstByte (folder: string, count: number): WorkloadResult {
  const buffer = Buffer.alloc(1)
  const runsMs: number[] = []
  let bytes = 0
  for (let i = 0; i < count; i++) {
    const file = path.join(folder, folderFileName(i))
    const start = process.hrtime.bigint()
    const fd = fs.openSync(file, 'r')
    bytes += fs.readSync(fd, buffer, 0, 1, 0)
    fs.closeSync(fd)
    runsMs.push(elapsedMs(start))
  }
  return { workload: 'first-byte', runsMs, ops: 1, bytes }
}

/**
 * Open, read of the last 4 KiB, close of a large file never read before (the caller empties
 * the caches), timed: a `tail` of a log, an archive's index at its end.
 */
function tail (file: string): WorkloadResult {
  const buffer = Buffer.alloc(4096)
  const start = process.hrtime.bigint()
  const fd = fs.openSync(file, 'r')
  const { size } = fs.fstatSync(fd)
  const bytes = fs.readSync(fd, buffer, 0, buffer.length, Math.max(0, size - buffer.length))
  fs.closeSync(fd)
  return { workload: 'tail', runsMs: [elapsedMs(start)], ops: 1, bytes }
}

/**
 * `count` operations of one kind in a folder, each timed on its own: stat or open+read+close
 * of its first FOLDER_OP_FILES files in turn, create+close of new empty files, or unlink of
 * the files the create step made (so the folder ends as it began).
 */
function folderOp (folder: string, op: FolderOp, count: number): WorkloadResult {
  const buffer = Buffer.allocUnsafe(64 * 1024)
  const runsMs: number[] = []
  let bytes = 0
  for (let i = 0; i < count; i++) {
    const existing = path.join(folder, folderFileName(i % FOLDER_OP_FILES))
    const created = path.join(folder, `new-${String(i).padStart(5, '0')}`)
    const start = process.hrtime.bigint()
    switch (op) {
      case 'stat': fs.statSync(existing); break
      case 'read': {
        const fd = fs.openSync(existing, 'r')
        bytes += fs.readSync(fd, buffer, 0, buffer.length, 0)
        fs.closeSync(fd)
        break
      }
      case 'create': fs.closeSync(fs.openSync(created, 'wx')); break
      case 'unlink': fs.unlinkSync(created); break
    }
    runsMs.push(elapsedMs(start))
  }
  return { workload: 'folder-op', runsMs, ops: 1, bytes }
}

function main (argv: string[]): WorkloadResult {
  const [workload, target, ...rest] = argv
  if (!workload || !target) throw new Error('usage: workload.js <read|small|append|overwrite|ls|create|write|first-byte|tail|folder-op> <path> [runs=N] [count=N] [bytes=N] [mib=N] [op=NAME]')
  const options = new Map(rest.map((arg) => arg.split('=') as [string, string]))
  const numberOption = (name: string, fallback: number): number => {
    const value = Number(options.get(name) ?? fallback)
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`)
    return value
  }
  switch (workload) {
    case 'read': return sequentialRead(target, numberOption('runs', 1))
    case 'small': return smallFiles(target, numberOption('runs', 3))
    case 'append': return appends(target, numberOption('count', 2000))
    case 'overwrite': return overwrites(target, numberOption('count', 300))
    case 'ls': return longListing(target, numberOption('runs', 3))
    case 'create': return createFiles(target, numberOption('count', 1000), numberOption('bytes', 4096))
    case 'write': return writeFsync(target, numberOption('mib', 256))
    case 'first-byte': return firstByte(target, numberOption('count', 200))
    case 'tail': return tail(target)
    case 'folder-op': {
      const op = options.get('op') as FolderOp | undefined
      if (op === undefined || !FOLDER_OPS.includes(op)) throw new Error(`op must be one of ${FOLDER_OPS.join(', ')}`)
      return folderOp(target, op, numberOption('count', 50))
    }
    default: throw new Error(`unknown workload ${workload}`)
  }
}

if (require.main === module) {
  try {
    process.stdout.write(JSON.stringify(main(process.argv.slice(2))) + '\n')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    process.stderr.write(`workload failed: ${e.code ? `${e.code} ` : ''}${e.message}\n`)
    process.exit(1)
  }
}
