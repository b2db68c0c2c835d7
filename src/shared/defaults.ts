import os from 'node:os'
import path from 'node:path'

/**
 * Every default a user or a caller can override, in one place: the servers, the client
 * proxy, the CLIs (and their --help) and the benchmark read them from here, so a changed
 * default is changed everywhere at once. Internal tuning constants that nobody sets stay
 * next to the code they tune. Imports nothing from dfs: src/shared is the bottom layer.
 */

/** Servers listen on loopback only unless told otherwise: dfs has no authentication. */
export const DEFAULT_HOST = '127.0.0.1'

/** The documented fixed ports; file servers after the first count up from firstFile. */
export const DEFAULT_PORTS = { directory: 7070, lock: 7071, firstFile: 7080 } as const

export const DEFAULT_DIRECTORY_URL = `http://${DEFAULT_HOST}:${DEFAULT_PORTS.directory}`
export const DEFAULT_LOCK_URL = `http://${DEFAULT_HOST}:${DEFAULT_PORTS.lock}`

/** Lease the lock server grants when the client names none. */
export const DEFAULT_LEASE_MS = 30_000

/** Per request: a server silent for this long is reported as not answering. */
export const DEFAULT_TIMEOUT_MS = 5_000

/**
 * How long a file server may take to start answering a read (stat, listing, the headers of a
 * download; then each silence on the body): shorter than DEFAULT_TIMEOUT_MS, so a hung file
 * server fails a read within 2 s even before the directory has marked it down.
 */
export const DEFAULT_READ_TIMEOUT_MS = 2_000

/**
 * A file server tells the directory it is alive this often (POST /servers/:id/heartbeat).
 * The directory marks it down after DEFAULT_SERVER_DOWN_AFTER_MS without one: five beats,
 * so a slow fsync or a busy event loop costs nothing, while a dead server is noticed in 5 s.
 */
export const DEFAULT_HEARTBEAT_MS = 1_000
export const DEFAULT_SERVER_DOWN_AFTER_MS = 5_000

/** How long a stat or a listing may be answered from the client's memory (an open always asks). */
export const DEFAULT_META_TTL_MS = 1000

/**
 * How long a read (stat, open) on a hard mount waits for a file server that does not answer
 * and is not marked down, before EIO: a restart or a short hang is waited out, a stopped or
 * dead server costs a reader at most this (the data written is never given up: writes wait
 * on). dfs-mount --read-wait-ms changes it; a soft mount waits one read timeout.
 */
export const DEFAULT_READ_WAIT_MS = 2_000

/** How long a soft mount (dfs-mount --soft) keeps trying to store written data before EIO. */
export const DEFAULT_SOFT_TIMEOUT_MS = 60_000

/**
 * How long a client's callbacks count without a renewal: also the longest a stopped or
 * cut-off client can make a writer wait. Clients renew at a third of it.
 */
/**
 * After a restart (its journal had state), a lock server grants no new fcntl or flock lock
 * for this long: the mounts hand back the locks they held (reclaim, over the same route as a
 * delegation's hand-back) when their event channel reopens, within a second or two, and
 * only then may others lock (docs/protocol.md, "Advisory locks").
 */
export const ADVISORY_GRACE_MS = 5_000
export const DEFAULT_CALLBACK_LEASE_MS = 3_000 // at most MAX_CALLBACK_LEASE_MS (protocol.ts)

/** How long a writer waits for a file's lock that someone else holds. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000

/** The client's cache of whole files, per user, where the XDG base directory spec puts caches. */
export const DEFAULT_CACHE_DIR = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'dfs')

/** Disk space the local cache may fill before it evicts the least recently used files. */
export const DEFAULT_CACHE_BYTES = 4 * 1024 ** 3

/** Appends held back longer than this are sent early, so memory stays bounded. */
export const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024

/**
 * Where dfs-serve lock keeps keys, leases and the fencing counter over restarts (its
 * journal), in XDG's place for state. One lock server per folder: a second one refuses it.
 */
export const DEFAULT_LOCK_STATE_DIR = path.join(process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state'), 'dfs', 'lock')

/** Where dfs-mount records each mount's daemon (pid, log), for dfs-umount; XDG's place for state. */
export const DEFAULT_MOUNT_STATE_DIR = path.join(process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state'), 'dfs', 'mounts')

/**
 * Where the directory server keeps which machine id belongs to which file server (the only
 * state it cannot rebuild from the file servers' reports); XDG's place for state.
 */
export const DEFAULT_DIRECTORY_STATE_DIR = path.join(process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state'), 'dfs', 'directory')

/** Where a user's dfs settings live, as the XDG base directory spec has it. */
const CONFIG_DIR = path.join(process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'), 'dfs')

/** The cluster key a server loads, or makes at its first start (mode 0600). Servers only: clients never read it. */
export const DEFAULT_CLUSTER_KEY_FILE = path.join(CONFIG_DIR, 'cluster.key')

/** Where dfs and dfs-mount read their client token (made by dfs-serve token) unless DFS_TOKEN holds one. */
export const DEFAULT_TOKEN_FILE = path.join(CONFIG_DIR, 'token')

/** The demo cluster's working copy of sample-data/, inside the checkout (this file runs from dist/src/shared). */
export const DEFAULT_DEMO_DATA_DIR = path.resolve(__dirname, '..', '..', '..', '.demo', 'data')

/**
 * The client token the demo writes (beside its data): dfs and dfs-mount read it when there
 * is no DEFAULT_TOKEN_FILE and they call the demo's address (DEFAULT_DIRECTORY_URL), so the
 * quick start needs no step of its own.
 */
export const DEMO_TOKEN_FILE = path.resolve(__dirname, '..', '..', '..', '.demo', 'client.token')

/** How long dfs-mount waits for the directory server's health check before it gives up. */
export const DEFAULT_PREFLIGHT_TIMEOUT_MS = 3_000

/** The client proxy's options that have a default (see DfsClientOptions). */
export const defaultClientOptions = {
  directoryUrl: DEFAULT_DIRECTORY_URL,
  lockUrl: DEFAULT_LOCK_URL,
  cacheDir: DEFAULT_CACHE_DIR,
  timeoutMs: DEFAULT_TIMEOUT_MS,
  lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS
}
