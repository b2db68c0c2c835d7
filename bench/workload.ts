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

export type WorkloadName = 'read' | 'small' | 'append' | 'ls'

export interface WorkloadResult {
  workload: WorkloadName
  /** Milliseconds of each timed pass. */
  runsMs: number[]
  /** Operations per timed pass: files opened, appends, entries listed, or 1 for a read. */
  ops: number
  /** Bytes read or written per timed pass. */
  bytes: number
  /** Sequential reads only: how long each pass waited in open() (on dfs, a cold open fetches the whole file). */
  openMs?: number[]
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

function main (argv: string[]): WorkloadResult {
  const [workload, target, ...rest] = argv
  if (!workload || !target) throw new Error('usage: workload.js <read|small|append|ls> <path> [runs=N] [count=N]')
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
    case 'ls': return longListing(target, numberOption('runs', 3))
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
