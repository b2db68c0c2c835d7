import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import yargs from 'yargs/yargs'
import { DfsClient } from '../client/dfsClient'
import { DEFAULT_PREFLIGHT_TIMEOUT_MS } from '../shared/defaults'
import { DirectoryApi, LockApi } from '../shared/api'
import { ServerUnavailableError } from '../shared/errors'
import { lockUrlFromDirectory } from '../shared/clusterUrls'
import { Transport } from '../shared/transport'
import type { CallerIdentity } from '../shared/transport'
import { findFusermount, FuseUnavailableError, INSTALL_HINT, loadFuse } from '../fuse/loadFuse'
import { isMounted, lazyUnmount, mountDfs } from '../fuse/mount'
import type { MountedDfs } from '../fuse/mount'
import { CliError, logLine, runMain } from './common'
import { notifyParent, startDetached } from './daemon'
import { canonicalMountpoint, mountStateOf } from './mountState'
import { mountCacheFolder, STALE_CACHE_MS, sweepCacheRoot } from './cacheFolder'
import { parseByteSize } from './byteSize'
import { clientCaller, trustClusterCa } from './credentials'
import { mountOptions, refuseRepeatedOptions } from './options'
import { startMountLog, tracedOperations } from './mountLog'
import type { LogLevel } from '../../servers/common/logging'
import { fuseConfAllowsOther, parseMountFlags } from './mountFlags'
import { liftOwnOptions, mountTarget } from './mountHelperArgs'
import type { MountFlags } from './mountFlags'
import { MetricsAddressError, parseMetricsAddress, serveMetrics } from '../shared/metrics'
import type { MetricsAddress, MetricsEndpoint } from '../shared/metrics'

function metricsAddressOf (text: string): MetricsAddress | null {
  try {
    return parseMetricsAddress(text)
  } catch (err) {
    if (err instanceof MetricsAddressError) throw new CliError(err.message)
    throw err
  }
}

/** Where fusermount reads whether users may mount with allow_other. */
const FUSE_CONF = '/etc/fuse.conf'

/** Plain lines on standard output until the daemon has started its log (startMountLog). */
let log = (line: string): void => {
  process.stdout.write(`${new Date().toISOString()} ${logLine(line)}\n`)
}

/** The checks that give a one-line answer before anything is started. */
/** fusermount would refuse too, but only after the daemon started, and in words of its own. */
async function checkAllowOther (flags: MountFlags): Promise<void> {
  if (flags.allowOther && process.getuid?.() !== 0 && !fuseConfAllowsOther(await fsp.readFile(FUSE_CONF, 'utf8').catch(() => null))) {
    throw new CliError(`-o allow_other needs a line user_allow_other in ${FUSE_CONF} (ask root to add it), or mount as root`)
  }
}

/**
 * Checks what a mount needs before its daemon starts; answers the lock server's URL: the one
 * given (--lock), or else the one the directory server names.
 */
async function preflight (mountpoint: string, directoryUrl: string, givenLockUrl: string | undefined, caller: CallerIdentity): Promise<{ lockUrl: string }> {
  let stats: fs.Stats
  try {
    stats = await fsp.stat(mountpoint)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTCONN') throw new CliError(`${mountpoint} is a stale mount: run dfs-umount ${mountpoint} first`)
    throw new CliError(`mount point ${mountpoint} does not exist: create it first (mkdir -p ${mountpoint})`)
  }
  if (!stats.isDirectory()) throw new CliError(`mount point ${mountpoint} is not a folder`)
  if (await isMounted(mountpoint)) throw new CliError(`${mountpoint} is already mounted: run dfs-umount ${mountpoint} first`)
  if (!findFusermount()) throw new CliError(`fusermount is missing: ${INSTALL_HINT}`)
  try {
    loadFuse()
  } catch (err) {
    if (err instanceof FuseUnavailableError) throw new CliError(err.message)
    throw err
  }
  const directory = new DirectoryApi(new Transport('directory server', directoryUrl, DEFAULT_PREFLIGHT_TIMEOUT_MS, caller))
  const health = await directory.health()
  // A missing, expired or foreign token: said now, in one line, rather than as EACCES on every file.
  await directory.lookup('/')
  const lockUrl = givenLockUrl ?? lockUrlFromDirectory(health, directoryUrl)
  try {
    await new LockApi(new Transport('lock server', lockUrl, DEFAULT_PREFLIGHT_TIMEOUT_MS, caller)).health()
  } catch (err) {
    // Said now: on a hard mount every write and lock would wait for it, for ever, with no word.
    if (!(err instanceof ServerUnavailableError)) throw err
    const from = givenLockUrl !== undefined ? 'given with --lock' : 'as the directory server names it (give --lock, or the directory\'s --lock, to name another)'
    throw new ServerUnavailableError(`${err.message}; that is the lock server ${from}`, { server: lockUrl }, { cause: err })
  }
  return { lockUrl }
}

/** dfs-mount's own options, and which of them are switches: an -o item may name one (mountHelperArgs.ts). */
function ownOptionNames (): { names: Set<string>, switches: Set<string> } {
  const declared = Object.entries(mountOptions())
  return { names: new Set(declared.map(([name]) => name)), switches: new Set(declared.filter(([, option]) => option.type === 'boolean').map(([name]) => name)) }
}

/** How long a --bg daemon waits between its tries to reach the directory server: doubling from the first to the last. */
const BACKGROUND_RETRY_FIRST_MS = 1000
const BACKGROUND_RETRY_LAST_MS = 30_000

/**
 * The preflight, and with --bg, while the directory server does not answer, again and again
 * (it tells its parent once, which then returns: the boot goes on, and the mount follows).
 * `waiting` runs at the first such failure: the mount point passed every other check by then.
 */
async function preflightWhenUp (background: boolean, mountpoint: string, directoryUrl: string, givenLockUrl: string | undefined, caller: CallerIdentity,
  waiting: () => Promise<void>): Promise<{ lockUrl: string }> {
  let delayMs = BACKGROUND_RETRY_FIRST_MS
  for (let attempt = 0; ; attempt++) {
    try {
      return await preflight(mountpoint, directoryUrl, givenLockUrl, caller)
    } catch (err) {
      if (!background || !(err instanceof ServerUnavailableError)) throw err
      log(`${err.message}: trying again in ${delayMs / 1000} s (--bg); the mount follows once it answers`)
      if (attempt === 0) await waiting()
      notifyParent({ ready: true })
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    delayMs = Math.min(delayMs * 2, BACKGROUND_RETRY_LAST_MS)
  }
}

async function main (): Promise<void> {
  const own = ownOptionNames()
  // As mount(8) runs it (fstab): settings of dfs-mount's own inside -o.
  const argv = liftOwnOptions(process.argv.slice(2), own.names, own.switches)
  const args = await yargs(argv)
    .scriptName('dfs-mount')
    .usage('$0 [directory-url] <mountpoint> [options]\n\nMounts a dfs cluster at MOUNTPOINT. Returns once the mount is ready; the daemon goes on in the background and logs to the file it names. Unmount with dfs-umount MOUNTPOINT. mount(8) and fstab (type fuse.dfs-mount) give the directory server\'s URL first, and may set any option below inside -o: lock=URL,token_file=FILE,soft.')
    .positional('mountpoint', { type: 'string' })
    .demandCommand(1, 'name the mount point: dfs-mount MOUNTPOINT')
    .options(mountOptions())
    .middleware(refuseRepeatedOptions)
    .strict()
    .fail((message, err) => {
      throw err ?? new CliError(message)
    })
    .help()
    .parseAsync()
  const target = mountTarget(args._.map(String), args.directory, argv.some((arg) => arg === '--directory' || arg.startsWith('--directory=')))
  const directoryUrl = target.directoryUrl
  const mountpoint = canonicalMountpoint(target.mountpoint)
  const state = mountStateOf(mountpoint)
  // Checked before anything starts: a typo is one line, not a daemon that dies later.
  const metricsAddress = metricsAddressOf(args.metrics)
  if (!Number.isFinite(args.readWaitMs) || args.readWaitMs < 0) throw new CliError(`--read-wait-ms must be a number of milliseconds, 0 or more, not ${String(args.readWaitMs)}`)
  const flags = parseMountFlags(args.o)
  await checkAllowOther(flags)
  // The mount's own disk steps on its cache are synchronous (src/client/localCache.ts): one on
  // the mount itself would wait for this very process, for ever.
  const cacheBytes = parseByteSize(args.cacheMaxSize, '--cache-max-size')
  const cacheDir = path.resolve(args.cacheDir)
  if (cacheDir === mountpoint || cacheDir.startsWith(mountpoint + path.sep)) {
    throw new CliError(`--cache-dir ${cacheDir} is inside the mount point ${mountpoint}: put the cache on a local disk`)
  }

  trustClusterCa(args.ca)
  if (!args.foreground) {
    let waitingFor: ServerUnavailableError | null = null
    try {
      await preflight(mountpoint, directoryUrl, args.lock, clientCaller(args.tokenFile, directoryUrl))
    } catch (err) {
      // With --bg the daemon goes on trying; anything else is said now, in one line.
      if (!args.bg || !(err instanceof ServerUnavailableError)) throw err
      waitingFor = err
    }
    const logFile = args.log ?? state.logFile
    // The daemon's standard output is its log file too; --log once, or yargs makes it a list.
    const childArgs = argv.concat('--foreground', ...(args.log === undefined ? ['--log', logFile] : []))
    const pid = await startDetached(childArgs, logFile)
    if (await isMounted(mountpoint)) {
      process.stdout.write(`dfs mounted at ${mountpoint} (daemon pid ${pid}, log ${logFile}); unmount with dfs-umount ${mountpoint}\n`)
    } else {
      process.stdout.write(`${waitingFor?.message ?? `the directory server at ${directoryUrl} is not answering`}: dfs-mount goes on trying in the background and mounts ${mountpoint} once the cluster answers (daemon pid ${pid}, log ${logFile})\n`)
    }
    return
  }

  try {
    const mountLog = startMountLog({ file: args.log, level: args.logLevel as LogLevel })
    log = mountLog.log
    const caller = clientCaller(args.tokenFile, directoryUrl)
    // Recorded while it waits too, so that dfs-umount can stop a daemon still waiting for its cluster.
    const recordState = async (): Promise<void> => {
      await fsp.mkdir(path.dirname(state.stateFile), { recursive: true })
      await fsp.writeFile(state.stateFile, JSON.stringify({ pid: process.pid, mountpoint, log: args.log ?? null }))
    }
    const { lockUrl } = await preflightWhenUp(args.bg, mountpoint, directoryUrl, args.lock, caller, recordState)
    if (args.lock === undefined) log(`lock server at ${lockUrl}, as the directory server names it`)
    // A folder of this mount's own inside the cache root (cacheFolder.ts).
    const cacheFolder = mountCacheFolder(cacheDir, directoryUrl, mountpoint)
    const client = new DfsClient({
      caller,
      directoryUrl,
      lockUrl,
      cacheDir: cacheFolder,
      cacheBytes,
      timeoutMs: args.timeoutMs,
      lockTimeoutMs: args.lockTimeoutMs,
      // Hard by default: shells ignore errors of close(), so giving up there would lose data silently.
      retryWritesForMs: args.soft ? args.softTimeoutMs : Infinity,
      // Reads on a hard mount wait out a short outage, but a stopped server must not hang
      // every reader: after --read-wait-ms (2 s), EIO; a server marked down fails them at once.
      retryReadsForMs: args.soft ? 0 : args.readWaitMs,
      // ...but the directory is waited for as writes wait: it answers for every name.
      retryNamespaceReadsForMs: args.soft ? 0 : Infinity,
      // A mount lives long: callbacks save the request of every open and stat of a cached file.
      callbacks: true,
      log
    })
    // Recorded before mounting, so that whoever sees the mount can find its daemon.
    await recordState()
    let mounted: MountedDfs
    try {
      mounted = await mountDfs({
        mountpoint,
        client,
        debug: args.debug,
        kernelFlags: flags.kernel,
        owner: { uid: flags.uid ?? process.getuid?.() ?? 0, gid: flags.gid ?? process.getgid?.() ?? 0 },
        wrapOperations: (operations) => tracedOperations(operations, mountLog.logger)
      })
    } catch (err) {
      await fsp.rm(state.stateFile, { force: true })
      throw err
    }
    let metrics: MetricsEndpoint | null = null
    if (metricsAddress !== null) {
      try {
        metrics = await serveMetrics(metricsAddress)
        log(`metrics for Prometheus at ${metrics.url}`)
      } catch (err) {
        // The mount works without them: say so, and go on serving files.
        log(`error: no metrics at ${args.metrics}: ${(err as Error).message}`)
      }
    }
    // Last: whoever waits for this line (a test, a supervisor) finds the metrics address already said.
    log(`mounted ${directoryUrl} at ${mountpoint} (cache ${cacheFolder})`)
    // In the background: folders of mounts and commands long gone would keep their copies for good.
    sweepCacheRoot(cacheDir).then((removed) => {
      if (removed.length > 0) log(`removed ${removed.length} cache folder(s) unused for ${STALE_CACHE_MS / 86_400_000} days: ${removed.join(', ')}`)
    }, (err: unknown) => log(`could not sweep the cache folder ${cacheDir}: ${err instanceof Error ? err.message : String(err)}`))

    let stopping = false
    const stop = (why: string): void => {
      if (stopping) {
        // A second signal while the first waits to store what programs wrote (its servers
        // are away): the operator gives that up, and it is lost. Said, and done at once.
        if (why === 'SIGINT' || why === 'SIGTERM') {
          log(`${why} again: unmounting ${mountpoint} now; what was written and not yet stored is lost`)
          lazyUnmount(mountpoint).catch(() => {}).finally(() => {
            fs.rmSync(state.stateFile, { force: true })
            mountLog.flush()
            process.exit(1)
          })
        }
        return
      }
      stopping = true
      log(`${why}: unmounting ${mountpoint} (what open files hold is stored first; SIGINT or SIGTERM again gives that up)`)
      clearInterval(watch)
      void metrics?.close()
      mounted.unmount()
        .then(() => log('unmounted'), (err: unknown) => log(`unmount failed: ${String(err)}`))
        .finally(() => {
          fs.rmSync(state.stateFile, { force: true })
          mountLog.flush()
          process.exit(0)
        })
    }
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
    // logrotate renames the --log file and sends SIGHUP: lines from now on go to a new file at its name.
    process.on('SIGHUP', () => {
      mountLog.reopen()
      log('SIGHUP: log file reopened')
    })
    // Someone ran fusermount -u behind our back: nothing left to serve.
    const watch = setInterval(() => {
      isMounted(mountpoint).then((still) => { if (!still) stop('mount went away') }, () => {})
    }, 2000)
    notifyParent({ ready: true })
  } catch (err) {
    notifyParent({ error: err instanceof Error ? err.message : String(err) })
    throw err
  }
}

runMain('dfs-mount', main)
