import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { startCluster } from '../servers/cluster'
import type { RunningCluster } from '../servers/cluster'
import { isMounted, lazyUnmount } from '../src/fuse/mount'
import type { FileServerStats } from '../src/shared/protocol'
import { cleanEnv, repoRoot, runNode } from './processes'
import { RequestCounter } from './requestCounter'
import type { WorkloadResult } from './workload'

/*
 * The dfs benchmark: a demo-like cluster (directory, lock and two file servers) in this
 * process, mounted with the real dfs-mount CLI in a child process, and the same workloads
 * run on the mount and on a plain local folder. Every workload runs in a child process of
 * its own (bench/workload.ts): this process serves the cluster and must never block on the
 * mount. See bench/README.md for what each figure means.
 */

const MiB = 1024 * 1024
const BIG_FILE_BYTES = 256 * MiB
const SMALL_FILES = 1000
const SMALL_FILE_BYTES = 4096
const LISTED_FILES = 2000
const APPENDS = 2000
const REPEATS = 3
const MOUNT_DEADLINE_MS = 20_000
const STOP_DEADLINE_MS = 15_000
const WORKLOAD_DEADLINE_MS = 180_000
const DROP_CACHES = '/proc/sys/vm/drop_caches'

/** Where each workload's data lives, as a path below a file server root, the mount or the local folder. */
const BIG_FILE = 'seq/big.bin'
const SMALL_DIR = 'small'
const LISTED_DIR = 'listing'
const APPEND_FILE = 'appends/log.txt'

const execFileAsync = promisify(execFile)
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

function progress (line: string): void {
  process.stderr.write(`bench: ${line}\n`)
}

interface Layout {
  workDir: string
  /** One root per file server: the big file and the listed folder on the first, the rest on the second. */
  roots: [string, string]
  local: string
  mountpoint: string
  cacheDir: string
  stateDir: string
}

async function writeFiles (folder: string, count: number, bytes: number, prefix: string): Promise<void> {
  await fsp.mkdir(folder, { recursive: true })
  for (let i = 0; i < count; i++) {
    await fsp.writeFile(path.join(folder, `${prefix}-${String(i).padStart(4, '0')}`), crypto.randomBytes(bytes))
  }
}

async function writeBigFile (file: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true })
  const handle = await fsp.open(file, 'w')
  try {
    for (let written = 0; written < BIG_FILE_BYTES; written += MiB) await handle.write(crypto.randomBytes(MiB))
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** The same tree in the local folder and, split over the two roots, on the file servers. */
async function createData (layout: Layout): Promise<void> {
  const [first, second] = layout.roots
  for (const [bigHome, smallHome, listedHome, appendHome] of [[first, second, first, second], [layout.local, layout.local, layout.local, layout.local]]) {
    await writeBigFile(path.join(bigHome, BIG_FILE))
    await writeFiles(path.join(smallHome, SMALL_DIR), SMALL_FILES, SMALL_FILE_BYTES, 'file')
    await writeFiles(path.join(listedHome, LISTED_DIR), LISTED_FILES, 100, 'entry')
    await fsp.mkdir(path.dirname(path.join(appendHome, APPEND_FILE)), { recursive: true })
    await fsp.writeFile(path.join(appendHome, APPEND_FILE), '')
  }
}

interface MountDaemon {
  child: ChildProcess
  exited: Promise<void>
  alive: () => boolean
  output: () => string
}

/** `dfs-mount MOUNTPOINT --foreground` as a child process, once the kernel lists the mount. */
async function mount (layout: Layout, cluster: RunningCluster): Promise<MountDaemon> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'dfs-mount'), layout.mountpoint, '--foreground',
    '--directory', cluster.directory.url, '--lock', cluster.lock.url, '--cache-dir', layout.cacheDir], {
    cwd: repoRoot,
    env: { ...cleanEnv(), XDG_STATE_HOME: layout.stateDir },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const daemon = { child, exited, alive: () => child.exitCode === null && child.signalCode === null, output: () => output }
  const deadline = Date.now() + MOUNT_DEADLINE_MS
  while (!(await isMounted(layout.mountpoint))) {
    if (!daemon.alive()) throw new Error(`dfs-mount exited (${child.exitCode ?? child.signalCode}) before mounting: ${output.trim()}`)
    if (Date.now() > deadline) throw new Error(`not mounted within ${MOUNT_DEADLINE_MS} ms; dfs-mount printed: ${output.trim()}`)
    await sleep(50)
  }
  return daemon
}

/** SIGTERM to the daemon (it unmounts itself), then a lazy unmount if the mount is still there. */
async function unmount (layout: Layout, daemon: MountDaemon | null): Promise<boolean> {
  if (daemon?.alive() === true) {
    daemon.child.kill('SIGTERM')
    const stopped = await Promise.race([daemon.exited.then(() => true), sleep(STOP_DEADLINE_MS).then(() => false)])
    if (!stopped) {
      daemon.child.kill('SIGKILL')
      await daemon.exited
    }
  }
  if (await isMounted(layout.mountpoint)) await lazyUnmount(layout.mountpoint)
  return !(await isMounted(layout.mountpoint))
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
  const perOp = routes.length === 0 ? 'none' : routes.map(([route, n]) => `${route} ${n >= 10 ? n.toFixed(0) : n >= 0.01 ? n.toFixed(2) : n.toPrecision(1)}`).join(', ')
  return `file contents sent: ${delta('contentTransfers')} (${formatNumber(delta('contentBytes') / 1e6)} MB), ` +
    `not-modified answers: ${delta('notModified')}, appends: ${delta('appends')}; requests per ${unit}: ${perOp}`
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
  local: number
  dfs: number
}

/** A figure per second from a workload's median pass: MB/s for reads (MB = 10^6 bytes), else operations/s. */
function rate (result: WorkloadResult, perBytes: boolean): number {
  const seconds = median(result.runsMs) / 1000
  return (perBytes ? result.bytes / 1e6 : result.ops) / seconds
}

function check (condition: boolean, what: string): void {
  if (!condition) throw new Error(`check failed: ${what}`)
}

interface Measurement {
  rows: Row[]
  details: string[]
  pageCacheDrop: string | null
}

interface Pair {
  local: WorkloadResult
  dfs: WorkloadResult
  before: Activity
  after: Activity
}

async function measure (layout: Layout, cluster: RunningCluster, requests: RequestCounter): Promise<Measurement> {
  const rows: Row[] = []
  const details: string[] = []
  const local = (rel: string): string => path.join(layout.local, rel)
  const onMount = (rel: string): string => path.join(layout.mountpoint, rel)
  const passes = (result: WorkloadResult): string => result.runsMs.map((ms, i) => {
    const opened = result.openMs?.[i]
    return `${formatNumber(ms)} ms${opened === undefined ? '' : ` (${formatNumber(opened)} in open)`}`
  }).join(', ')
  /** The same workload on the local folder, then on the mount; `beforeEach` runs before each of the two. */
  const both = async (name: string, args: (dir: (rel: string) => string) => string[], beforeEach: () => Promise<unknown> = async () => {}): Promise<Pair> => {
    progress(`${name}: local folder`)
    await beforeEach()
    const localResult = await runWorkload(args(local))
    progress(`${name}: dfs mount`)
    await beforeEach()
    const before = activityOf(cluster, requests)
    const dfsResult = await runWorkload(args(onMount))
    return { local: localResult, dfs: dfsResult, before, after: activityOf(cluster, requests) }
  }

  // Cold: the page cache is dropped before each of the two reads, and the mount has never opened the file.
  let pageCacheDrop: string | null = null
  const cold = await both('sequential read, cold', (dir) => ['read', dir(BIG_FILE)], async () => { pageCacheDrop = await dropPageCache() })
  check(cold.local.bytes === BIG_FILE_BYTES && cold.dfs.bytes === BIG_FILE_BYTES, `cold reads read ${cold.local.bytes} and ${cold.dfs.bytes} bytes, expected ${BIG_FILE_BYTES}`)
  check(cold.after.counts.contentTransfers - cold.before.counts.contentTransfers === 1, 'the cold read on the mount fetched the file once')
  rows.push({ workload: 'sequential read 256 MiB, cold', unit: 'MB/s', local: rate(cold.local, true), dfs: rate(cold.dfs, true) })
  details.push(`sequential read, cold: local ${passes(cold.local)}; dfs ${passes(cold.dfs)}; ${describeActivity(cold.before, cold.after, 1, 'pass')}`)

  const warm = await both('sequential read, warm', (dir) => ['read', dir(BIG_FILE), `runs=${REPEATS}`])
  check(warm.local.bytes === BIG_FILE_BYTES && warm.dfs.bytes === BIG_FILE_BYTES, 'warm reads read the whole file')
  rows.push({ workload: 'sequential read 256 MiB, warm', unit: 'MB/s', local: rate(warm.local, true), dfs: rate(warm.dfs, true) })
  details.push(`sequential read, warm: local ${passes(warm.local)}; dfs ${passes(warm.dfs)}; ${describeActivity(warm.before, warm.after, REPEATS, 'pass')}`)

  const small = await both('open+read+close of small files', (dir) => ['small', dir(SMALL_DIR), `runs=${REPEATS}`])
  check(small.local.ops === SMALL_FILES && small.dfs.ops === SMALL_FILES, `small files: saw ${small.local.ops} and ${small.dfs.ops} files, expected ${SMALL_FILES}`)
  check(small.dfs.bytes === SMALL_FILES * SMALL_FILE_BYTES, `small files on the mount: read ${small.dfs.bytes} bytes a pass, expected ${SMALL_FILES * SMALL_FILE_BYTES}`)
  rows.push({ workload: `open+read+close, ${SMALL_FILES} cached 4 KiB files`, unit: 'files/s', local: rate(small.local, false), dfs: rate(small.dfs, false) })
  details.push(`open+read+close: local ${passes(small.local)}; dfs ${passes(small.dfs)} (${formatNumber(median(small.dfs.runsMs) / SMALL_FILES)} ms a file); ` +
    `over the warm-up and ${REPEATS} timed passes, ${describeActivity(small.before, small.after, SMALL_FILES * (REPEATS + 1), 'file')}`)

  const listing = await both('ls -l', (dir) => ['ls', dir(LISTED_DIR), `runs=${REPEATS}`])
  check(listing.local.ops === LISTED_FILES && listing.dfs.ops === LISTED_FILES, `ls: saw ${listing.local.ops} and ${listing.dfs.ops} entries, expected ${LISTED_FILES}`)
  rows.push({ workload: `ls -l (readdir + lstat), ${LISTED_FILES} files`, unit: 'entries/s', local: rate(listing.local, false), dfs: rate(listing.dfs, false) })
  details.push(`ls -l: local ${passes(listing.local)}; dfs ${passes(listing.dfs)}; ${describeActivity(listing.before, listing.after, REPEATS, 'pass')}`)

  const appended = await both('one-line appends', (dir) => ['append', dir(APPEND_FILE), `count=${APPENDS}`])
  const onServer = await fsp.stat(path.join(layout.roots[1], APPEND_FILE))
  check(appended.dfs.ops === APPENDS && onServer.size === appended.dfs.bytes,
    `appends: the file server's copy has ${onServer.size} bytes, the workload wrote ${appended.dfs.bytes}`)
  const serverAppends = appended.after.counts.appends - appended.before.counts.appends
  check(serverAppends === APPENDS, `appends: the file servers counted ${serverAppends}, expected ${APPENDS}`)
  rows.push({ workload: `${APPENDS} one-line appends (open+write+close)`, unit: 'appends/s', local: rate(appended.local, false), dfs: rate(appended.dfs, false) })
  details.push(`appends: local ${passes(appended.local)}; dfs ${passes(appended.dfs)} (${formatNumber(median(appended.dfs.runsMs) / APPENDS)} ms an append); ` +
    `${describeActivity(appended.before, appended.after, APPENDS, 'append')}`)

  return { rows, details, pageCacheDrop }
}

function table (rows: Row[]): string {
  const lines = [['workload', 'unit', 'local', 'dfs', 'dfs/local']]
  for (const row of rows) lines.push([row.workload, row.unit, formatNumber(row.local), formatNumber(row.dfs), (row.dfs / row.local).toFixed(row.dfs / row.local >= 0.1 ? 2 : 4)])
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

async function main (): Promise<void> {
  const started = Date.now()
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-bench-'))
  const layout: Layout = {
    workDir,
    roots: [path.join(workDir, 'root-1'), path.join(workDir, 'root-2')],
    local: path.join(workDir, 'local'),
    mountpoint: path.join(workDir, 'mnt'),
    cacheDir: path.join(workDir, 'cache'),
    stateDir: path.join(workDir, 'state')
  }
  const requests = new RequestCounter()
  requests.start()
  let cluster: RunningCluster | null = null
  let daemon: MountDaemon | null = null
  let cleaning: Promise<void> | null = null
  const cleanUp = async (): Promise<void> => {
    cleaning ??= (async () => {
      let unmounted = false
      try {
        unmounted = await unmount(layout, daemon)
      } catch (err) {
        progress(`unmounting ${layout.mountpoint} failed: ${String(err)}`)
      }
      await cluster?.close().catch((err: unknown) => progress(`stopping the cluster failed: ${String(err)}`))
      // Never walk into a mount that is still there: that would hang on the stopped servers.
      if (unmounted) await fsp.rm(workDir, { recursive: true, force: true })
      else progress(`LEFTOVER MOUNT at ${layout.mountpoint}: run fusermount -u -z ${layout.mountpoint}, then rm -rf ${workDir}`)
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
    progress(`creating data in ${workDir} (2 x 256 MiB, 2 x ${SMALL_FILES} small files, 2 x ${LISTED_FILES} listed files)`)
    await fsp.mkdir(layout.mountpoint, { recursive: true })
    await createData(layout)
    cluster = await startCluster({ roots: layout.roots, directoryPort: 0, lockPort: 0, firstFilePort: 0 })
    progress(`cluster up: directory ${cluster.directory.url}, lock ${cluster.lock.url}, file servers ${cluster.fileServers.map((s) => s.url).join(' ')}`)
    const loadBefore = loadAverage()
    daemon = await mount(layout, cluster)
    progress(`mounted at ${layout.mountpoint}`)
    const result = await measure(layout, cluster, requests)

    process.stdout.write([
      '',
      `dfs benchmark, ${new Date().toISOString()}`,
      `machine: ${machine()}`,
      `load average (1, 5, 15 min): ${loadBefore} at the start, ${loadAverage()} at the end; other work on this machine makes the figures noisy`,
      `page cache before the cold reads: ${result.pageCacheDrop === null ? `dropped (sync; echo 3 > ${DROP_CACHES})` : `NOT dropped (${result.pageCacheDrop}): the local cold read is really warm`}`,
      `medians of ${REPEATS} passes for the warm read, small files and ls; one pass for the cold read and the appends; MB = 10^6 bytes`,
      '',
      table(result.rows),
      '',
      'passes:',
      ...result.details.map((line) => `  ${line}`),
      '',
      `total time ${formatNumber((Date.now() - started) / 1000)} s`,
      ''
    ].join('\n'))
  } catch (err) {
    if (daemon !== null) progress(`dfs-mount output:\n${daemon.output().trim()}`)
    throw err
  } finally {
    await cleanUp()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
