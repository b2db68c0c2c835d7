/** What a credential may do: read and list; also change and lock; or anything a server does. */
export type Role = 'read' | 'write' | 'server'

export const ROLES: readonly Role[] = ['read', 'write', 'server']

/**
 * The role a dfs token claims, read without checking its signature (a client has no key to
 * check it with; the servers check every call): what a mount may offer its programs. Under
 * a read-only token a mount refuses an open for writing (EACCES) rather than take bytes it
 * cannot store and fail the close, which shells ignore. Undefined for no token, or one that
 * is not ours.
 */
export function claimedRole (token: string | undefined): Role | undefined {
  const body = token?.split('.')[1]
  if (body === undefined) return undefined
  try {
    const role = (JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { role?: unknown }).role
    return ROLES.find((known) => known === role)
  } catch {
    return undefined
  }
}
