import fs from 'node:fs'
import type { Express, RequestHandler, Response } from 'express'
import { StatusRoutes } from '../../src/shared/clusterStatus'
import { ForbiddenError, UnauthorizedError } from '../../src/shared/errors'
import type { ClusterKey, Role } from './tokens'
import { kidOf, verifyToken } from './tokens'
import { LRUCache } from 'lru-cache'

/** Checked tokens remembered (Authenticator.checked): one per client and server, with room to spare. */
const CHECKED_TOKENS = 1_000

/*
 * Who may call what, in one place. Every server puts `authenticate` before its routes: a
 * request without a valid credential is refused (401) before any route runs or any body is
 * read, health checks aside. Routes then opt into what they need with `allow(role)`:
 *
 *   app.get('/metrics', allow('read'), handler)
 *
 * Roles rank read < write < server: a client token is read or write (`dfs-serve token
 * --read-only`), servers hold the server role, which may call every route.
 */

/** Who a request comes from, as its credential proves. */
export interface Caller {
  /** The token's subject: a client token's name, or a server's (`lock`, `file:<serverId>`). */
  subject: string
  role: Role
  /** The id of the token (jti), or null on an open server. */
  tokenId: string | null
  /** A file server that signed with its own identity secret (only the directory checks those). */
  serverId: string | null
  /** An open (--insecure) server: nobody was checked, and every caller may do anything. */
  open: boolean
}

const OPEN_CALLER: Caller = { subject: 'anonymous', role: 'server', tokenId: null, serverId: null, open: true }

const RANK: Record<Role, number> = { read: 0, write: 1, server: 2 }

/**
 * Routes anyone may call: load balancers and `dfs-mount`'s preflight check liveness without a
 * token, and a browser loads the status page, which holds no data (its script asks for it
 * with a token).
 */
const PUBLIC_PATHS = new Set(['/health', StatusRoutes.page])

export interface AuthenticatorOptions {
  key: ClusterKey
  /** The directory: a file server's identity secret by its serverId, once it registered. */
  identitySecret?: (serverId: string) => Buffer | undefined
  /** A deny list: one token id (jti) or `sub:NAME` per line; re-read when it changes. */
  revokedFile?: string
}

/** Checks credentials against the cluster key (and, on the directory, file servers' own secrets). */
export class Authenticator {
  private readonly revoked: DenyList | null
  /**
   * Tokens checked already: a client sends the same one on every request, and its HMAC and
   * JSON decoding cost more than the rest of a small request's checks. Still refused once
   * expired or revoked. A file server's identity token (on the directory: every create's
   * claim and every unlink's drop carries one) is remembered with the secret it was checked
   * against, and counts only while the server's registered secret is still that one (it
   * may change when the server registers again).
   */
  private readonly checked = new LRUCache<string, { caller: Caller, expiresAtMs: number, secret?: Buffer }>({ max: CHECKED_TOKENS })

  constructor (private readonly opts: AuthenticatorOptions) {
    this.revoked = opts.revokedFile === undefined ? null : new DenyList(opts.revokedFile)
  }

  /** The caller an Authorization header proves; UnauthorizedError if it proves none. */
  verify (header: string | undefined): Caller {
    if (header === undefined || header === '') throw new UnauthorizedError('a credential is needed: Authorization: Bearer <token> (see dfs-serve token)')
    const match = /^Bearer ([A-Za-z0-9_.-]{1,4096})$/.exec(header)
    if (!match) throw new UnauthorizedError('the Authorization header must be "Bearer <token>"')
    const token = match[1]
    const known = this.checked.get(token)
    if (known !== undefined && Date.now() < known.expiresAtMs && this.stillSigned(known.caller, known.secret)) {
      if (this.revoked?.has(known.caller.tokenId as string, known.caller.subject) === true) throw new UnauthorizedError(`the credential of ${known.caller.subject} was revoked`)
      return known.caller
    }
    const kid = kidOf(token)
    let key: Buffer | undefined
    let serverId: string | null = null
    if (kid === 'client') key = this.opts.key.clientKey
    else if (kid === 'server') key = this.opts.key.serverKey
    else if (kid?.startsWith('file:') === true && this.opts.identitySecret !== undefined) {
      serverId = kid.slice('file:'.length)
      key = this.opts.identitySecret(serverId)
      if (key === undefined) throw new UnauthorizedError(`no file server ${serverId.slice(0, 64)} has registered here: register with the cluster key first`)
    }
    if (key === undefined) throw new UnauthorizedError('the credential is not a dfs token of this cluster')
    const claims = verifyToken(key, token)
    // A client key must never sign a server's role (it cannot: HKDF keys differ), nor a server one a client's.
    if ((kid === 'client') !== (claims.role !== 'server')) throw new UnauthorizedError('the credential\'s role does not match its key')
    if (serverId !== null && claims.sub !== `file:${serverId}`) throw new UnauthorizedError('the credential names another file server than its key')
    if (this.revoked?.has(claims.jti, claims.sub) === true) throw new UnauthorizedError(`the credential of ${claims.sub} was revoked`)
    const caller: Caller = { subject: claims.sub, role: claims.role, tokenId: claims.jti, serverId, open: false }
    this.checked.set(token, { caller, expiresAtMs: claims.exp * 1000, ...(serverId === null ? {} : { secret: key }) })
    return caller
  }

  /** Whether a remembered check still holds: a file server's identity token only while its secret is the one it was checked against. */
  private stillSigned (caller: Caller, secret: Buffer | undefined): boolean {
    if (caller.serverId === null) return true
    const current = this.opts.identitySecret?.(caller.serverId)
    return current !== undefined && secret !== undefined && current.equals(secret)
  }
}

/**
 * The app-level check every server runs first: sets the caller for the routes, or refuses
 * with 401. Without an authenticator (an --insecure server) every caller is let in.
 */
export function authenticate (auth: Authenticator | null): RequestHandler {
  return (req, res, next) => {
    if (auth === null) {
      res.locals.caller = OPEN_CALLER
      next()
      return
    }
    if (PUBLIC_PATHS.has(req.path) && (req.method === 'GET' || req.method === 'HEAD')) {
      next()
      return
    }
    try {
      res.locals.caller = auth.verify(req.get('authorization'))
    } catch (err) {
      next(err)
      return
    }
    next()
  }
}

/** A route's opt-in: only callers of at least this role get through (403 otherwise). */
export function allow (role: Role): RequestHandler {
  return (_req, res, next) => {
    const caller = callerOf(res)
    if (RANK[caller.role] >= RANK[role]) {
      next()
      return
    }
    next(new ForbiddenError(role === 'server'
      ? `only cluster servers may call this route; ${caller.subject} holds a client credential`
      : `${caller.subject} holds a read-only credential: it may read and list, not change or lock`, { subject: caller.subject, role: caller.role }))
  }
}

/** The caller `authenticate` found; a route reached without it is a wiring mistake, refused. */
export function callerOf (res: Response): Caller {
  const caller = res.locals.caller as Caller | undefined
  if (caller === undefined) throw new UnauthorizedError('a credential is needed')
  return caller
}

/** Whether the caller is the file server bound to this serverId (any caller on an open server). */
export function isFileServer (caller: Caller, serverId: string): boolean {
  return caller.open || caller.serverId === serverId
}

/** The deny list, read again when its file changes (looked at no more than once a second). */
class DenyList {
  private entries = new Set<string>()
  private mtimeMs = -1
  private lookedAt = 0

  constructor (private readonly file: string) {
    this.refresh()
  }

  has (tokenId: string, subject: string): boolean {
    if (Date.now() - this.lookedAt >= 1000) this.refresh()
    return this.entries.has(tokenId) || this.entries.has(`sub:${subject}`)
  }

  private refresh (): void {
    this.lookedAt = Date.now()
    let stat: fs.Stats
    try {
      stat = fs.statSync(this.file)
    } catch {
      this.entries = new Set()
      this.mtimeMs = -1
      return
    }
    if (stat.mtimeMs === this.mtimeMs) return
    this.mtimeMs = stat.mtimeMs
    const lines = fs.readFileSync(this.file, 'utf8').split('\n').map((line) => line.replace(/#.*/, '').trim())
    this.entries = new Set(lines.filter((line) => line !== ''))
  }
}

/** How a server is secured: the cluster key, and the deny list if there is one. Absent: an open (--insecure) server. */
export interface ServerAuth {
  key: ClusterKey
  revokedFile?: string
}

/** One route's method, path and the least role that may call it. */
export type RouteRole = [method: 'get' | 'post' | 'put' | 'patch' | 'delete', route: string, role: Role]

/**
 * Puts each route's role check before the route itself (Express runs the guard, then the
 * handler registered later on the same path), so a server's roles are one table.
 */
export function guardRoutes (app: Express, table: RouteRole[]): void {
  for (const [method, route, role] of table) app[method](route, allow(role))
}

/** What every server does before its routes: check the caller's credential, then each route's least role. */
export function requireCredentials (app: Express, auth: Authenticator | null, table: RouteRole[]): void {
  app.use(authenticate(auth))
  guardRoutes(app, table)
}
