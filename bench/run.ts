import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { startCluster } from '../servers/cluster'
import { ClusterKey } from '../servers/common/tokens'
import type { RunningCluster } from '../servers/cluster'
import type { FileServerStats } from '../src/shared/protocol'
import { fdatasyncFloorMs } from './fsyncFloor'
import { startMountDaemon, stopMountDaemon } from './mountDaemon'
import type { MountDaemon } from './mountDaemon'
import { cleanEnv, repoRoot, runNode } from './processes'
import { RequestCounter } from './requestCounter'
import { SshfsMount, sshfsMissing } from './sshfs'
import { startSyncServer } from './syncServer'
import type { SyncServer } from './syncServer'
import { createDatabase, databaseRows, SQLITE_ROWS, SQLITE_TRANSACTIONS, sqliteMissing, sqliteTransactions } from './sqlite'
import { FOLDER_OPS, folderFileName, overwriteLine } from './workload'
import type { WorkloadResult } from './workload'

/*
 * The dfs benchmark: a demo-like cluster (directory, lock and two file servers) in this
 * process, mounted with the real dfs-mount CLI in a child process, and the same workloads
 * run on a plain local folder, on the mount, where sshfs and sshd are installed on an sshfs
 * mount of a copy of the local tree through a throwaway loopback sshd (bench/sshfs.ts), and
 * on a minimal fuse-native passthrough of another copy with dfs's kernel options
 * (bench/passthrough.ts), the floor for any Node FUSE file system.
 * Every workload runs in a child process of its own (bench/workload.ts): this process serves
 * the cluster and must never block on the mount. See bench/README.md for what each figure
 * means.
 */

const MiB = 1024 * 1024
const BIG_FILE_BYTES = 256 * MiB
const SMALL_FILES = 1000
const SMALL_FILE_BYTES = 4096
const LISTED_FILES = 2000
const APPENDS = 2000
const OVERWRITES = 300
const CREATED_FILES = 1000
const WRITE_MIB = 256
const COLD_FILES = 200
const LARGE_FOLDER_FILES = 50_000
const FEW_FOLDER_FILES = 10
const FOLDER_OP_COUNT = 50
/**
 * Three passes, as the 2000-entry row: its median is the like-for-like per-entry rate (issue
 * #9's 0.7x), and the first pass, which includes the folder's first listing, has a row of its own.
 */
const LARGE_LS_RUNS = 3
const REPEATS = 3
const WORKLOAD_DEADLINE_MS = 180_000
const DROP_CACHES = '/proc/sys/vm/drop_caches'

/** Where each workload's data lives, as a path below a file server root, the mount or the local folder. */
const BIG_FILE = 'seq/big.bin'
/** Read only at its end (the tail workload): large enough that its download takes a while. */
const TAILED_FILE = 'seq/tailed.bin'
const TAILED_FILE_BYTES = 64 * MiB
const TAIL_SAMPLES = 3
const SMALL_DIR = 'small'
const LISTED_DIR = 'listing'
const APPEND_FILE = 'appends/log.txt'
const OVERWRITTEN_FILE = 'overwrites/file.txt'
const CREATE_DIR = 'create'
/**
 * Where the appends and the creates warm up, untimed, before their timed pass (see
 * warmedUp): a process meets a workload's code paths there first, not in the timed pass.
 */
const APPEND_WARM_UP_FILE = 'appends/warm-up.txt'
const CREATE_WARM_UP_DIR = 'create-warm-up'
const WRITTEN_FILE = 'written/new.bin'
const COLD_DIR = 'cold'
const LARGE_DIR = 'large'
const FEW_DIR = 'few'
const DATABASE = 'db/bench.sqlite'
/** The durable floor's own file and folder in the passthrough's tree (the passthrough side wrote the usual ones). */
const FLOOR_APPEND_FILE = 'appends/durable-floor.txt'
const FLOOR_CREATE_DIR = 'create-durable-floor'
const FLOOR_APPEND_WARM_UP_FILE = 'appends/durable-floor-warm-up.txt'
const FLOOR_CREATE_WARM_UP_DIR = 'create-durable-floor-warm-up'
const FLOOR_DATABASE = 'db/durable-floor.sqlite'

const execFileAsync = promisify(execFile)

const benchStarted = Date.now()

/** Progress on stderr, with the seconds since the start so a slow step shows. */
function progress (line: string): void {
  process.stderr.write(`bench ${((Date.now() - benchStarted) / 1000).toFixed(0).padStart(4)} s: ${line}\n`)
}

interface Layout {
  workDir: string
  /** One root per file server: the big file and the listed folder on the first, the rest on the second. */
  roots: [string, string]
  local: string
  mountpoint: string
  cacheDir: string
  stateDir: string
  /** sshfs's own copy of the local tree, its mountpoint and the throwaway sshd's folder. */
  sshfsTree: string
  sshfsMountpoint: string
  sshState: string
  /** The passthrough's own copy of the local tree and its mountpoint. */
  passthroughTree: string
  passthroughMountpoint: string
  /** The durable floor: the passthrough's tree again, each close, fsync and unlink synced by one request to a bare server. */
  durableMountpoint: string
}

async function writeFiles (folder: string, count: number, bytes: number, prefix: string): Promise<void> {
  await fsp.mkdir(folder, { recursive: true })
  for (let i = 0; i < count; i++) {
    await fsp.writeFile(path.join(folder, `${prefix}-${String(i).padStart(4, '0')}`), crypto.randomBytes(bytes))
  }
}

/**
 * Files named as the first-byte and large-folder workloads expect (folderFileName). Written
 * synchronously and all with the same bytes: 50,000 of them take a few seconds this way, and
 * nothing is serving yet that the blocking could hold up.
 */
function writeNamedFiles (folder: string, count: number, bytes: number): void {
  fs.mkdirSync(folder, { recursive: true })
  const data = crypto.randomBytes(bytes)
  for (let i = 0; i < count; i++) fs.writeFileSync(path.join(folder, folderFileName(i)), data)
}

async function writeBigFile (file: string, bytes = BIG_FILE_BYTES): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true })
  const handle = await fsp.open(file, 'w')
  try {
    for (let written = 0; written < bytes; written += MiB) await handle.write(crypto.randomBytes(MiB))
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * The same tree in the local folder and, split over the two roots, on the file servers: the
 * big file, the listed folder and both large-folder folders on the first, the rest on the
 * second. `quick` leaves out the two large-folder folders and the database; `sqlite` is the
 * database alone.
 */
async function createData (layout: Layout, runs: RunKind): Promise<void> {
  const [first, second] = layout.roots
  if (runs !== 'quick' && sqliteMissing() === null) {
    await createDatabase(path.join(layout.local, DATABASE))
    await fsp.mkdir(path.dirname(path.join(second, DATABASE)), { recursive: true })
    await fsp.copyFile(path.join(layout.local, DATABASE), path.join(second, DATABASE))
  }
  if (runs === 'sqlite') return
  for (const [one, two] of [[first, second], [layout.local, layout.local]]) {
    await writeBigFile(path.join(one, BIG_FILE))
    await writeBigFile(path.join(one, TAILED_FILE), TAILED_FILE_BYTES)
    await writeFiles(path.join(two, SMALL_DIR), SMALL_FILES, SMALL_FILE_BYTES, 'file')
    await writeFiles(path.join(one, LISTED_DIR), LISTED_FILES, 100, 'entry')
    await fsp.mkdir(path.dirname(path.join(two, APPEND_FILE)), { recursive: true })
    await fsp.writeFile(path.join(two, APPEND_FILE), '')
    await fsp.writeFile(path.join(two, APPEND_WARM_UP_FILE), '')
    await fsp.mkdir(path.dirname(path.join(two, OVERWRITTEN_FILE)), { recursive: true })
    await fsp.writeFile(path.join(two, OVERWRITTEN_FILE), 'first\n')
    await fsp.mkdir(path.join(two, CREATE_DIR), { recursive: true })
    await fsp.mkdir(path.join(two, CREATE_WARM_UP_DIR), { recursive: true })
    await fsp.mkdir(path.dirname(path.join(two, WRITTEN_FILE)), { recursive: true })
    writeNamedFiles(path.join(two, COLD_DIR), COLD_FILES, SMALL_FILE_BYTES)
    if (runs === 'full') {
      writeNamedFiles(path.join(one, LARGE_DIR), LARGE_FOLDER_FILES, 100)
      writeNamedFiles(path.join(one, FEW_DIR), FEW_FOLDER_FILES, 100)
    }
  }
}

/** `dfs-mount MOUNTPOINT --foreground` as a child process, once the kernel lists the mount. */
async function mount (layout: Layout, cluster: RunningCluster, tokenFile: string): Promise<MountDaemon> {
  return await startMountDaemon('dfs-mount', layout.mountpoint, [path.join(repoRoot, 'bin', 'dfs-mount'), layout.mountpoint, '--foreground',
    '--directory', cluster.directory.url, '--lock', cluster.lock.url, '--cache-dir', layout.cacheDir, '--token-file', tokenFile],
  { ...cleanEnv(), XDG_STATE_HOME: layout.stateDir })
}

/** The passthrough (bench/passthrough.ts) of its own copy of the local tree, as a child process. */
async function mountPassthrough (layout: Layout): Promise<MountDaemon> {
  await fsp.mkdir(layout.passthroughMountpoint, { recursive: true })
  return await startMountDaemon('passthrough', layout.passthroughMountpoint, [path.join(__dirname, 'passthrough.js'), layout.passthroughTree, layout.passthroughMountpoint])
}

/** The durable floor (bench/passthrough.ts --sync-server) over the passthrough's tree, as a child process. */
async function mountDurableFloor (layout: Layout, syncServer: SyncServer): Promise<MountDaemon> {
  await fsp.mkdir(layout.durableMountpoint, { recursive: true })
  return await startMountDaemon('durable floor', layout.durableMountpoint, [path.join(__dirname, 'passthrough.js'), layout.passthroughTree, layout.durableMountpoint, '--sync-server', syncServer.url])
}

/** Empties the kernel's page cache so the next read comes from disk; null when done, else why not. */
async function dropPageCache (): Promise<string | null> {
  try {
    await execFileAsync('sync', [], { timeout: 60_000 })
    await fsp.writeFile(DROP_CACHES, '3')
    return null
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err)
  }
}

async function runWorkload (args: string[]): Promise<WorkloadResult> {
  const finished = await runNode([path.join(__dirname, 'workload.js'), ...args], { timeoutMs: WORKLOAD_DEADLINE_MS })
  if (finished.code !== 0) {
    throw new Error(`workload ${args.join(' ')} failed (exit ${finished.code ?? finished.signal}): ${finished.stderr.trim()}`)
  }
  return JSON.parse(finished.stdout.trim().split('\n').pop() ?? '') as WorkloadResult
}

/** The counters this benchmark reports; the servers keep more. */
type ServerCounts = Pick<FileServerStats, 'contentTransfers' | 'contentBytes' | 'notModified' | 'appends'>

/** What the servers had seen at one moment: the file servers' counters and every request by route. */
interface Activity {
  counts: ServerCounts
  requests: Map<string, number>
}

function activityOf (cluster: RunningCluster, requests: RequestCounter): Activity {
  const counts: ServerCounts = { contentTransfers: 0, contentBytes: 0, notModified: 0, appends: 0 }
  for (const server of cluster.fileServers) {
    const stats = server.app.locals.stats
    counts.contentTransfers += stats.contentTransfers
    counts.contentBytes += stats.contentBytes
    counts.notModified += stats.notModified
    counts.appends += stats.appends
  }
  return { counts, requests: requests.snapshot() }
}

/** The servers' side of a dfs workload, with requests given per operation (`per` operations, called `unit`). */
function describeActivity (before: Activity, after: Activity, per: number, unit: string): string {
  const delta = (key: keyof ServerCounts): number => after.counts[key] - before.counts[key]
  const routes = RequestCounter.since(before.requests, after.requests, per)
  const count = (n: number): string => n >= 10 ? n.toFixed(0) : n >= 0.01 ? n.toFixed(2) : n.toPrecision(1)
  const total = routes.reduce((sum, [, n]) => sum + n, 0)
  const perOp = routes.length === 0 ? 'none' : `${count(total)} in all: ${routes.map(([route, n]) => `${route} ${count(n)}`).join(', ')}`
  return `file contents sent: ${delta('contentTransfers')} (${formatNumber(delta('contentBytes') / 1e6)} MB), ` +
    `not-modified answers: ${delta('notModified')}, appends: ${delta('appends')}; requests per ${unit}: ${perOp}`
}

/** Several runs of one single-operation workload as one: each side's times together (its bytes the fewest any run read), the servers' activity over all of them. */
function samplesTogether (samples: Runs[]): Runs {
  const joined = (pick: (runs: Runs) => WorkloadResult | null): WorkloadResult | null => {
    const results = samples.map(pick)
    const first = results[0]
    if (first === null || results.some((result) => result === null)) return null
    return { ...first, runsMs: results.flatMap((result) => result?.runsMs ?? []), bytes: Math.min(...results.map((result) => result?.bytes ?? 0)) }
  }
  const first = samples[0]
  return {
    local: joined((runs) => runs.local) as WorkloadResult,
    dfs: joined((runs) => runs.dfs) as WorkloadResult,
    sshfs: joined((runs) => runs.sshfs),
    passthrough: joined((runs) => runs.passthrough) as WorkloadResult,
    before: first.before,
    after: samples[samples.length - 1].after
  }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function formatNumber (value: number): string {
  return value.toLocaleString('en-US', { maximumFractionDigits: value >= 100 ? 0 : value >= 10 ? 1 : 2 })
}

interface Row {
  workload: string
  unit: string
  /** A string when that side failed: the error code, shown in place of a figure. */
  local: number | string
  dfs: number | string
  sshfs: number | string | null
  /** The fuse-native passthrough with dfs's kernel options: the floor for a Node FUSE file system. */
  passthrough: number | string
  /** A time (ms): the ratios are then other/dfs, so that below 1 still means dfs is slower. */
  lowerIsBetter?: boolean
}

/** A figure per second from a workload's median pass: MB/s for reads and writes (MB = 10^6 bytes), else operations/s. */
function rate (result: WorkloadResult, perBytes: boolean): number {
  const seconds = median(result.runsMs) / 1000
  return (perBytes ? result.bytes / 1e6 : result.ops) / seconds
}

function mean (values: number[]): number {
  return values.reduce((sum, v) => sum + v, 0) / values.length
}

/** Small figures (ms of one local operation) keep two significant digits instead of rounding to 0. */
function formatFigure (value: number | string): string {
  if (typeof value === 'string') return value
  return value < 1 ? value.toPrecision(2) : formatNumber(value)
}

function check (condition: boolean, what: string): void {
  if (!condition) throw new Error(`check failed: ${what}`)
}

type Side = 'local' | 'dfs' | 'sshfs' | 'passthrough'

/** Runs before a side's workload, untimed, with that side's folder (eachRun). */
type BeforeEach = (dir: (rel: string) => string) => Promise<unknown>

/** One workload on each side; sshfs is null where it is not compared. before/after: the servers around the dfs run. */
interface Runs {
  local: WorkloadResult
  dfs: WorkloadResult
  sshfs: WorkloadResult | null
  passthrough: WorkloadResult
  before: Activity
  after: Activity
}

/** A side's result; only sshfs may be missing, and only where it was not run (sides leaves it out). */
function resultOf (runs: Runs, side: Side): WorkloadResult {
  const result = runs[side]
  if (result === null) throw new Error(`no ${side} result`)
  return result
}

/**
 * A workload on the local folder, sshfs, a floor and dfs: the durable floor for durable steps
 * (issue #9's appends and creates, issue #12's database), the network floor for reads (issue
 * #9's cold read and first byte).
 */
interface DurableRow {
  workload: string
  unit: string
  local: number
  sshfs: number | null
  floor: number
  dfs: number
  /** A time (ms) rather than a rate: the ratios then divide the other way, so below 1 still means slower. */
  lowerIsBetter?: boolean
}

interface Measurement {
  rows: Row[]
  durableRows: DurableRow[]
  /** Reads against the network floor (the durable floor's mount fetching each file it reads). */
  readRows: DurableRow[]
  details: string[]
  /** Per large-folder operation: median and mean ms in the big folder over the small one, per side. */
  folderRatios: string[]
  pageCacheDrop: string | null
}

/** Which workloads run: all, all but the slowest (`--quick`), or the database alone (`--sqlite`). */
type RunKind = 'full' | 'quick' | 'sqlite'

interface Target {
  cluster: RunningCluster
  requests: RequestCounter
  sshfs: SshfsMount | null
  runs: RunKind
  /** The durable floor's mountpoint and its server. */
  durable: { mountpoint: string, server: SyncServer } | null
}

async function measure (layout: Layout, target: Target): Promise<Measurement> {
  const { cluster, requests } = target
  const rows: Row[] = []
  const durableRows: DurableRow[] = []
  const readRows: DurableRow[] = []
  const details: string[] = []
  const folderRatios: string[] = []
  const homes: Record<Side, string> = { local: layout.local, dfs: layout.mountpoint, sshfs: layout.sshfsMountpoint, passthrough: layout.passthroughMountpoint }
  const sides: Side[] = target.sshfs === null ? ['local', 'dfs', 'passthrough'] : ['local', 'dfs', 'sshfs', 'passthrough']
  const passes = (result: WorkloadResult): string => result.runsMs.map((ms, i) => {
    const opened = result.openMs?.[i]
    return `${formatNumber(ms)} ms${opened === undefined ? '' : ` (${formatNumber(opened)} in open)`}`
  }).join(', ') + (result.syncMs === undefined ? '' : ` (${formatNumber(result.syncMs)} in fsync+close)`)
  /** For workloads that time each operation: the spread, which a median alone hides. */
  const spread = (result: WorkloadResult): string =>
    `median ${formatFigure(median(result.runsMs))} ms, mean ${formatFigure(mean(result.runsMs))}, max ${formatFigure(Math.max(...result.runsMs))} over ${result.runsMs.length}`
  const perSide = (runs: Runs, show: (result: WorkloadResult) => string): string =>
    sides.map((side) => `${side} ${show(resultOf(runs, side))}`).join('; ')
  /**
   * The same workload on the local folder, the dfs mount, the sshfs mount and the
   * passthrough, in that order; `beforeEach` runs before each, untimed and not counted in
   * the servers' activity, with the side's folder.
   */
  const each = async (name: string, args: (dir: (rel: string) => string) => string[], beforeEach: BeforeEach = async () => {}): Promise<Runs> =>
    await eachRun(name, async (dir) => await runWorkload(args(dir)), beforeEach)
  /** each() with a workload that is not bench/workload.ts (it must still run in a child process). */
  const eachRun = async (name: string, run: (dir: (rel: string) => string) => Promise<WorkloadResult>, beforeEach: BeforeEach = async () => {}): Promise<Runs> => {
    const results: Partial<Record<Side, WorkloadResult>> = {}
    let before: Activity | null = null
    let after: Activity | null = null
    for (const side of sides) {
      progress(`${name}: ${side}`)
      const dir = (rel: string): string => path.join(homes[side], rel)
      await beforeEach(dir)
      if (side === 'dfs') before = activityOf(cluster, requests)
      results[side] = await run(dir)
      if (side === 'dfs') after = activityOf(cluster, requests)
    }
    if (results.local === undefined || results.dfs === undefined || results.passthrough === undefined || before === null || after === null) throw new Error(`${name}: a side did not run`)
    return { local: results.local, dfs: results.dfs, sshfs: results.sshfs ?? null, passthrough: results.passthrough, before, after }
  }
  const row = (workload: string, unit: string, runs: Runs, figure: (result: WorkloadResult) => number, lowerIsBetter = false): void => {
    rows.push({ workload, unit, local: figure(runs.local), dfs: figure(runs.dfs), sshfs: runs.sshfs === null ? null : figure(runs.sshfs), passthrough: figure(runs.passthrough), lowerIsBetter })
  }
  const everySide = (runs: Runs, condition: (result: WorkloadResult) => boolean, what: string): void => {
    for (const side of sides) {
      const result = runs[side]
      check(result !== null && condition(result), `${what} (${side}: ${JSON.stringify({ ops: result?.ops, bytes: result?.bytes })})`)
    }
  }
  const medianMs = (result: WorkloadResult): number => median(result.runsMs)
  /**
   * Runs `args` untimed before a single-pass workload and keeps its time per side for the
   * details. A process's first thousand appends or creates ran 1.3 to 1.8 times as long as
   * its later ones, on every Node process here (the mount's CPU per append 1.8 s against
   * 1.0 s over 2,000); a single timed pass would measure that warm-up rather than the rate a
   * mount that has been up a while keeps. (The small files get their untimed pass in the
   * workload itself.)
   */
  const warmUps = new Map<string, string[]>()
  const warmedUp = (name: string, args: (dir: (rel: string) => string) => string[]): BeforeEach => async (dir) => {
    const result = await runWorkload(args(dir))
    const list = warmUps.get(name) ?? []
    list.push(formatNumber(result.runsMs[0]))
    warmUps.set(name, list)
  }
  const warmUpTimes = (name: string): string => `untimed warm-ups before (ms, ${sides.join(', ')}): ${(warmUps.get(name) ?? []).join(', ')}`
  const appendArgs = (file: string): string[] => ['append', file, `count=${APPENDS}`]
  const createArgs = (folder: string): string[] => ['create', folder, `count=${CREATED_FILES}`, `bytes=${SMALL_FILE_BYTES}`]
  const durableRow = (workload: string, unit: string, runs: Runs, floor: WorkloadResult): DurableRow =>
    ({ workload, unit, local: rate(runs.local, false), sshfs: runs.sshfs === null ? null : rate(runs.sshfs, false), floor: rate(floor, false), dfs: rate(runs.dfs, false) })

  if (target.runs !== 'quick') {
    const missing = sqliteMissing()
    if (missing !== null) {
      details.push(missing)
    } else {
      const database = await eachRun('sqlite one-row transactions', async (dir) => await sqliteTransactions(dir(DATABASE)))
      for (const side of sides) {
        const rows = await databaseRows(path.join(homes[side], DATABASE))
        check(rows === SQLITE_ROWS + SQLITE_TRANSACTIONS, `sqlite: ${side}'s database has ${rows} rows, expected ${SQLITE_ROWS + SQLITE_TRANSACTIONS}`)
      }
      row(`sqlite, ${SQLITE_TRANSACTIONS} one-row transactions on a 50 MB database`, 'transactions/s', database, (r) => rate(r, false))
      details.push(`sqlite: ${perSide(database, passes)}; dfs ${formatNumber(median(database.dfs.runsMs) / SQLITE_TRANSACTIONS)} ms a transaction; ` +
        `dfs servers: ${describeActivity(database.before, database.after, SQLITE_TRANSACTIONS, 'transaction')}`)
      if (target.durable !== null) {
        progress('sqlite one-row transactions: durable floor')
        const syncsBefore = await target.durable.server.syncs()
        const floorDatabase = await sqliteTransactions(path.join(target.durable.mountpoint, FLOOR_DATABASE))
        const floorSyncs = await target.durable.server.syncs() - syncsBefore
        const floorRows = await databaseRows(path.join(layout.passthroughTree, FLOOR_DATABASE))
        check(floorRows === SQLITE_ROWS + SQLITE_TRANSACTIONS, `sqlite: the durable floor's database has ${floorRows} rows, expected ${SQLITE_ROWS + SQLITE_TRANSACTIONS}`)
        durableRows.push(durableRow(`sqlite, ${SQLITE_TRANSACTIONS} one-row transactions on a 50 MB database`, 'transactions/s', database, floorDatabase))
        details.push(`durable floor: sqlite ${passes(floorDatabase)}, ${formatNumber(median(floorDatabase.runsMs) / SQLITE_TRANSACTIONS)} ms a transaction; ` +
          `its server synced ${formatNumber(floorSyncs / SQLITE_TRANSACTIONS)} times a transaction`)
      }
    }
    if (target.runs === 'sqlite') return { rows, durableRows, readRows, details, folderRatios, pageCacheDrop: null }
  }

  // Cold: the page cache is dropped before each read, and neither mount has ever opened the file.
  let pageCacheDrop: string | null = null
  const dropBefore = async (): Promise<void> => { pageCacheDrop = await dropPageCache() }
  const cold = await each('sequential read, cold', (dir) => ['read', dir(BIG_FILE)], dropBefore)
  everySide(cold, (r) => r.bytes === BIG_FILE_BYTES, `cold reads read the whole file (${BIG_FILE_BYTES} bytes)`)
  check(cold.after.counts.contentTransfers - cold.before.counts.contentTransfers === 1, 'the cold read on the mount fetched the file once')
  row('sequential read 256 MiB, cold', 'MB/s', cold, (r) => rate(r, true))
  details.push(`sequential read, cold: ${perSide(cold, passes)}; dfs servers: ${describeActivity(cold.before, cold.after, 1, 'pass')}`)

  const warm = await each('sequential read, warm', (dir) => ['read', dir(BIG_FILE), `runs=${REPEATS}`])
  everySide(warm, (r) => r.bytes === BIG_FILE_BYTES, 'warm reads read the whole file')
  row('sequential read 256 MiB, warm', 'MB/s', warm, (r) => rate(r, true))
  details.push(`sequential read, warm: ${perSide(warm, passes)}; dfs servers: ${describeActivity(warm.before, warm.after, REPEATS, 'pass')}`)

  const small = await each('open+read+close of small files', (dir) => ['small', dir(SMALL_DIR), `runs=${REPEATS}`])
  everySide(small, (r) => r.ops === SMALL_FILES && r.bytes === SMALL_FILES * SMALL_FILE_BYTES, `small files: every pass read ${SMALL_FILES} whole files`)
  row(`open+read+close, ${SMALL_FILES} cached 4 KiB files`, 'files/s', small, (r) => rate(r, false))
  details.push(`open+read+close: ${perSide(small, passes)}; dfs ${formatNumber(median(small.dfs.runsMs) / SMALL_FILES)} ms a file; ` +
    `dfs servers over the warm-up and ${REPEATS} timed passes: ${describeActivity(small.before, small.after, SMALL_FILES * (REPEATS + 1), 'file')}`)

  // Never read before on any side: the dfs cache has none of them, and the page cache is dropped.
  const first = await each('first byte of uncached 4 KiB files', (dir) => ['first-byte', dir(COLD_DIR), `count=${COLD_FILES}`], dropBefore)
  everySide(first, (r) => r.runsMs.length === COLD_FILES && r.bytes === COLD_FILES, `first byte: read one byte of each of ${COLD_FILES} files`)
  row(`first byte of an uncached 4 KiB file (of ${COLD_FILES})`, 'ms, median', first, medianMs, true)
  details.push(`first byte: ${perSide(first, spread)}; dfs servers: ${describeActivity(first.before, first.after, COLD_FILES, 'file')}`)

  // Three samples (a single one varied 35-81 ms on dfs), the page cache dropped before each:
  // dfs keeps no copy of a file it read by ranges, so each is uncached there too.
  const tailSamples: Runs[] = []
  for (let i = 0; i < TAIL_SAMPLES; i++) tailSamples.push(await each('last 4 KiB of an uncached 64 MiB file', (dir) => ['tail', dir(TAILED_FILE)], dropBefore))
  const tailed = samplesTogether(tailSamples)
  everySide(tailed, (r) => r.bytes === 4096, 'tail: read the last 4 KiB')
  row(`last 4 KiB of an uncached 64 MiB file (tail, ${TAIL_SAMPLES} samples)`, 'ms, median', tailed, medianMs, true)
  details.push(`tail: ${perSide(tailed, spread)}; dfs servers: ${describeActivity(tailed.before, tailed.after, TAIL_SAMPLES, 'file')}`)

  if (target.durable !== null) {
    // The same two reads on the network floor: the file's bytes fetched from the bare server.
    const { mountpoint, server } = target.durable
    progress('sequential read, cold: network floor')
    await dropBefore()
    const fetchesBefore = await server.fetches()
    const floorCold = await runWorkload(['read', path.join(mountpoint, BIG_FILE)])
    const fetchesCold = await server.fetches() - fetchesBefore
    check(floorCold.bytes === BIG_FILE_BYTES && fetchesCold === 1, `network floor: the cold read read ${floorCold.bytes} bytes (expected ${BIG_FILE_BYTES}) in ${fetchesCold} fetches (expected 1)`)
    progress('first byte of uncached 4 KiB files: network floor')
    await dropBefore()
    const floorFirst = await runWorkload(['first-byte', path.join(mountpoint, COLD_DIR), `count=${COLD_FILES}`])
    const fetchesFirst = await server.fetches() - fetchesBefore - fetchesCold
    check(floorFirst.bytes === COLD_FILES && fetchesFirst === COLD_FILES, `network floor: the first byte workload read ${floorFirst.bytes} bytes in ${fetchesFirst} fetches (expected ${COLD_FILES} of each)`)
    readRows.push({ workload: 'sequential read 256 MiB, cold', unit: 'MB/s', local: rate(cold.local, true), sshfs: cold.sshfs === null ? null : rate(cold.sshfs, true), floor: rate(floorCold, true), dfs: rate(cold.dfs, true) },
      { workload: `first byte of an uncached 4 KiB file (of ${COLD_FILES})`, unit: 'ms, median', local: medianMs(first.local), sshfs: first.sshfs === null ? null : medianMs(first.sshfs), floor: medianMs(floorFirst), dfs: medianMs(first.dfs), lowerIsBetter: true })
    details.push(`network floor: sequential read, cold ${passes(floorCold)}; first byte ${spread(floorFirst)}`)
  }

  const listing = await each('ls -l', (dir) => ['ls', dir(LISTED_DIR), `runs=${REPEATS}`])
  everySide(listing, (r) => r.ops === LISTED_FILES, `ls: saw ${LISTED_FILES} entries`)
  row(`ls -l (readdir + lstat), ${LISTED_FILES} files`, 'entries/s', listing, (r) => rate(r, false))
  details.push(`ls -l: ${perSide(listing, passes)}; dfs servers: ${describeActivity(listing.before, listing.after, REPEATS, 'pass')}`)

  const appended = await each('one-line appends', (dir) => appendArgs(dir(APPEND_FILE)), warmedUp('appends', (dir) => appendArgs(dir(APPEND_WARM_UP_FILE))))
  const onServer = await fsp.stat(path.join(layout.roots[1], APPEND_FILE))
  check(appended.dfs.ops === APPENDS && onServer.size === appended.dfs.bytes,
    `appends: the file server's copy has ${onServer.size} bytes, the workload wrote ${appended.dfs.bytes}`)
  const serverAppends = appended.after.counts.appends - appended.before.counts.appends
  check(serverAppends === APPENDS, `appends: the file servers counted ${serverAppends}, expected ${APPENDS}`)
  const behindPassthrough = (await fsp.stat(path.join(layout.passthroughTree, APPEND_FILE))).size
  check(behindPassthrough === appended.passthrough.bytes, `appends: the passthrough's folder has ${behindPassthrough} bytes, the workload wrote ${appended.passthrough.bytes}`)
  row(`${APPENDS} one-line appends (open+write+close)`, 'appends/s', appended, (r) => rate(r, false))
  details.push(`appends: ${perSide(appended, passes)}; dfs ${formatNumber(median(appended.dfs.runsMs) / APPENDS)} ms an append; ` +
    `dfs servers: ${describeActivity(appended.before, appended.after, APPENDS, 'append')}; ${warmUpTimes('appends')}`)

  const overwritten = await each('overwrites of a small file', (dir) => ['overwrite', dir(OVERWRITTEN_FILE), `count=${OVERWRITES}`])
  const lastLine = overwriteLine(OVERWRITES - 1)
  const heldNow = await fsp.readFile(path.join(layout.roots[1], OVERWRITTEN_FILE), 'utf8')
  check(overwritten.dfs.ops === OVERWRITES && heldNow === lastLine, `overwrites: the file server's copy holds ${JSON.stringify(heldNow)}, the last overwrite wrote ${JSON.stringify(lastLine)}`)
  row(`${OVERWRITES} overwrites of a small file (O_TRUNC+write+close)`, 'overwrites/s', overwritten, (r) => rate(r, false))
  details.push(`overwrites: ${perSide(overwritten, passes)}; dfs ${formatNumber(median(overwritten.dfs.runsMs) / OVERWRITES)} ms an overwrite; ` +
    `dfs servers: ${describeActivity(overwritten.before, overwritten.after, OVERWRITES, 'overwrite')}`)

  const created = await each('create+write+close of new files', (dir) => createArgs(dir(CREATE_DIR)), warmedUp('creates', (dir) => createArgs(dir(CREATE_WARM_UP_DIR))))
  everySide(created, (r) => r.ops === CREATED_FILES && r.bytes === CREATED_FILES * SMALL_FILE_BYTES, `create: wrote ${CREATED_FILES} files of ${SMALL_FILE_BYTES} bytes`)
  // What the file server and the folders behind the passthrough and sshd hold, not what the mounts said they wrote.
  for (const folder of [path.join(layout.roots[1], CREATE_DIR), path.join(layout.passthroughTree, CREATE_DIR), ...(target.sshfs === null ? [] : [path.join(layout.sshfsTree, CREATE_DIR)])]) {
    const names = await fsp.readdir(folder)
    const sizes = await Promise.all(names.map(async (name) => (await fsp.stat(path.join(folder, name))).size))
    check(names.length === CREATED_FILES && sizes.every((size) => size === SMALL_FILE_BYTES), `create: ${folder} holds ${names.length} files, ${sizes.filter((size) => size === SMALL_FILE_BYTES).length} of ${SMALL_FILE_BYTES} bytes`)
  }
  row(`create+write 4 KiB+close, ${CREATED_FILES} new files`, 'files/s', created, (r) => rate(r, false))
  details.push(`create: ${perSide(created, passes)}; dfs ${formatNumber(median(created.dfs.runsMs) / CREATED_FILES)} ms a file; ` +
    `dfs servers: ${describeActivity(created.before, created.after, CREATED_FILES, 'create')}; ${warmUpTimes('creates')}`)

  if (target.durable !== null) {
    const { mountpoint, server } = target.durable
    await fsp.writeFile(path.join(layout.passthroughTree, FLOOR_APPEND_FILE), '')
    await fsp.mkdir(path.join(layout.passthroughTree, FLOOR_CREATE_DIR), { recursive: true })
    await fsp.writeFile(path.join(layout.passthroughTree, FLOOR_APPEND_WARM_UP_FILE), '')
    await fsp.mkdir(path.join(layout.passthroughTree, FLOOR_CREATE_WARM_UP_DIR), { recursive: true })
    /** A workload on the durable floor after its untimed warm-up (as the sides had), with the closes its server synced in the timed pass. */
    const afterWarmUp = async (timed: string[], warmUp: string[]): Promise<{ result: WorkloadResult, warmUp: WorkloadResult, syncs: number }> => {
      const warm = await runWorkload(warmUp)
      const syncsBefore = await server.syncs()
      const result = await runWorkload(timed)
      return { result, warmUp: warm, syncs: await server.syncs() - syncsBefore }
    }
    progress('one-line appends: durable floor')
    const floorAppendRun = await afterWarmUp(appendArgs(path.join(mountpoint, FLOOR_APPEND_FILE)), appendArgs(path.join(mountpoint, FLOOR_APPEND_WARM_UP_FILE)))
    progress('create+write+close of new files: durable floor')
    const floorCreateRun = await afterWarmUp(createArgs(path.join(mountpoint, FLOOR_CREATE_DIR)), createArgs(path.join(mountpoint, FLOOR_CREATE_WARM_UP_DIR)))
    const [floorAppends, floorCreates] = [floorAppendRun.result, floorCreateRun.result]
    const floorSyncs = floorAppendRun.syncs + floorCreateRun.syncs
    // One sync per close; the folder of each new file is synced in the same request.
    check(floorSyncs === APPENDS + CREATED_FILES, `durable floor: its server synced ${floorSyncs} closes, expected ${APPENDS + CREATED_FILES}`)
    const floorAppended = (await fsp.stat(path.join(layout.passthroughTree, FLOOR_APPEND_FILE))).size
    check(floorAppended === floorAppends.bytes, `durable floor: its appends file has ${floorAppended} bytes, the workload wrote ${floorAppends.bytes}`)
    durableRows.push(durableRow(`${APPENDS} one-line appends (open+write+close)`, 'appends/s', appended, floorAppends),
      durableRow(`create+write 4 KiB+close, ${CREATED_FILES} new files`, 'files/s', created, floorCreates))
    details.push(`durable floor: appends ${passes(floorAppends)}, creates ${passes(floorCreates)}; its server synced ${floorSyncs} closes; ` +
      `untimed warm-ups before: appends ${passes(floorAppendRun.warmUp)}, creates ${passes(floorCreateRun.warmUp)}`)
  }

  if (target.runs === 'full') {
    const written = await each('write+fsync+close of a new file', (dir) => ['write', dir(WRITTEN_FILE), `mib=${WRITE_MIB}`])
    everySide(written, (r) => r.bytes === WRITE_MIB * MiB, `write: wrote ${WRITE_MIB} MiB`)
    for (const file of [path.join(layout.roots[1], WRITTEN_FILE), path.join(layout.passthroughTree, WRITTEN_FILE), ...(target.sshfs === null ? [] : [path.join(layout.sshfsTree, WRITTEN_FILE)])]) {
      const size = (await fsp.stat(file)).size
      check(size === WRITE_MIB * MiB, `write: ${file} has ${size} bytes, expected ${WRITE_MIB * MiB}`)
    }
    row(`write ${WRITE_MIB} MiB+fsync+close, new file`, 'MB/s', written, (r) => rate(r, true))
    details.push(`write+fsync: ${perSide(written, passes)}; dfs servers: ${describeActivity(written.before, written.after, 1, 'pass')}`)

    const ops: Record<string, { few: Runs, large: Runs }> = {}
    for (const op of FOLDER_OPS) {
      const name = { stat: 'stat', read: 'open+read+close', create: 'create+close', unlink: 'unlink' }[op]
      // The small folder first, then the large one, each a process per side; unlink removes what create made.
      const run = async (folder: string, files: number): Promise<Runs> => {
        const runs = await each(`${name}, ${formatNumber(files)}-file folder`, (dir) => ['folder-op', dir(folder), `op=${op}`, `count=${FOLDER_OP_COUNT}`])
        everySide(runs, (r) => r.runsMs.length === FOLDER_OP_COUNT, `${op}: ${FOLDER_OP_COUNT} operations`)
        row(`${name}, ${formatNumber(files)}-file folder`, 'ms, median', runs, medianMs, true)
        details.push(`${name} in the ${formatNumber(files)}-file folder: ${perSide(runs, spread)}; dfs servers: ${describeActivity(runs.before, runs.after, FOLDER_OP_COUNT, op)}`)
        return runs
      }
      ops[op] = { few: await run(FEW_DIR, FEW_FOLDER_FILES), large: await run(LARGE_DIR, LARGE_FOLDER_FILES) }
      const ratio = (side: Side, of: (values: number[]) => number): string => {
        const pick = (runs: Runs): number[] => resultOf(runs, side).runsMs
        return (of(pick(ops[op].large)) / of(pick(ops[op].few))).toFixed(2)
      }
      folderRatios.push(`${name.padEnd(16)}${sides.map((side) => `${side} ${ratio(side, median)} (${ratio(side, mean)})`).join(', ')}`)
    }

    // A side may fail here (dfs: a listing slower than the client's request timeout ends in
    // EIO): the row then shows the error instead of stopping the run with the figures unprinted.
    const large: Partial<Record<Side, WorkloadResult | string>> = {}
    const before = activityOf(cluster, requests)
    let after = before
    for (const side of sides) {
      progress(`ls -l of the large folder: ${side}`)
      try {
        const result = await runWorkload(['ls', path.join(homes[side], LARGE_DIR), `runs=${LARGE_LS_RUNS}`])
        check(result.ops === LARGE_FOLDER_FILES, `ls of the large folder: ${side} saw ${result.ops} entries, expected ${LARGE_FOLDER_FILES}`)
        large[side] = result
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        large[side] = /\b(E[A-Z]+)\b/.exec(message)?.[1] ?? 'failed'
        progress(`ls -l of the large folder failed on ${side}: ${message}`)
      }
      if (side === 'dfs') after = activityOf(cluster, requests)
    }
    const figure = (side: Side, firstPass = false): number | string => {
      const result = large[side]
      if (result === undefined) return 'not run'
      if (typeof result === 'string') return result
      return firstPass ? result.ops / (result.runsMs[0] / 1000) : rate(result, false)
    }
    for (const firstPass of [false, true]) {
      rows.push({
        workload: `ls -l (readdir + lstat), ${formatNumber(LARGE_FOLDER_FILES)} files${firstPass ? ', first pass' : ''}`,
        unit: 'entries/s',
        local: figure('local', firstPass),
        dfs: figure('dfs', firstPass),
        sshfs: target.sshfs === null ? null : figure('sshfs', firstPass),
        passthrough: figure('passthrough', firstPass)
      })
    }
    const shown = (side: Side): string => {
      const result = large[side]
      return `${side} ${result === undefined ? 'not run' : typeof result === 'string' ? `failed (${result})` : passes(result)}`
    }
    details.push(`ls -l of ${formatNumber(LARGE_FOLDER_FILES)}: ${sides.map(shown).join('; ')}; dfs servers: ${describeActivity(before, after, LARGE_LS_RUNS, 'pass')}`)
  }

  return { rows, durableRows, readRows, details, folderRatios, pageCacheDrop }
}

/** How fast dfs is against another side: below 1 means slower, for rates and for times alike. */
function speedRatio (row: Row, other: number | string): string {
  if (typeof other === 'string' || typeof row.dfs === 'string') return '-'
  const ratio = row.lowerIsBetter === true ? other / row.dfs : row.dfs / other
  return ratio.toFixed(ratio >= 0.1 ? 2 : 4)
}

function table (rows: Row[], withSshfs: boolean): string {
  const lines = [withSshfs ? ['workload', 'unit', 'local', 'dfs', 'sshfs', 'dfs/local', 'dfs/sshfs'] : ['workload', 'unit', 'local', 'dfs', 'dfs/local']]
  for (const row of rows) {
    lines.push(withSshfs && row.sshfs !== null
      ? [row.workload, row.unit, formatFigure(row.local), formatFigure(row.dfs), formatFigure(row.sshfs), speedRatio(row, row.local), speedRatio(row, row.sshfs)]
      : [row.workload, row.unit, formatFigure(row.local), formatFigure(row.dfs), speedRatio(row, row.local)])
  }
  return aligned(lines)
}

/**
 * dfs against the floor: the same workloads on a fuse-native passthrough of a local folder with
 * dfs's kernel options, in this run. What dfs loses here is its own: its requests, its cache
 * and its promise turns, not the kernel's round trips into a Node process.
 */
function floorTable (rows: Row[]): string {
  return aligned([['workload', 'unit', 'passthrough', 'dfs', 'dfs/passthrough'],
    ...rows.map((row) => [row.workload, row.unit, formatFigure(row.passthrough), formatFigure(row.dfs), speedRatio(row, row.passthrough)])])
}

/**
 * Workloads against a floor of what a design over HTTP pays at least, on this machine in this
 * run: the durable floor for durable steps (one request and one fsync round per close, fsync
 * and unlink made durable on a server; sshfs makes none durable), the network floor for
 * reads (one request per open, the bytes read from memory as they come). floor/local and
 * floor/sshfs are the most such a design reaches against the local folder and sshfs here.
 */
function durableTable (rows: DurableRow[], floorName = 'durable floor'): string {
  return aligned([['workload', 'unit', 'local', 'sshfs', floorName, 'dfs', 'floor/local', 'floor/sshfs', 'dfs/floor', 'dfs/local', 'dfs/sshfs'],
    ...rows.map((row) => {
      // How fast `a` is against `b`, for rates and times alike.
      const ratio = (a: number, b: number | null): string => b === null ? '-' : (row.lowerIsBetter === true ? b / a : a / b).toPrecision(2)
      return [row.workload, row.unit, formatFigure(row.local), row.sshfs === null ? '-' : formatFigure(row.sshfs), formatFigure(row.floor), formatFigure(row.dfs),
        ratio(row.floor, row.local), ratio(row.floor, row.sshfs), ratio(row.dfs, row.floor), ratio(row.dfs, row.local), ratio(row.dfs, row.sshfs)]
    })])
}

/** Text columns under a header and a rule: the first two to the left, the figures to the right. */
function aligned (lines: string[][]): string {
  const widths = lines[0].map((_, col) => Math.max(...lines.map((line) => line[col].length)))
  return lines.map((line, i) => {
    const text = line.map((cell, col) => (col < 2 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join('  ')
    return i === 0 ? `${text}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : text
  }).join('\n')
}

function machine (): string {
  const cpus = os.cpus()
  return `${os.availableParallelism()} cores (${cpus[0]?.model.trim() ?? 'unknown cpu'}), ${formatNumber(os.totalmem() / 1024 ** 3)} GiB RAM, ` +
    `Linux ${os.release()}, node ${process.version}`
}

const loadAverage = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' ')

async function main (argv: string[]): Promise<void> {
  const unknown = argv.filter((arg) => arg !== '--quick' && arg !== '--sqlite')
  if (unknown.length > 0 || argv.length > 1) throw new Error(`unknown argument ${argv.join(' ')}; the options are --quick or --sqlite`)
  const runs: RunKind = argv.includes('--quick') ? 'quick' : argv.includes('--sqlite') ? 'sqlite' : 'full'
  const quick = runs === 'quick'
  const started = Date.now()
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-bench-'))
  const layout: Layout = {
    workDir,
    roots: [path.join(workDir, 'root-1'), path.join(workDir, 'root-2')],
    local: path.join(workDir, 'local'),
    mountpoint: path.join(workDir, 'mnt'),
    cacheDir: path.join(workDir, 'cache'),
    stateDir: path.join(workDir, 'state'),
    sshfsTree: path.join(workDir, 'sshfs-tree'),
    sshfsMountpoint: path.join(workDir, 'sshfs-mnt'),
    sshState: path.join(workDir, 'sshd'),
    passthroughTree: path.join(workDir, 'passthrough-tree'),
    passthroughMountpoint: path.join(workDir, 'passthrough-mnt'),
    durableMountpoint: path.join(workDir, 'durable-floor-mnt')
  }
  const noSshfs = sshfsMissing()
  const requests = new RequestCounter()
  requests.start()
  let cluster: RunningCluster | null = null
  let daemon: MountDaemon | null = null
  let sshfs: SshfsMount | null = null
  let passthrough: MountDaemon | null = null
  let syncServer: SyncServer | null = null
  let durableFloor: MountDaemon | null = null
  let cleaning: Promise<void> | null = null
  const cleanUp = async (): Promise<void> => {
    cleaning ??= (async () => {
      let unmounted = false
      let sshfsUnmounted = true
      let passthroughUnmounted = false
      let durableUnmounted = false
      progress('cleaning up')
      try {
        if (sshfs !== null) sshfsUnmounted = await sshfs.stop()
      } catch (err) {
        sshfsUnmounted = false
        progress(`stopping sshfs and sshd failed: ${String(err)}`)
      }
      try {
        unmounted = await stopMountDaemon(layout.mountpoint, daemon)
      } catch (err) {
        progress(`unmounting ${layout.mountpoint} failed: ${String(err)}`)
      }
      try {
        passthroughUnmounted = await stopMountDaemon(layout.passthroughMountpoint, passthrough)
      } catch (err) {
        progress(`unmounting ${layout.passthroughMountpoint} failed: ${String(err)}`)
      }
      try {
        durableUnmounted = await stopMountDaemon(layout.durableMountpoint, durableFloor)
      } catch (err) {
        progress(`unmounting ${layout.durableMountpoint} failed: ${String(err)}`)
      }
      await syncServer?.close().catch((err: unknown) => progress(`stopping the durable floor's server failed: ${String(err)}`))
      await cluster?.close().catch((err: unknown) => progress(`stopping the cluster failed: ${String(err)}`))
      // Never walk into a mount that is still there: that would hang on the stopped servers.
      progress('unmounted; removing the temp folder')
      const leftover = [unmounted ? null : layout.mountpoint, sshfsUnmounted ? null : layout.sshfsMountpoint, passthroughUnmounted ? null : layout.passthroughMountpoint,
        durableUnmounted ? null : layout.durableMountpoint]
        .filter((mountpoint) => mountpoint !== null)
      if (leftover.length === 0) await fsp.rm(workDir, { recursive: true, force: true })
      else progress(`LEFTOVER MOUNT in ${workDir}: run fusermount -u -z on ${leftover.join(' ')}, then rm -rf ${workDir}`)
    })()
    await cleaning
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      progress(`${signal}: stopping`)
      void cleanUp().finally(() => process.exit(130))
    })
  }

  try {
    progress(runs === 'sqlite'
      ? `creating data in ${workDir} (a 50 MB sqlite database)`
      : `creating data in ${workDir} (2 x 256 MiB, small, listed and uncached files${quick ? '' : `, 2 x ${formatNumber(LARGE_FOLDER_FILES)} files in one folder and a 50 MB sqlite database`})`)
    await fsp.mkdir(layout.mountpoint, { recursive: true })
    await createData(layout, runs)
    if (noSshfs !== null) progress(noSshfs)
    else {
      progress(`copying the local tree for sshfs and starting sshd and sshfs (${layout.sshState})`)
      // Its own copy: the workloads that write must not see each other's files.
      await execFileAsync('cp', ['-a', layout.local, layout.sshfsTree], { timeout: 300_000 })
      sshfs = new SshfsMount(layout.sshState, layout.sshfsTree, layout.sshfsMountpoint)
      await sshfs.start()
    }
    progress(`copying the local tree for the passthrough and mounting it at ${layout.passthroughMountpoint}`)
    // Its own copy too, for the same reason.
    await execFileAsync('cp', ['-a', layout.local, layout.passthroughTree], { timeout: 300_000 })
    passthrough = await mountPassthrough(layout)
    // The durable floor's database starts as the others do: a copy made before any side ran.
    if (fs.existsSync(path.join(layout.passthroughTree, DATABASE))) await fsp.copyFile(path.join(layout.passthroughTree, DATABASE), path.join(layout.passthroughTree, FLOOR_DATABASE))
    syncServer = await startSyncServer(layout.passthroughTree)
    durableFloor = await mountDurableFloor(layout, syncServer)
    // Before the cluster and after the workloads: nothing else of the benchmark's is on the disk then.
    const fsyncBefore = fdatasyncFloorMs(layout.workDir)
    // Secure, as a real cluster runs: every request's credential is checked, so its cost is in the figures.
    const key = ClusterKey.generate()
    const tokenFile = path.join(layout.workDir, 'client.token')
    fs.writeFileSync(tokenFile, key.clientToken('bench', { ttlMs: 86_400_000 }).token + '\n', { mode: 0o600 })
    cluster = await startCluster({ roots: layout.roots, directoryPort: 0, lockPort: 0, firstFilePort: 0, auth: { key } })
    progress(`cluster up: directory ${cluster.directory.url}, lock ${cluster.lock.url}, file servers ${cluster.fileServers.map((s) => s.url).join(' ')}`)
    const loadBefore = loadAverage()
    daemon = await mount(layout, cluster, tokenFile)
    progress(`mounted at ${layout.mountpoint}`)
    const durable = syncServer !== null && durableFloor !== null ? { mountpoint: layout.durableMountpoint, server: syncServer } : null
    const result = await measure(layout, { cluster, requests, sshfs, runs, durable })
    const fsyncAfter = fdatasyncFloorMs(layout.workDir)

    process.stdout.write([
      '',
      `dfs benchmark${quick ? ' (--quick: no 256 MiB write, no large folder, no database)' : runs === 'sqlite' ? ' (--sqlite: the database workload alone)' : ''}, ${new Date().toISOString()}`,
      `machine: ${machine()}`,
      `load average (1, 5, 15 min): ${loadBefore} at the start, ${loadAverage()} at the end; other work on this machine makes the figures noisy`,
      `fdatasync after a 30-byte append on the data's disk (a durable append's floor), median of 200: ${formatNumber(fsyncBefore)} ms at the start, ${formatNumber(fsyncAfter)} ms at the end`,
      `page cache before the cold reads and the first bytes: ${result.pageCacheDrop === null ? `dropped (sync; echo 3 > ${DROP_CACHES})` : `NOT dropped (${result.pageCacheDrop}): the local cold read is really warm`}`,
      noSshfs ?? 'sshfs: its own copy of the local tree through a loopback sshd, sshfs default options',
      `medians of ${REPEATS} passes for the warm read, small files and ls; one pass for the cold read, the overwrites and the write; one pass after an untimed warm-up pass of the same size for the appends and the creates; ` +
        'ms rows: median of single operations; MB = 10^6 bytes; ratios compare speed (for ms rows other/dfs), below 1 means dfs is slower',
      '',
      table(result.rows, sshfs !== null),
      '',
      'floor: the same workloads on a fuse-native passthrough of a local folder with dfs\'s kernel options (bench/passthrough.ts: no network, no fsync at close)',
      '',
      floorTable(result.rows),
      ...(result.durableRows.length === 0
        ? []
        : ['', 'durable floor: the passthrough again, each close or fsync of a written file sent as one bare keep-alive request (its bytes as the body) to a bare Node HTTP server that fdatasyncs the file, and its folder after a create or an unlink (bench/syncServer.ts), and fcntl locks answered from memory at the mount, as dfs takes them there for other mounts to see (bench/memoryLocks.ts): the least durable steps on a server cost here',
            '', durableTable(result.durableRows)]),
      ...(result.readRows.length === 0
        ? []
        : ['', 'network floor: the durable floor\'s mount again, each file opened for reading fetched from its bare server (GET, streamed from the disk) and read from memory as it arrives, no copy kept (bench/passthrough.ts): the least a read over HTTP costs here',
            '', durableTable(result.readRows, 'network floor')]),
      ...(result.folderRatios.length === 0
        ? []
        : ['', `large folder, ${formatNumber(LARGE_FOLDER_FILES)} files against ${FEW_FOLDER_FILES}: time of one operation in the large folder / in the small one, median (mean) of ${FOLDER_OP_COUNT}`,
            ...result.folderRatios.map((line) => `  ${line}`)]),
      '',
      'passes:',
      ...result.details.map((line) => `  ${line}`),
      '',
      `total time ${formatNumber((Date.now() - started) / 1000)} s`,
      ''
    ].join('\n'))
  } catch (err) {
    for (const running of [daemon, passthrough, durableFloor]) {
      if (running !== null) progress(`${running.name} output:\n${running.output().trim()}`)
    }
    throw err
  } finally {
    await cleanUp()
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`bench: failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
