import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import yargs from 'yargs/yargs'
import type { Logger, RunningServer, ServerTls } from '../../servers/common/http'
import { startProcessLog } from '../../servers/common/logging'
import type { LogLevel, ProcessLog } from '../../servers/common/logging'
import { defaultMetricsAddress, MetricsAddressError, parseMetricsAddress, serveMetrics } from '../shared/metrics'
import type { MetricsEndpoint } from '../shared/metrics'
import { startDirectoryServer } from '../../servers/directory/server'
import { startLockServer } from '../../servers/lock/server'
import { startFileServer } from '../../servers/file/server'
import { prepareDemoData, startCluster } from '../../servers/cluster'
import type { ServerAuth } from '../../servers/common/auth'
import { ClusterKey, parseDuration } from '../../servers/common/tokens'
import { DEMO_TOKEN_FILE, DEFAULT_DEMO_DATA_DIR } from '../shared/defaults'
import { CliError, logLine, runMain } from './common'
import { readPem, trustClusterCa } from './credentials'
import { notifyParent, startDetached } from './daemon'
import { isAlive } from '../shared/liveProcess'
import { DirectoryApi } from '../shared/api'
import { Transport } from '../shared/transport'
import { demoOptions, directoryServerOptions, drainOptions, fileServerOptions, forgetServerOptions, lockServerOptions, refuseRepeatedOptions, tokenOptions } from './options'
import { drainCommand } from './drain'

const repoRoot = path.resolve(__dirname, '..', '..', '..')

/** How long requests in flight may take to finish once SIGTERM came; then they are cut and the process exits. */
const SHUTDOWN_GRACE_MS = 10_000

/** Plain lines on standard output until the command has started its process log. */
let log: Logger = (line) => { process.stdout.write(`${new Date().toISOString()} ${logLine(line)}\n`) }
let processLog: ProcessLog | null = null

/** The process's log from the command's --log and --log-level (servers/common/logging.ts). */
function startLogging (name: string, args: { log?: string, logLevel: string }): void {
  processLog = startProcessLog({ name, file: args.log, level: args.logLevel as LogLevel })
  log = processLog.log
}

/** GET /metrics on the --metrics address (default: loopback, the server's port + 2100); null if off. */
async function startMetrics (args: { metrics?: string }, serverPort: number): Promise<MetricsEndpoint | null> {
  let address
  try {
    address = args.metrics === undefined ? defaultMetricsAddress(serverPort) : parseMetricsAddress(args.metrics)
  } catch (err) {
    if (err instanceof MetricsAddressError) throw new CliError(err.message)
    throw err
  }
  if (address === null) return null
  let endpoint: MetricsEndpoint
  try {
    endpoint = await serveMetrics(address)
  } catch (err) {
    // Only the derived default may move (a restart on a port whose neighbour + 2100 is taken
    // must not fail); an address the operator named fails the start, one line.
    if (args.metrics !== undefined || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    endpoint = await serveMetrics({ ...address, port: 0 })
    log(`metrics: the default port ${address.port} is taken; set --metrics to choose one`)
  }
  log(`metrics for Prometheus at ${endpoint.url}`)
  return endpoint
}

/**
 * Keeps the process up until SIGINT or SIGTERM, then shuts down gracefully: no new
 * connections, requests in flight get SHUTDOWN_GRACE_MS to finish, event channels close;
 * the process exits by then whatever happens. SIGHUP reopens the log file (logrotate).
 */
function stayUp (close: (graceMs?: number) => Promise<void>, metrics: MetricsEndpoint | null): (why: string) => void {
  let closing = false
  const stop = (signal: string): void => {
    if (closing) return
    closing = true
    log(`${signal}: shutting down (requests in flight get up to ${SHUTDOWN_GRACE_MS / 1000} s)`)
    const deadline = setTimeout(() => {
      log('shutdown took too long: exiting')
      process.exit(1)
    }, SHUTDOWN_GRACE_MS + 2000)
    deadline.unref()
    close(SHUTDOWN_GRACE_MS)
      .then(async () => await metrics?.close())
      .then(() => {
        log('shut down')
        processLog?.flush()
        process.exit(0)
      }, (err: unknown) => {
        log(`error: shutdown failed: ${String(err)}`)
        process.exit(1)
      })
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  process.on('SIGHUP', () => {
    processLog?.reopen()
    log('SIGHUP: log file reopened')
  })
  return stop
}

/** The demo's lock state: beside its data folder, as its pid file and log are. */
function demoLockStateDir (dataDir: string): string {
  return path.join(path.dirname(dataDir), 'lock-state')
}

/** The pid of a live demo started earlier, or null. */
function readPid (pidFile: string): number | null {
  try {
    const pid = Number(fs.readFileSync(pidFile, 'utf8'))
    return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : null
  } catch {
    return null
  }
}

/**
 * The cluster key a server checks credentials with (made at the first start), or none with
 * --insecure, which is said loudly: anyone who reaches the port may then do anything.
 */
function serverAuth (args: { clusterKey: string, revokedTokens?: string, insecure: boolean }): ServerAuth | undefined {
  if (args.insecure) {
    log('WARNING: --insecure: no cluster key, no credentials checked; anyone who can reach this port can read, change and remove every file')
    return undefined
  }
  const { key, created } = ClusterKey.loadOrCreate(args.clusterKey)
  log(`cluster key ${args.clusterKey}${created ? ' (made now: copy it, mode 0600, to every other server machine)' : ''}`)
  return { key, revokedFile: args.revokedTokens }
}

/**
 * --tls-cert and --tls-key: the server speaks https with them (both or neither); --ca: the
 * CA its calls to the other servers trust. Read before anything listens.
 */
function serverTls (args: { tlsCert?: string, tlsKey?: string, ca?: string }): ServerTls | undefined {
  trustClusterCa(args.ca)
  if (args.tlsCert === undefined && args.tlsKey === undefined) return undefined
  if (args.tlsCert === undefined || args.tlsKey === undefined) throw new CliError('--tls-cert and --tls-key go together: give both, or neither for plain http')
  const tls = { cert: readPem(args.tlsCert, 'certificate', 'CERTIFICATE'), key: readPem(args.tlsKey, 'private key', 'PRIVATE KEY') }
  log(`https with the certificate ${args.tlsCert}`)
  return tls
}

/** Writes a client token (mode 0600) where dfs and dfs-mount look for one. */
function writeToken (file: string, token: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, token + '\n', { mode: 0o600 })
  fs.chmodSync(file, 0o600)
}

function listening (what: string, server: RunningServer, requested: number): void {
  log(`${what} listening on ${server.url}${requested === 0 ? ' (port 0: picked a free one)' : ''}`)
}

async function main (): Promise<void> {
  await yargs(process.argv.slice(2))
    .scriptName('dfs-serve')
    .middleware(refuseRepeatedOptions)
    .usage('$0 <server> [options]\n\nRuns dfs server daemons. An option that takes a value can also be set as DFS_<OPTION>; each server reads only the variables of its own options (see $0 <server> --help).')
    .command('directory', 'the directory server: maps paths to file servers', (y) => y.options(directoryServerOptions()),
    async (args) => {
      startLogging('directory', args)
      const server = await startDirectoryServer({ port: args.port, host: args.host, stateDir: args.stateDir, lockUrl: args.lock, log, auth: serverAuth(args), tls: serverTls(args) })
      log(`directory server state in ${args.stateDir}`)
      // Metrics before the "listening" line: whoever waits for that line may signal at once.
      const metrics = await startMetrics(args, args.port)
      listening('directory server', server, args.port)
      stayUp(server.close, metrics)
    })
    .command('lock', 'the lock server: one writer per file, with leases', (y) => y.options(lockServerOptions()),
    async (args) => {
      startLogging('lock', args)
      if (!Number.isFinite(args.advisoryGraceMs) || args.advisoryGraceMs < 0) throw new CliError(`--advisory-grace-ms must be a number of milliseconds, 0 or more, not ${String(args.advisoryGraceMs)}`)
      const server = await startLockServer({
        port: args.port, host: args.host, leaseMs: args.leaseMs, advisoryGraceMs: args.advisoryGraceMs, stateDir: args.stateDir, log, auth: serverAuth(args), tls: serverTls(args)
      })
      log(`lock state in ${args.stateDir}`)
      const metrics = await startMetrics(args, args.port)
      listening('lock server', server, args.port)
      stayUp(server.close, metrics)
    })
    .command('file', 'a file server: serves the files under --root', (y) => y.options(fileServerOptions()),
    async (args) => {
      startLogging('file', args)
      // Drained (dfs-serve drain) and gone from the directory: the process ends, exit 0.
      let leave = (): void => {}
      const server = await startFileServer({
        root: args.root, port: args.port, host: args.host, directoryUrl: args.directory, lockUrl: args.lock, publicUrl: args.publicUrl, log, auth: serverAuth(args), tls: serverTls(args), onLeft: () => leave()
      })
      const metrics = await startMetrics(args, args.port)
      listening(`file server ${server.machineId}`, server, args.port)
      const stop = stayUp(server.close, metrics)
      leave = () => stop('drained and left the cluster')
    })
    .command('demo', 'a directory server, a lock server and two file servers with sample data, in one process', (y) => y.options(demoOptions()),
    async (args) => {
      const pidFile = path.join(path.dirname(args.dataDir), 'demo.pid')
      const running = readPid(pidFile)
      if (args.stop) {
        if (running === null) throw new CliError('no demo cluster is running')
        process.kill(running, 'SIGTERM')
        process.stdout.write(`stopped the demo cluster (pid ${running})\n`)
        return
      }
      if (args.detach) {
        if (running !== null) {
          process.stdout.write(`the demo cluster is already running (pid ${running})\n`)
          return
        }
        const logFile = path.join(path.dirname(args.dataDir), 'demo.log')
        const childArgs = process.argv.slice(2).filter((a) => a !== '--detach')
        const pid = await startDetached(childArgs, logFile)
        process.stdout.write(`demo cluster running (pid ${pid}, log ${logFile}); stop it with: dfs-serve demo --stop\n`)
        return
      }
      startLogging('demo', args)
      // Beside the data it numbers, and reset with it: fresh roots are new servers.
      const directoryStateDir = path.join(path.dirname(args.dataDir), 'directory-state')
      if (args.reset) fs.rmSync(directoryStateDir, { recursive: true, force: true })
      const roots = await prepareDemoData(path.join(repoRoot, 'sample-data'), args.dataDir, args.reset)
      log(`demo data in ${args.dataDir}${args.reset ? ' (reset from sample-data/)' : ''}`)
      // Next to the data it locks, and reset with it: keys of files a reset removed would linger.
      const lockStateDir = demoLockStateDir(args.dataDir)
      if (args.reset) fs.rmSync(lockStateDir, { recursive: true, force: true })
      // The demo's own key, beside its data; and a client token where dfs and dfs-mount look
      // (DEMO_TOKEN_FILE for the default data folder), so the quick start needs no step for it.
      const { key } = ClusterKey.loadOrCreate(path.join(path.dirname(args.dataDir), 'cluster.key'))
      const tokenFile = path.resolve(args.dataDir) === DEFAULT_DEMO_DATA_DIR ? DEMO_TOKEN_FILE : path.join(path.dirname(args.dataDir), 'client.token')
      writeToken(tokenFile, key.clientToken('demo', { ttlMs: 30 * 86_400_000 }).token)
      log(`client token in ${tokenFile}${tokenFile === DEMO_TOKEN_FILE ? '' : ' (point DFS_TOKEN_FILE at it)'}`)
      const cluster = await startCluster({
        roots, host: args.host, directoryPort: args.directoryPort, lockPort: args.lockPort, firstFilePort: args.filePort, leaseMs: args.leaseMs, directoryStateDir, lockStateDir, log, auth: { key }
      })
      const metrics = await startMetrics(args, args.directoryPort)
      listening('directory server', cluster.directory, args.directoryPort)
      listening('lock server', cluster.lock, args.lockPort)
      for (const server of cluster.fileServers) listening(`file server ${server.machineId}`, server, args.filePort)
      log('demo cluster ready')
      fs.writeFileSync(pidFile, String(process.pid))
      stayUp(async (graceMs) => {
        fs.rmSync(pidFile, { force: true })
        await cluster.close(graceMs)
      }, metrics)
      notifyParent({ ready: true })
    })
    .command('forget-server <machineId>', 'drop a file server that is down for good, and every name it held, from the directory server',
      (y) => y.options(forgetServerOptions()).positional('machineId', { type: 'number', demandOption: true, describe: 'its machine id (see GET /servers)' }),
      async (args) => {
        if (!Number.isSafeInteger(args.machineId) || args.machineId < 1) throw new CliError(`not a machine id: ${args.machineId}`)
        // An operator's call: made with the cluster key, on the machine that has it.
        const credential = ClusterKey.load(args.clusterKey).serverCredential('operator')
        trustClusterCa(args.ca)
        const directory = new DirectoryApi(new Transport('directory server', args.directory, args.timeoutMs, { credential }))
        const answer = await directory.forgetServer(args.machineId)
        process.stdout.write(`forgot file server ${answer.machineId} and its ${answer.entries} entries\n`)
      })
    .command('drain <server>', 'move every file of a file server to the others, then let it leave the cluster (it exits)',
      (y) => y.options(drainOptions()).positional('server', { type: 'string', demandOption: true, describe: 'its machine id or URL (see dfs status)' }),
      async (args) => {
        // An operator's call: made with the cluster key, on the machine that has it.
        const credential = ClusterKey.load(args.clusterKey).serverCredential('operator')
        await drainCommand({
          directory: args.directory, timeoutMs: args.timeoutMs, server: args.server, cancel: args.cancel, caller: { credential }, out: (line) => process.stdout.write(line + '\n')
        })
      })
    .command('token', 'print a client token for dfs and dfs-mount (put it in ~/.config/dfs/token or DFS_TOKEN)', (y) => y.options(tokenOptions()),
      (args) => {
        const ttlMs = parseDuration(args.ttl)
        if (ttlMs === null) throw new CliError(`--ttl must be a duration such as 90s, 15m, 12h or 30d, not "${args.ttl}"`)
        const name = args.name ?? os.userInfo().username
        if (!/^[A-Za-z0-9_.@-]{1,64}$/.test(name)) throw new CliError('--name must be 1 to 64 letters, digits, or . _ @ -')
        const { token, claims } = ClusterKey.load(args.clusterKey).clientToken(name, { readOnly: args.readOnly, ttlMs })
        process.stdout.write(token + '\n')
        process.stderr.write(`token ${claims.jti} for ${name} (${args.readOnly ? 'read-only' : 'read and write'}), valid until ${new Date(claims.exp * 1000).toISOString()}; ` +
          `to revoke it, add the line ${claims.jti} to the servers' --revoked-tokens file\n`)
      })
    .demandCommand(1, 'name a server to run: directory, lock, file or demo')
    .strict()
    .fail((message, err) => {
      throw err ?? new CliError(message)
    })
    .help()
    .parseAsync()
}

/** A taken port is a likely mistake (dfs already running): say so in one line. */
function explained (err: unknown): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') return err
  const port = (err as { port?: number }).port
  return new CliError(`port ${port ?? ''} is in use: is dfs already running? Pick another port (0 picks a free one)`)
}

runMain('dfs-serve', async () => {
  try {
    await main()
  } catch (err) {
    const shown = explained(err)
    notifyParent({ error: shown instanceof Error ? shown.message : String(shown) })
    throw shown
  }
})
