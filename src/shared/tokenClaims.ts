/** What a credential may do: read and list; also change and lock; or anything a server does. */
export type Role = 'read' | 'write' | 'server'

export const ROLES: readonly Role[] = ['read', 'write', 'server']

/** What a dfs token says of itself: its role, and when it expires (ms since the epoch). */
export interface ClaimedRights {
  role?: Role
  expiresAtMs?: number
}

/**
 * What a dfs token claims, read without checking its signature (a client has no key to
 * check it with; the servers check every call): what a mount may offer its programs. Under
 * a read-only or expired token a mount refuses an open for writing (EACCES) rather than take
 * bytes it cannot store and fail the close, which shells ignore. Empty for no token, or one
 * that is not ours.
 */
export function claimedRights (token: string | undefined): ClaimedRights {
  const body = token?.split('.')[1]
  if (body === undefined) return {}
  try {
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { role?: unknown, exp?: unknown }
    return {
      role: ROLES.find((known) => known === claims.role),
      expiresAtMs: typeof claims.exp === 'number' ? claims.exp * 1000 : undefined
    }
  } catch {
    return {}
  }
}
