/**
 * The wire protocol shared by the three servers and the client proxy: routes, headers,
 * request and answer bodies. docs/protocol.md describes the same in prose; keep them in step.
 */

export const DEFAULT_PORTS = { directory: 7070, lock: 7071, firstFile: 7080 } as const

export const DEFAULT_LEASE_MS = 30_000

export type EntryKind = 'file' | 'dir'

/** What a file server knows of one of its files (or empty folders). */
export interface FileMeta {
  path: string
  kind: EntryKind
  version: number
  size: number
  mtimeMs: number
}

// ---- directory server -------------------------------------------------------

export const DirectoryRoutes = {
  register: '/servers', // POST RegisterRequest -> RegisterAnswer
  servers: '/servers', // GET -> ServersAnswer
  reportFiles: (machineId: number | string) => `/servers/${machineId}/files`, // PUT FileReport -> FileReportAnswer
  lookup: '/lookup', // GET ?path= -> LookupAnswer
  list: '/list', // GET ?path= -> DirectoryListAnswer
  health: '/health'
} as const

export interface RegisterRequest {
  /** Where clients reach this file server, e.g. http://127.0.0.1:7080 */
  url: string
}

export interface RegisterAnswer {
  machineId: number
}

export interface ServerInfo {
  machineId: number
  url: string
}

export interface ServersAnswer {
  servers: ServerInfo[]
}

export interface FileReport {
  files: FileMeta[]
}

export interface FileReportAnswer {
  machineId: number
  files: number
}

export interface LookupAnswer {
  path: string
  kind: EntryKind
  /** The file server holding a file; absent for folders, which may span servers. */
  server?: ServerInfo
}

export interface DirectoryEntry {
  name: string
  kind: EntryKind
  /** File servers holding this entry (one for a file; every server with content below for a folder). */
  machineIds: number[]
}

export interface DirectoryListAnswer {
  path: string
  entries: DirectoryEntry[]
  servers: ServerInfo[]
}

// ---- lock server ------------------------------------------------------------

export const LockRoutes = {
  keys: '/keys', // POST CreateKeysRequest -> CreateKeysAnswer; DELETE ?path=
  acquire: '/locks/acquire', // POST AcquireRequest -> LockLease | 423 LOCKED
  renew: '/locks/renew', // POST LeaseRequest -> LockLease | 409 LEASE_INVALID
  release: '/locks/release', // POST LeaseRequest -> ReleaseAnswer | 409 LEASE_INVALID
  check: '/locks/check', // GET ?path=&token= -> CheckAnswer | 409 LEASE_INVALID
  status: '/locks', // GET ?path= -> LockStatus
  health: '/health'
} as const

export interface CreateKeysRequest {
  paths: string[]
}

export interface CreateKeysAnswer {
  created: number
}

export interface AcquireRequest {
  path: string
  /** Who asks, shown to others who find the key taken (host:pid:random). */
  owner: string
  ttlMs?: number
}

export interface LockLease {
  path: string
  owner: string
  /** Fencing token: grows with every grant, so a file server can refuse a superseded holder. */
  token: number
  ttlMs: number
  expiresAt: number
}

export interface LeaseRequest {
  path: string
  token: number
}

export interface ReleaseAnswer {
  path: string
  released: true
}

export interface CheckAnswer {
  path: string
  valid: true
}

export interface LockStatus {
  path: string
  held: boolean
  owner?: string
  expiresInMs?: number
}

/** Details of a 423 LOCKED error body. */
export interface LockedDetails {
  path: string
  holder: string
  retryAfterMs: number
}

// ---- file server ------------------------------------------------------------

export const FileRoutes = {
  stat: '/stat', // GET ?path= -> FileMeta
  list: '/list', // GET ?path= -> FileListAnswer
  content: '/content', // GET ?path= -> bytes (ETag, X-Dfs-Version); 304 on If-None-Match
  append: '/append', // POST ?path= bytes, X-Dfs-Lock-Token -> FileMeta
  stats: '/stats', // GET -> FileServerStats
  health: '/health'
} as const

export const Headers = {
  version: 'x-dfs-version',
  mtime: 'x-dfs-mtime',
  lockToken: 'x-dfs-lock-token'
} as const

export interface FileListAnswer {
  path: string
  entries: Array<FileMeta & { name: string }>
}

export interface FileServerStats {
  machineId: number | null
  /** GET /content answers that carried a body. */
  contentTransfers: number
  contentBytes: number
  /** GET /content answers of 304: the client's copy was current. */
  notModified: number
  appends: number
}

/** The validator for a cached copy: any change of version, size or mtime makes it stale. */
export function etagOf (meta: Pick<FileMeta, 'version' | 'size' | 'mtimeMs'>): string {
  return `"v${meta.version}-${meta.size}-${Math.floor(meta.mtimeMs)}"`
}
