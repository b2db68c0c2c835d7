import fs from 'node:fs'
import path from 'node:path'
import yargs from 'yargs/yargs'
import { DEFAULT_PORTS, DEFAULT_LEASE_MS } from '../shared/protocol'
import type { RunningServer } from '../../servers/common/http'
import { startDirectoryServer } from '../../servers/directory/server'
import { startLockServer } from '../../servers/lock/server'
import { startFileServer } from '../../servers/file/server'
import { prepareDemoData, startCluster } from '../../servers/cluster'
import { CliError, runMain } from './common'
import { isAlive, notifyParent, startDetached } from './daemon'

const repoRoot = path.resolve(__dirname, '..', '..', '..')

function log (line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`)
}

/** Keeps the process up until SIGINT or SIGTERM, then closes the servers. */
function stayUp (close: () => Promise<void>): void {
  let closing = false
  const stop = (signal: string): void => {
    if (closing) return
    closing = true
    log(`${signal}: shutting down`)
    close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
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

function listening (what: string, server: RunningServer, requested: number): void {
  log(`${what} listening on ${server.url}${requested === 0 ? ' (port 0: picked a free one)' : ''}`)
}

function portOption (fallback: number): { type: 'number', default: number, describe: string } {
  return { type: 'number', default: fallback, describe: 'port to listen on (0 picks a free one)' }
}

const hostOption = { type: 'string', default: '127.0.0.1', describe: 'address to listen on (0.0.0.0 for every interface)' } as const

async function main (): Promise<void> {
  await yargs(process.argv.slice(2))
    .scriptName('dfs-serve')
    .env('DFS')
    .usage('$0 <server> [options]\n\nRuns dfs server daemons. Every option can also be set as DFS_<OPTION> (DFS_DIRECTORY, DFS_LOCK, DFS_PORT, ...).')
    .command('directory', 'the directory server: maps paths to file servers', (y) => y
      .option('port', portOption(DEFAULT_PORTS.directory))
      .option('host', hostOption),
    async (args) => {
      const server = await startDirectoryServer({ port: args.port, host: args.host, log })
      listening('directory server', server, args.port)
      stayUp(server.close)
    })
    .command('lock', 'the lock server: one writer per file, with leases', (y) => y
      .option('port', portOption(DEFAULT_PORTS.lock))
      .option('host', hostOption)
      .option('lease-ms', { type: 'number', default: DEFAULT_LEASE_MS, describe: 'lease of a lock when the client names none' }),
    async (args) => {
      const server = await startLockServer({ port: args.port, host: args.host, leaseMs: args.leaseMs, log })
      listening('lock server', server, args.port)
      stayUp(server.close)
    })
    .command('file', 'a file server: serves the files under --root', (y) => y
      .option('root', { type: 'string', demandOption: true, describe: 'folder whose files this server holds' })
      .option('port', portOption(DEFAULT_PORTS.firstFile))
      .option('host', hostOption)
      .option('directory', { type: 'string', default: `http://127.0.0.1:${DEFAULT_PORTS.directory}`, describe: 'directory server URL' })
      .option('lock', { type: 'string', default: `http://127.0.0.1:${DEFAULT_PORTS.lock}`, describe: 'lock server URL' })
      .option('public-url', { type: 'string', describe: 'URL clients use to reach this server (default: the one it listens on)' }),
    async (args) => {
      const server = await startFileServer({
        root: args.root, port: args.port, host: args.host, directoryUrl: args.directory, lockUrl: args.lock, publicUrl: args.publicUrl, log
      })
      listening(`file server ${server.machineId}`, server, args.port)
      stayUp(server.close)
    })
    .command('demo', 'a directory server, a lock server and two file servers with sample data, in one process', (y) => y
      .option('data-dir', { type: 'string', default: path.join(repoRoot, '.demo', 'data'), describe: 'working copy of the sample data (kept between runs)' })
      .option('reset', { type: 'boolean', default: false, describe: 'start again from a fresh copy of the sample data' })
      .option('host', hostOption)
      .option('directory-port', portOption(DEFAULT_PORTS.directory))
      .option('lock-port', portOption(DEFAULT_PORTS.lock))
      .option('file-port', portOption(DEFAULT_PORTS.firstFile))
      .option('lease-ms', { type: 'number', default: DEFAULT_LEASE_MS })
      .option('detach', { type: 'boolean', default: false, describe: 'run in the background; returns once the cluster is ready' })
      .option('stop', { type: 'boolean', default: false, describe: 'stop a demo cluster started with --detach' }),
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
      const roots = await prepareDemoData(path.join(repoRoot, 'sample-data'), args.dataDir, args.reset)
      log(`demo data in ${args.dataDir}${args.reset ? ' (reset from sample-data/)' : ''}`)
      const cluster = await startCluster({
        roots, host: args.host, directoryPort: args.directoryPort, lockPort: args.lockPort, firstFilePort: args.filePort, leaseMs: args.leaseMs, log
      })
      listening('directory server', cluster.directory, args.directoryPort)
      listening('lock server', cluster.lock, args.lockPort)
      for (const server of cluster.fileServers) listening(`file server ${server.machineId}`, server, args.filePort)
      log('demo cluster ready')
      fs.writeFileSync(pidFile, String(process.pid))
      stayUp(async () => {
        fs.rmSync(pidFile, { force: true })
        await cluster.close()
      })
      notifyParent({ ready: true })
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
