/**
 * The wire protocol shared by the three servers and the client proxy: routes, headers,
 * request and answer bodies. docs/protocol.md describes the same in prose; keep them in step.
 */

/**
 * The version of this protocol. Every call and every answer carries it (X-Dfs-Protocol) and
 * /health states it; a peer that speaks another one is refused with a clear message.
 */
export const PROTOCOL_VERSION = 2

/** What every server's GET /health answers. */
export interface HealthAnswer {
  service: 'directory' | 'lock' | 'file'
  protocol: number
  /** Changes when the server restarts (its in-memory state starts empty). */
  bootId?: string
  [detail: string]: unknown
}

export type EntryKind = 'file' | 'dir'

/**
 * What a file server holds at a path. The directory server maps a symbolic link as a
 * 'file' (a name exactly one file server holds); only the file server tells it apart.
 */
export type MetaKind = EntryKind | 'symlink'

/** What a file server knows of one of its files (or empty folders). */
export interface FileMeta {
  path: string
  kind: MetaKind
  version: number
  /** Bytes; a folder 0; a symbolic link the length of its target in UTF-8 bytes (as lstat says). */
  size: number
  mtimeMs: number
  /**
   * Permission bits (e.g. 0o644) as dfs keeps them (what chmod or create asked for, even
   * where the server's disk needs more bits); 0o777 for a link; absent where unknown.
   */
  mode?: number
  /** A symbolic link's target, as it was given: never resolved or followed by a server. */
  target?: string
}

// ---- directory server -------------------------------------------------------

export const DirectoryRoutes = {
  register: '/servers', // POST RegisterRequest -> RegisterAnswer
  servers: '/servers', // GET -> ServersAnswer
  server: (machineId: number | string) => `/servers/${machineId}`, // DELETE -> ForgetServerAnswer (an operator forgets a dead server)
  heartbeat: (machineId: number | string) => `/servers/${machineId}/heartbeat`, // POST HeartbeatRequest -> HeartbeatAnswer
  reportFiles: (machineId: number | string) => `/servers/${machineId}/files`, // PUT FileReport -> FileReportAnswer
  lookup: '/lookup', // GET ?path= -> LookupAnswer
  moved: '/moved', // GET ?path= -> MovedAnswer: where a rename took the file that was at the path
  list: '/list', // GET ?path= -> DirectoryListAnswer; with X-Dfs-Callback: want, a folder callback (X-Dfs-Callback: granted)
  events: '/events', // GET ?client= -> text/event-stream of CallbackBreak events for folders (folder callbacks)
  renewCallbacks: '/callbacks/renew', // POST CallbackRenewRequest -> CallbackRenewAnswer
  acknowledgeBreak: '/callbacks/ack', // POST CallbackAckRequest -> {}
  folderChanged: '/folders/changed', // POST FolderChangedRequest -> {}: a folder's attributes changed (chmod, utimes): breaks its and its parent's folder callbacks
  placement: '/placement', // GET ?path=&prefer= -> PlacementAnswer
  entries: (machineId: number | string) => `/servers/${machineId}/entries`, // POST ClaimRequest -> LookupAnswer; DELETE ?path= -> DropEntryAnswer
  rename: '/rename', // POST RenameSwitchRequest -> RenameSwitchAnswer
  health: '/health'
} as const

export interface RegisterRequest {
  /** Where clients reach this file server, e.g. http://127.0.0.1:7080 */
  url: string
  /**
   * The file server's own identity: a random UUID it keeps in ROOT/.dfs/identity.json. Its
   * machine id is bound to this, not to its URL, so a server that moved keeps its id.
   */
  serverId: string
  /**
   * The machine id this server was given last (also in identity.json), asked for again: a
   * directory that lost its state then hands out the same ids as before. Absent at first start.
   */
  machineId?: number
  /**
   * The server's own secret (base64url, from its identity.json), bound to serverId at the
   * first registration; later registrations under that serverId must carry it, and the
   * server's calls to the directory are signed with it (see docs/protocol.md, Authentication).
   */
  secret?: string
}

export interface RegisterAnswer {
  machineId: number
  /**
   * The URL recorded for the server: the one it sent, or for a loopback URL sent from
   * another machine, the same with the address it came from (src/shared/clusterUrls.ts).
   */
  url?: string
}

/**
 * Up: the file server sent a heartbeat within the down-after time (5 s); down: it did not, or
 * has not joined since the directory started; draining: up, but its files are moving to the
 * others (dfs-serve drain) and it gets no new ones.
 */
export type ServerState = 'up' | 'down' | 'draining'

export interface ServerInfo {
  machineId: number
  url: string
  /**
   * As the directory sees it when it answers; every directory answer has it. A client fails
   * a call to a 'down' server at once (UNAVAILABLE) instead of waiting for a timeout.
   */
  state?: ServerState
}

/** A file server as GET /servers shows it. */
export interface ServerStatus extends ServerInfo {
  state: ServerState
  serverId: string
  /** When its last heartbeat (or registration) arrived, in ms since the epoch; null: none since the directory started. */
  lastHeartbeatMs: number | null
  /** How long ago that was, on the directory's clock; null as above. */
  sinceHeartbeatMs: number | null
}

export interface ServersAnswer {
  servers: ServerStatus[]
}

/** A registered file server says it is alive; `serverId` must be the one its machine id belongs to. */
export interface HeartbeatRequest {
  serverId: string
}

export interface HeartbeatAnswer {
  machineId: number
  state: 'up'
  /** The directory's boot id: a new one means the namespace is empty and the file server must report again. */
  bootId: string
}

/** An operator dropped a dead file server: its machine id and every entry it held are gone. */
export interface ForgetServerAnswer {
  machineId: number
  forgotten: true
  /** Files and folder holds dropped from the namespace. */
  entries: number
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
  /** The file server holding a file, with its state; absent for folders, which may span servers. */
  server?: ServerInfo
  /** For a folder: every file server that holds it (none for an empty root). */
  holders?: ServerInfo[]
  /**
   * How many names the path's folder holds (absent for the root), as a miss's 404 says of
   * the missed name's folder (detail `folderEntries`). A client may hold a small folder's
   * names under a folder callback rather than ask for names in it again and again.
   */
  folderEntries?: number
}

/**
 * Where the file that was at `path` is now, for a client that still has it open under that
 * name and did not hear of the rename (no callback): the path of the same file, renamed
 * since (again and again, maybe); absent if no rename the directory remembers took it there,
 * or if it was removed or replaced since.
 */
export interface MovedAnswer {
  path: string
  movedTo?: string
}

/** Where a new file or folder goes: a server holding the parent folder, the roomiest of them. */
export interface PlacementAnswer {
  path: string
  server: ServerInfo
}

/** A file server tells the directory it just created a path; refused if the path exists. */
export interface ClaimRequest {
  path: string
  kind: EntryKind
  /** See Changer: whose change this is (a file server's PUT /create on a client's behalf). */
  changerClient?: string
  changerSubject?: string
}

/**
 * The client on whose behalf a file server changes the namespace (claim, drop): its
 * X-Dfs-Client and credential subject as the file server saw them. The directory spares
 * that client's folder callback when it breaks the folder (as a file server spares a
 * writer's), if the client id is live there under that subject; the client applies its own
 * change to its copy of the folder instead (src/client/folderCopies.ts). Sent as
 * `changerClient` and `changerSubject` (body or query).
 */
export interface Changer {
  client: string
  subject?: string
}

export interface DropEntryAnswer {
  path: string
  machineId: number
  dropped: true
}

/**
 * The commit point of a rename, in one request: `from` leaves the map and `to` is mapped
 * to `toMachineId`. `replaces` is the server the caller saw holding `to` (null: no file
 * there); if the map changed since, nothing happens and the answer is 409 CONFLICT.
 * A folder ('dir') moves with everything below it and must be held by one server only.
 */
export interface RenameSwitchRequest {
  kind: EntryKind
  from: string
  to: string
  fromMachineId: number
  toMachineId: number
  replaces: number | null
}

export interface RenameSwitchAnswer {
  from: string
  to: string
  machineId: number
  /** Files whose path changed (1 for a file). */
  files: number
}

export interface DirectoryEntry {
  name: string
  kind: EntryKind
  /** File servers holding this entry (one for a file; every server with content below for a folder). */
  machineIds: number[]
}

export interface FolderChangedRequest {
  path: string
}

export interface DirectoryListAnswer {
  path: string
  entries: DirectoryEntry[]
  servers: ServerInfo[]
}

// ---- lock server ------------------------------------------------------------

export const LockRoutes = {
  keys: '/keys', // POST CreateKeysRequest -> CreateKeysAnswer; DELETE ?path=&whenFree=|ifFree= -> DeleteKeyAnswer
  removeKeys: '/keys/remove', // POST RemoveKeysRequest -> RemoveKeysAnswer
  acquire: '/locks/acquire', // POST AcquireRequest -> LockLease | 423 LOCKED
  renew: '/locks/renew', // POST LeaseRequest -> LockLease | 409 LEASE_INVALID
  release: '/locks/release', // POST LeaseRequest -> ReleaseAnswer | 409 LEASE_INVALID
  check: '/locks/check', // GET ?path=&token= -> CheckAnswer | 409 LEASE_INVALID
  status: '/locks', // GET ?path= -> LockStatus
  heldUnder: '/locks/under', // GET ?path= (a folder) -> HeldUnderAnswer
  // Delegations (servers/lock/delegations.ts): the file servers' callback routes, on delegation keys (delegationKey).
  events: '/events', // GET ?client= -> text/event-stream of CallbackBreak events whose `path` is a delegation key
  renewCallbacks: '/callbacks/renew', // POST CallbackRenewRequest -> CallbackRenewAnswer
  acknowledgeBreak: '/callbacks/ack', // POST CallbackAckRequest -> {}
  health: '/health'
} as const

/**
 * What the lock server delegates to a client, as a callback on a key: `lease:PATH` a file's
 * write lease kept after use, `advisory:PATH` a file's advisory locks. A break of the key
 * (a CallbackBreak with the key as its `path`) recalls it: the holder gives it back, then
 * acknowledges.
 */
export type DelegationKind = 'lease' | 'advisory'

export function delegationKey (kind: DelegationKind, path: string): string {
  return `${kind}:${path}`
}

/** The kind and path of a delegation key; null for anything else. */
export function parseDelegationKey (key: string): { kind: DelegationKind, path: string } | null {
  const match = /^(lease|advisory):(\/.*)$/s.exec(key)
  return match === null ? null : { kind: match[1] as DelegationKind, path: match[2] }
}

export interface CreateKeysRequest {
  paths: string[]
}

export interface CreateKeysAnswer {
  created: number
}

export interface DeleteKeyAnswer {
  path: string
  /** False while a lease holds the key: with `whenFree` it goes when that lease is given back, with `ifFree` it stays. */
  deleted: boolean
}

export interface RemoveKeysRequest {
  paths: string[]
}

export interface RemoveKeysAnswer {
  removed: number
}

export interface AcquireRequest {
  path: string
  /** Who asks, shown to others who find the key taken (host:pid:random). */
  owner: string
  ttlMs?: number
  /** How long the server may hold the request for a key someone else has (0..30000, default 0). */
  waitMs?: number
  /**
   * Ask for the lease's delegation (`lease:PATH`) to the caller's X-Dfs-Client: the caller may
   * keep the lease after use, and gives it back when the lock server recalls it.
   */
  delegate?: boolean
}

export interface LockLease {
  path: string
  /** The label the client sent (host:pid:random), shown to others who find the key taken. */
  owner: string
  /** The subject of the credential it was granted to (absent on an open cluster): the one caller that may use it. */
  holder?: string
  /** Fencing token: grows with every grant, so a file server can refuse a superseded holder. */
  token: number
  /** The grant's secret (128 random bits), told to this caller only: with the token, the write credential (leaseCredential.ts). */
  secret: string
  ttlMs: number
  expiresAt: number
  /** Asked with `delegate`: the lease is delegated to the caller's client, which may keep it until recalled. */
  delegated?: true
}

/** A renewed lease, without its secret (the holder has it; a renewal proves only the token). */
export type RenewAnswer = Omit<LockLease, 'secret' | 'delegated'>

/** Renewing or releasing a lease needs its whole credential, as a write does: the fencing number alone is a guess. */
export interface LeaseRequest {
  path: string
  /** `TOKEN.SECRET` (leaseCredential.ts); a bare token or a wrong secret is 409 LEASE_INVALID. */
  credential: string
}

export interface ReleaseAnswer {
  path: string
  released: true
}

export interface CheckAnswer {
  path: string
  valid: true
  /** How long the lease has left: until then no one else can be granted the key. */
  expiresInMs: number
  /** The credential subject the lease was granted to (absent on an open cluster): only it may write under the lease. */
  holder?: string
  /**
   * The lease is delegated to its holder's client (AcquireRequest.delegate), which releases
   * it only once its writes under it were answered: a file server may trust this answer
   * for trustForMs (servers/file/leaseGuard.ts).
   */
  delegated?: true
  /**
   * With `delegated`: how long from when the question was sent the answer may be trusted
   * without asking again (at most expiresInMs). The lock server ends a delegated lease early
   * when its client is gone, but never before every such trust has run out.
   */
  trustForMs?: number
}

export interface LockStatus {
  path: string
  held: boolean
  owner?: string
  expiresInMs?: number
}

/** The keys below a folder that someone holds a live lease on. */
export interface HeldUnderAnswer {
  path: string
  held: LockStatus[]
}

/** Details of a 423 LOCKED error body. */
export interface LockedDetails {
  path: string
  holder: string
  retryAfterMs: number
}

// ---- file server ------------------------------------------------------------

export const FileRoutes = {
  stat: '/stat', // GET ?path=[&inline=N] -> StatAnswer (FileMeta, with the bytes of a file of at most N bytes)
  list: '/list', // GET ?path= -> FileListAnswer
  content: '/content', // GET ?path= -> bytes (ETag, X-Dfs-Version); 304 on If-None-Match
  append: '/append', // POST ?path= bytes, [X-Dfs-Lock-Token], [X-Dfs-Change-Id] -> FileMeta | 423 LOCKED
  // PUT /content ?path= bytes, X-Dfs-Lock-Token -> FileMeta: replaces the whole file
  // PATCH /content ?path=&size=&fromVersion= ranges (rangeFrames.ts), X-Dfs-Lock-Token -> FileMeta | 409: a range write
  create: '/create', // POST ?path=&kind=file|dir|symlink[&mode=][&target=] -> FileMeta
  // PUT /create ?path=[&mode=][&mtimeMs=] bytes, [X-Dfs-Change-Id] -> FileMeta | 409: a new file with its bytes, claimed with the directory
  truncate: '/truncate', // POST ?path=&size=, X-Dfs-Lock-Token -> FileMeta
  unlink: '/unlink', // POST ?path=, X-Dfs-Lock-Token -> RemovedAnswer
  rmdir: '/rmdir', // POST ?path= -> RemovedAnswer
  utimes: '/utimes', // POST ?path=&mtimeMs=[&atimeMs=] -> FileMeta
  chmod: '/chmod', // POST ?path=&mode= -> FileMeta
  rename: '/rename', // POST RenameRequest [X-Dfs-Lock-Token of a file's `from`] -> RenameAnswer
  incoming: '/incoming', // PUT ?path=&lockPath=&fromVersion=&mtimeMs=[&mode=][&target=]&replace= bytes, X-Dfs-Lock-Token -> FileMeta (server to server)
  incomingAbort: '/incoming/abort', // POST ?path=&lockPath=, X-Dfs-Lock-Token -> RemovedAnswer (server to server)
  events: '/events', // GET ?client= -> text/event-stream of CallbackBreak events (callbacks)
  renewCallbacks: '/callbacks/renew', // POST CallbackRenewRequest -> CallbackRenewAnswer
  acknowledgeBreak: '/callbacks/ack', // POST CallbackAckRequest -> {}
  statfs: '/statfs', // GET -> StatfsAnswer
  stats: '/stats', // GET -> FileServerStats
  health: '/health'
} as const

export const Headers = {
  version: 'x-dfs-version',
  mtime: 'x-dfs-mtime',
  mode: 'x-dfs-mode',
  lockToken: 'x-dfs-lock-token',
  /**
   * A change's id, chosen by the client (e.g. 16 random hex bytes): a change retried after
   * its answer was lost is recognised and applied once.
   */
  changeId: 'x-dfs-change-id',
  protocol: 'x-dfs-protocol',
  requestId: 'x-dfs-request-id',
  clientId: 'x-dfs-client',
  /**
   * On GET /content and GET /stat, `want`: the client asks for a callback on the file; the
   * answer says `granted` if the server promises one (see CallbackBreak).
   */
  callback: 'x-dfs-callback',
  /**
   * On POST /unlink, `1`: the caller keeps the lease it unlinks under (a delegated lease it
   * will use again at the path, as sqlite makes its journal anew at every transaction), so
   * the key stays until that lease is given back.
   */
  keepLease: 'x-dfs-keep-lease'
} as const

/**
 * What a file server sends down a client's event channel (GET /events, event `break`)
 * before a change to a file the client holds a callback on is acknowledged: the file's new
 * version (null: it is gone from this path). The client stops trusting its copy and
 * acknowledges `seq` (POST /callbacks/ack).
 */
export interface CallbackBreak {
  path: string
  version: number | null
  /**
   * The file left `path` by a rename, to this path (a folder's rename: each file's own new
   * path): a client with the file open follows it there, as a descriptor does on a local disk.
   */
  renamedTo?: string
  seq?: number
}

/**
 * GET /stat's answer. Asked with `inline=N` (at most MAX_INLINE_BYTES), a file of at most N
 * bytes comes with its bytes, base64, read together with the meta: a client with no copy
 * of a small file gets it with the stat the kernel asks for before an open, and the open
 * costs no request of its own.
 */
export type StatAnswer = FileMeta & { content?: string }

export const MAX_INLINE_BYTES = 64 * 1024

/** The most bytes one GET /content with a Range answers (a kernel's read is at most 128 KiB). */
export const MAX_RANGE_READ_BYTES = 1024 * 1024

/**
 * The longest callback lease a file server gives: also the longest a change waits for a
 * silent holder, so clients allow that much on top of a change's usual deadline.
 */
export const MAX_CALLBACK_LEASE_MS = 3_000

export interface CallbackRenewRequest {
  client: string
}

export interface CallbackRenewAnswer {
  /** False: the server did not know this client (new, or its lease ran out): none of its callbacks count. */
  known: boolean
  /** How long the client's callbacks count from when the renewal was sent. */
  validForMs: number
}

export interface CallbackAckRequest {
  client: string
  seq: number
}

export interface FileListAnswer {
  path: string
  entries: Array<FileMeta & { name: string }>
  /** Asked with X-Dfs-Callback: want, the names of the files promised a callback in bulk. */
  callbacks?: string[]
}

export interface FileServerStats {
  machineId: number | null
  /** GET /content answers that carried a body. */
  contentTransfers: number
  contentBytes: number
  /** GET /content answers of 304: the client's copy was current. */
  notModified: number
  appends: number
  /** PUT /content answers: whole files replaced. */
  overwrites: number
  /** PATCH /content answers (range writes), and the bytes of their bodies. */
  rangeWrites: number
  rangeBytes: number
  /** GET /content answers of 206 (a Range asked for), and their bytes. */
  rangeReads: number
  rangeReadBytes: number
  /** Files received from another server for a rename (PUT /incoming). */
  incoming: number
  incomingBytes: number
  /** Callbacks promised (on GET /content and GET /stat), and broken before a change. */
  callbacksGranted: number
  callbacksBroken: number
}

export interface StatfsAnswer {
  totalBytes: number
  freeBytes: number
  /** Free inodes, where the disk has a fixed number of them (absent on btrfs and the like). */
  freeFiles?: number
}

export interface RemovedAnswer {
  path: string
  removed: boolean
  /**
   * POST /unlink: the file's lock key went with it (and the lease the unlink came under), so
   * that lease needs no release. False when the unlink asked to keep its lease (keepLease).
   */
  keyRemoved?: boolean
}

export interface RenameRequest {
  from: string
  to: string
  /** The caller's lease credential on `to` (leaseCredential.ts), needed when `to` is an existing file. */
  toToken?: string
}

/** Server to server, in the query of PUT /incoming: a renamed file's bytes for its new home. */
export interface IncomingRequest {
  path: string
  /** The path whose lease the X-Dfs-Lock-Token is: `from`, or `path` when it replaces a file. */
  lockPath: string
  fromVersion: number
  mtimeMs: number
  mode?: number
  /** A symbolic link is renamed: it is made at `path` with this target (the body is empty). */
  target?: string
  /** Whether an existing file at `path` is replaced. */
  replace: boolean
  /** A drain moves the file to the same path: it keeps its version unless the path had a higher one here. */
  keepVersion?: boolean
}

export interface RenameAnswer {
  from: string
  to: string
  kind: EntryKind
  /** Where `to` lives now. */
  server: ServerInfo
  /** A file's meta at `to`; its version is above both `from`'s and `to`'s before. */
  meta?: FileMeta
  /** The version of `from` whose bytes are now at `to` (files only). */
  fromVersion?: number
  /** Files whose path changed. */
  files: number
}

/** The validator for a cached copy: any change of version, size or mtime makes it stale. */
export function etagOf (meta: Pick<FileMeta, 'version' | 'size' | 'mtimeMs'>): string {
  return `"v${meta.version}-${meta.size}-${Math.floor(meta.mtimeMs)}"`
}

/** The headers of a GET /content answer (200 or 304) that describe the file. */
export function contentHeadersOf (meta: FileMeta): Record<string, string> {
  const headers: Record<string, string> = { ETag: etagOf(meta), [Headers.version]: String(meta.version), [Headers.mtime]: String(meta.mtimeMs) }
  if (meta.mode !== undefined) headers[Headers.mode] = String(meta.mode)
  return headers
}

/** The file a GET /content answer of 200 describes, read back from its headers. */
export function metaFromContentHeaders (path: string, headers: Record<string, unknown>): FileMeta {
  const meta: FileMeta = {
    path,
    kind: 'file',
    version: Number(headers[Headers.version]),
    size: Number(headers['content-length']),
    mtimeMs: Number(headers[Headers.mtime])
  }
  if (headers[Headers.mode] !== undefined) meta.mode = Number(headers[Headers.mode])
  return meta
}
