import type { Options } from 'yargs'
import {
  ADVISORY_GRACE_MS, DEFAULT_CACHE_BYTES, DEFAULT_CACHE_DIR, DEFAULT_CLUSTER_KEY_FILE, DEFAULT_DEMO_DATA_DIR, DEFAULT_DIRECTORY_STATE_DIR, DEFAULT_DIRECTORY_URL, DEFAULT_HOST, DEFAULT_LEASE_MS,
  DEFAULT_LOCK_STATE_DIR, DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_LOCK_URL, DEFAULT_PORTS, DEFAULT_READ_WAIT_MS, DEFAULT_SOFT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS
} from '../shared/defaults'
import { CliError } from './common'
import { formatByteSize } from './byteSize'
import { MOUNT_FLAGS_HELP } from './mountFlags'

/*
 * Every option of dfs, dfs-mount and dfs-serve, declared once, and which of them each
 * command takes. An option that takes a value can also be set in the environment as
 * DFS_<OPTION> (--cache-dir: DFS_CACHE_DIR); a command reads the variables of its own
 * options and no others. (yargs' .env('DFS') read every DFS_* variable as an option, so
 * with .strict() a DFS_DIRECTORY exported for dfs made dfs-serve directory fail with
 * "Unknown argument: directory".) Switches such as --detach or --stop say what to do this
 * time, not how this machine is set up, so they come from the command line only.
 */

const directory = { type: 'string', default: DEFAULT_DIRECTORY_URL, describe: 'directory server URL' } as const
const lock = { type: 'string', default: DEFAULT_LOCK_URL, describe: 'lock server URL' } as const
const cacheDir = { type: 'string', default: DEFAULT_CACHE_DIR, describe: 'local cache folder' } as const
const cacheMaxSize = {
  type: 'string',
  default: formatByteSize(DEFAULT_CACHE_BYTES),
  describe: 'most bytes of copies a mount (or a dfs command) keeps in its cache folder, as 500M or 2G; older copies go first, and a larger file is read without one being kept'
} as const
const timeoutMs = { type: 'number', default: DEFAULT_TIMEOUT_MS, describe: 'how long a server may stay silent before a request fails (EIO on a mount)' } as const
const lockTimeoutMs = { type: 'number', default: DEFAULT_LOCK_TIMEOUT_MS, describe: 'how long a write waits for a file\'s lock' } as const
const host = { type: 'string', default: DEFAULT_HOST, describe: 'address to listen on (0.0.0.0 for every interface)' } as const
const leaseMs = { type: 'number', default: DEFAULT_LEASE_MS, describe: 'lease of a lock when the client names none' } as const
const advisoryGraceMs = {
  type: 'number',
  default: ADVISORY_GRACE_MS,
  describe: 'after a restart, how long fcntl and flock locks wait at most for the mounts that held some to take theirs back (it ends once all have)'
} as const
const lockStateDir = { type: 'string', default: DEFAULT_LOCK_STATE_DIR, describe: 'folder where the lock server keeps keys, leases and the fencing counter over restarts (one lock server per folder)' } as const
const root = { type: 'string', demandOption: true, describe: 'folder whose files this server holds' } as const
const publicUrl = { type: 'string', describe: 'URL clients use to reach this server (default: the one it listens on)' } as const
const dataDir = { type: 'string', default: DEFAULT_DEMO_DATA_DIR, describe: 'working copy of the sample data (kept between runs; the lock state is kept next to it, in lock-state/)' } as const
const softTimeoutMs = { type: 'number', default: DEFAULT_SOFT_TIMEOUT_MS, describe: 'with --soft: how long a close or fsync keeps trying to store written data before EIO' } as const
const readWaitMs = { type: 'number', default: DEFAULT_READ_WAIT_MS, describe: 'how long a read (stat, open) waits for a file server that does not answer before EIO (a server marked down fails reads at once); writes wait until stored' } as const
const directoryStateDir = { type: 'string', default: DEFAULT_DIRECTORY_STATE_DIR, describe: 'folder where the directory server keeps which machine id is which file server\'s' } as const
const tokenFile = { type: 'string', describe: 'file holding the client token (dfs-serve token makes one); DFS_TOKEN may hold the token itself instead. Default: ~/.config/dfs/token, else the demo\'s' } as const
const clusterKey = { type: 'string', default: DEFAULT_CLUSTER_KEY_FILE, describe: 'the cluster key file, made (mode 0600) if there is none; copy it to every server machine, never to clients' } as const
const revokedTokens = { type: 'string', describe: 'deny list: a file with one token id or sub:NAME per line, read again when it changes' } as const
const mountLog = { type: 'string', describe: 'log file of the background daemon (default: next to its state file; reopened on SIGHUP, for logrotate)' } as const
const serverLog = { type: 'string', describe: 'also write the log as JSON lines to this file (reopened on SIGHUP, for logrotate)' } as const
const logLevel = { type: 'string', choices: ['debug', 'info', 'warn', 'error'], default: 'info', describe: 'least level logged; debug adds a line per request' } as const
const serverMetrics = { type: 'string', describe: 'HOST:PORT (or PORT) to serve GET /metrics on for Prometheus, or off (default: 127.0.0.1 on this server\'s port + 2100; a free one with --port 0)' } as const
const mountMetrics = { type: 'string', default: 'off', describe: 'HOST:PORT (or PORT, on 127.0.0.1) to serve GET /metrics on for Prometheus; off by default' } as const
const mountLogLevel = { ...logLevel, describe: 'least level logged; debug adds a line per file system operation (with its request id)' } as const
const ca = { type: 'string', describe: 'a CA certificate (PEM) to trust for https server URLs, besides the public ones: a cluster with its own CA' } as const
const tlsCert = { type: 'string', describe: 'certificate (PEM) to serve https with; needs --tls-key' } as const
const tlsKey = { type: 'string', describe: 'private key (PEM) of --tls-cert' } as const
const statusLock = { ...lock, describe: 'lock server URL: for the locks on the status page and in dfs status, and named to clients not given --lock (a loopback URL as the directory\'s own host)' } as const
/** A client's and a file server's: without it, the one the directory server names (src/shared/clusterUrls.ts). */
const clientLock = { type: 'string', describe: 'lock server URL; without it, the one the directory server names' } as const

function port (fallback: number): { type: 'number', default: number, describe: string } {
  return { type: 'number', default: fallback, describe: 'port to listen on (0 picks a free one)' }
}

const foreground = { type: 'boolean', default: false, describe: 'stay attached; Ctrl-C or SIGTERM unmounts' } as const
const debug = { type: 'boolean', default: false, describe: 'log every FUSE request' } as const
const background = {
  type: 'boolean',
  default: false,
  describe: 'when the directory server does not answer, return at once and go on trying in the background, mounting once it answers (NFS\'s bg: for fstab at boot)'
} as const
const soft = {
  type: 'boolean',
  default: false,
  describe: 'a soft mount: when a server does not answer, close and fsync give up with EIO after --soft-timeout-ms (by default they wait and retry until the data is stored, as a hard NFS mount does)'
} as const
/** -o: sshfs' and rclone's mount options (src/cli/mountFlags.ts), repeatable; not from the environment (says what this mount is). */
const mountFlagLists = { type: 'string', array: true, default: [] as string[], describe: MOUNT_FLAGS_HELP } as const
const reset = { type: 'boolean', default: false, describe: 'start again from a fresh copy of the sample data' } as const
const detach = { type: 'boolean', default: false, describe: 'run in the background; returns once the cluster is ready' } as const
const stop = { type: 'boolean', default: false, describe: 'stop a demo cluster started with --detach' } as const
const insecure = { type: 'boolean', default: false, describe: 'run without a cluster key: anyone who reaches the port may do anything (logs a warning)' } as const
const readOnly = { type: 'boolean', default: false, describe: 'a token that may read and list, not change or lock' } as const
const ttl = { type: 'string', default: '30d', describe: 'how long the token is valid: 90s, 15m, 12h, 30d' } as const
const tokenName = { type: 'string', describe: 'the token\'s subject: who holds it, shown as the holder of its locks (default: your user name)' } as const

/** Options that take a list, given as often as one likes: -o (mountFlagLists). */
const LIST_OPTIONS = new Set(['_', 'o'])

/**
 * yargs middleware for every CLI: an option that takes one value, given twice
 * (`--cache-dir a --cache-dir b`), is a mistake said in one line; yargs would hand on both
 * as a list, which failed later as an unexpected error.
 */
export function refuseRepeatedOptions (argv: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(argv)) {
    // yargs keeps each option under its name and its camelCase alias: the name is enough.
    if (!Array.isArray(value) || LIST_OPTIONS.has(name) || /[A-Z]/.test(name)) continue
    throw new CliError(`${name.length === 1 ? '-' : '--'}${name} was given ${value.length} times (${value.map(String).join(', ')}): give it once`)
  }
}

/** The environment variable of an option: cache-dir is DFS_CACHE_DIR. */
function envNameOf (option: string): string {
  return 'DFS_' + option.toUpperCase().replace(/-/g, '_')
}

function parsedEnv (variable: string, raw: string, type: Options['type']): string | number {
  if (type !== 'number') return raw
  const value = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(value)) throw new CliError(`${variable} must be a number, not "${raw}"`)
  return value
}

/**
 * The options, each named with its DFS_* variable in --help, and with that variable's
 * value as the default where it is set: the command line still wins over the environment.
 * Reads only these options' variables. An empty variable counts as unset.
 */
function withEnvironment<O extends Record<string, Options>> (declared: O, env: NodeJS.ProcessEnv = process.env): O {
  const resolved: Record<string, Options> = {}
  for (const [name, option] of Object.entries(declared)) {
    const variable = envNameOf(name)
    const described: Options = { ...option, describe: `${option.describe ?? ''} (${variable})` }
    const raw = env[variable]
    resolved[name] = raw === undefined || raw === ''
      ? described
      : { ...described, default: parsedEnv(variable, raw, option.type), defaultDescription: `${raw} (from ${variable})` }
  }
  return resolved as O
}

/** What every server process takes to be operated: its metrics address and its log. */
function operatorOptions () {
  return { metrics: serverMetrics, log: serverLog, 'log-level': logLevel }
}

/*
 * The options of each command, for yargs' .options(). Their return types are left to
 * inference on purpose: yargs derives the types of the parsed arguments from them.
 */

/** Where a client finds the cluster, its credential and how long it waits: dfs and dfs-mount. */
export function clientOptions () {
  return withEnvironment({ directory, lock: clientLock, 'cache-dir': cacheDir, 'cache-max-size': cacheMaxSize, 'timeout-ms': timeoutMs, 'lock-timeout-ms': lockTimeoutMs, 'token-file': tokenFile, ca })
}

/** What every server takes to be a member of the cluster, or to run open. */
function securityOptions () {
  return { ...withEnvironment({ 'cluster-key': clusterKey, 'revoked-tokens': revokedTokens, 'tls-cert': tlsCert, 'tls-key': tlsKey, ca }), insecure }
}

/** dfs-serve token: a client credential, printed on stdout. */
export function tokenOptions () {
  return { ...withEnvironment({ 'cluster-key': clusterKey, name: tokenName, ttl }), 'read-only': readOnly }
}

export function mountOptions () {
  return { ...clientOptions(), ...withEnvironment({ log: mountLog, 'log-level': mountLogLevel, 'soft-timeout-ms': softTimeoutMs, 'read-wait-ms': readWaitMs, metrics: mountMetrics }), foreground, debug, soft, bg: background, o: mountFlagLists }
}

export function directoryServerOptions () {
  return { ...withEnvironment({ port: port(DEFAULT_PORTS.directory), host, 'state-dir': directoryStateDir, lock: statusLock, ...operatorOptions() }), ...securityOptions() }
}

/** dfs-serve forget-server: only where the directory server is. */
export function forgetServerOptions () {
  return withEnvironment({ directory, 'timeout-ms': timeoutMs, 'cluster-key': clusterKey, ca })
}

const cancelDrain = { type: 'boolean', default: false, describe: 'put a draining server back in service (its moved files stay where they went)' } as const

/** dfs-serve drain: where the directory server is, with the cluster key, as forget-server. */
export function drainOptions () {
  return { ...forgetServerOptions(), cancel: cancelDrain }
}

export function lockServerOptions () {
  return { ...withEnvironment({ port: port(DEFAULT_PORTS.lock), host, 'lease-ms': leaseMs, 'advisory-grace-ms': advisoryGraceMs, 'state-dir': lockStateDir, ...operatorOptions() }), ...securityOptions() }
}

export function fileServerOptions () {
  return { ...withEnvironment({ root, port: port(DEFAULT_PORTS.firstFile), host, directory, lock: clientLock, 'public-url': publicUrl, ...operatorOptions() }), ...securityOptions() }
}

export function demoOptions () {
  return {
    ...withEnvironment({
      'data-dir': dataDir,
      host,
      'directory-port': port(DEFAULT_PORTS.directory),
      'lock-port': port(DEFAULT_PORTS.lock),
      'file-port': port(DEFAULT_PORTS.firstFile),
      'lease-ms': leaseMs,
      ...operatorOptions()
    }),
    reset,
    detach,
    stop
  }
}
