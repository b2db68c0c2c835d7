import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { DfsError, UnauthorizedError } from '../../src/shared/errors'
import { ROLES } from '../../src/shared/tokenClaims'
import type { Role } from '../../src/shared/tokenClaims'

/*
 * Credentials: JSON Web Tokens (RFC 7519) signed with HMAC-SHA256, made and checked with
 * node:crypto. One algorithm, fixed here, and keys we derive ourselves: the part of a JWT
 * library that matters (alg negotiation, key types) is the part we refuse, and the rest is
 * twenty lines; no dependency to audit or keep up to date.
 *
 * Three kinds of signing key, told apart by the token's `kid`:
 * - `client`: derived from the cluster key; tokens for mounts and the dfs CLI (`dfs-serve token`);
 * - `server`: derived from the cluster key; how servers prove to each other they are members;
 * - `file:<serverId>`: a file server's own secret (ROOT/.dfs/identity.json), known only to it
 *   and the directory server, which binds it to its machine id at the first registration;
 *   so only that server can report, claim or heartbeat for that id.
 */

export type { Role }

export interface Claims {
  /** Who: a token's --name, `directory`, `lock`, `file:<serverId>` or `operator`. */
  sub: string
  role: Role
  /** Seconds since the epoch, as JWT has it. */
  iat: number
  exp: number
  /** The token's id: what a deny list names to revoke it. */
  jti: string
}

/** The cluster key file cannot be read or made: the server refuses to start. */
export class ClusterKeyError extends DfsError {}

const KEY_BYTES = 32

function base64url (data: Buffer | string): string {
  return Buffer.from(data).toString('base64url')
}

/** Signs claims with a key under its kid. */
export function signToken (key: Buffer, kid: string, claims: Claims): string {
  const head = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid }))
  const body = base64url(JSON.stringify(claims))
  const signature = crypto.createHmac('sha256', key).update(`${head}.${body}`).digest('base64url')
  return `${head}.${body}.${signature}`
}

/** The kid a token names, unchecked (to pick the key to check it with); null if it is no JWT of ours. */
export function kidOf (token: string): string | null {
  const head = token.split('.', 1)[0]
  try {
    const parsed = JSON.parse(Buffer.from(head, 'base64url').toString('utf8')) as { alg?: unknown, kid?: unknown }
    return parsed.alg === 'HS256' && typeof parsed.kid === 'string' ? parsed.kid : null
  } catch {
    return null
  }
}

/** The claims of a token signed with `key`, checked: signature, shape, expiry. UnauthorizedError otherwise. */
export function verifyToken (key: Buffer, token: string, nowMs = Date.now()): Claims {
  const parts = token.split('.')
  if (parts.length !== 3) throw new UnauthorizedError('the credential is not a dfs token')
  const expected = crypto.createHmac('sha256', key).update(`${parts[0]}.${parts[1]}`).digest()
  const given = Buffer.from(parts[2], 'base64url')
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    throw new UnauthorizedError('the credential is not signed by this cluster\'s key (tampered with, or made for another cluster)')
  }
  let claims: Claims
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as Claims
  } catch {
    throw new UnauthorizedError('the credential is not a dfs token')
  }
  if (typeof claims.sub !== 'string' || !ROLES.includes(claims.role) || typeof claims.exp !== 'number' || typeof claims.jti !== 'string') {
    throw new UnauthorizedError('the credential is not a dfs token')
  }
  if (claims.exp * 1000 <= nowMs) throw new UnauthorizedError(`the credential of ${claims.sub} expired at ${new Date(claims.exp * 1000).toISOString()}`)
  return claims
}

/** Fresh claims for a credential valid ttlMs from now. */
export function newClaims (sub: string, role: Role, ttlMs: number, nowMs = Date.now()): Claims {
  const iat = Math.floor(nowMs / 1000)
  return { sub, role, iat, exp: iat + Math.max(1, Math.ceil(ttlMs / 1000)), jti: crypto.randomBytes(12).toString('base64url') }
}

/**
 * The cluster's secret, from which the client and server signing keys are derived (HKDF), so
 * a token of one kind never passes for the other. Servers hold it; clients never read it.
 */
export class ClusterKey {
  readonly clientKey: Buffer
  readonly serverKey: Buffer

  constructor (secret: Buffer) {
    if (secret.length < KEY_BYTES) throw new ClusterKeyError(`a cluster key has at least ${KEY_BYTES} bytes`)
    this.clientKey = derive(secret, 'dfs client tokens')
    this.serverKey = derive(secret, 'dfs server tokens')
  }

  static generate (): ClusterKey {
    return new ClusterKey(crypto.randomBytes(KEY_BYTES))
  }

  /**
   * Reads the key file, or makes one (mode 0600) if there is none. A key file others may
   * read is refused: whoever reads it can act as any server.
   */
  static loadOrCreate (file: string): { key: ClusterKey, created: boolean } {
    let text: string
    try {
      const stat = fs.statSync(file)
      if ((stat.mode & 0o077) !== 0) {
        throw new ClusterKeyError(`cluster key ${file} can be read by others (mode ${(stat.mode & 0o777).toString(8)}): chmod 600 ${file}`)
      }
      text = fs.readFileSync(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        if (err instanceof ClusterKeyError) throw err
        throw new ClusterKeyError(`cannot read cluster key ${file}: ${(err as Error).message}`)
      }
      const secret = crypto.randomBytes(KEY_BYTES)
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
      try {
        fs.writeFileSync(file, secret.toString('base64url') + '\n', { mode: 0o600, flag: 'wx' })
      } catch (writeErr) {
        // Another server on this machine made it in between: use that one.
        if ((writeErr as NodeJS.ErrnoException).code === 'EEXIST') return ClusterKey.loadOrCreate(file)
        throw new ClusterKeyError(`cannot write cluster key ${file}: ${(writeErr as Error).message}`)
      }
      return { key: new ClusterKey(secret), created: true }
    }
    const secret = Buffer.from(text.trim(), 'base64url')
    if (secret.length < KEY_BYTES) throw new ClusterKeyError(`cluster key ${file} is not a dfs cluster key (${KEY_BYTES} random bytes, base64url)`)
    return { key: new ClusterKey(secret), created: false }
  }

  /** Reads an existing key file: for what must not make a new key (a token of a key no server has is worthless). */
  static load (file: string): ClusterKey {
    if (!fs.existsSync(file)) throw new ClusterKeyError(`no cluster key at ${file}: start a server first (it makes one), or name it with --cluster-key`)
    return ClusterKey.loadOrCreate(file).key
  }

  /** A client credential: `dfs-serve token`. */
  clientToken (sub: string, opts: { readOnly?: boolean, ttlMs: number }): { token: string, claims: Claims } {
    const claims = newClaims(sub, opts.readOnly === true ? 'read' : 'write', opts.ttlMs)
    return { token: signToken(this.clientKey, 'client', claims), claims }
  }

  /** A server's credential of a cluster member, renewed before it runs out; for Transport's CallerIdentity.credential. */
  serverCredential (sub: string): () => string {
    return renewing(() => signToken(this.serverKey, 'server', newClaims(sub, 'server', SERVER_TOKEN_TTL_MS)))
  }
}

const SERVER_TOKEN_TTL_MS = 10 * 60_000

/** A credential made again once half its life is gone, so one minted per call costs nothing. */
export function renewing (mint: () => string, ttlMs = SERVER_TOKEN_TTL_MS): () => string {
  let token = ''
  let renewAt = 0
  return () => {
    if (Date.now() >= renewAt) {
      token = mint()
      renewAt = Date.now() + ttlMs / 2
    }
    return token
  }
}

function derive (secret: Buffer, label: string): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', secret, Buffer.alloc(0), label, KEY_BYTES))
}

/** A file server's own credential, signed with its identity secret: only the directory, which keeps that secret, checks it. */
export function fileServerCredential (serverId: string, secret: Buffer): () => string {
  return renewing(() => signToken(secret, `file:${serverId}`, newClaims(`file:${serverId}`, 'server', SERVER_TOKEN_TTL_MS)))
}

/** "30d", "12h", "15m", "90s" or a number of seconds, as milliseconds; null if it is none of them. */
export function parseDuration (text: string): number | null {
  const match = /^(\d+)\s*([smhd]?)$/.exec(text.trim())
  if (!match) return null
  const unit = { '': 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as '' | 's' | 'm' | 'h' | 'd']
  const ms = Number(match[1]) * unit
  return ms > 0 && Number.isSafeInteger(ms) ? ms : null
}
