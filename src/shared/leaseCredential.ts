/**
 * What a writer shows a file server: its lease's fencing token and the grant's secret, as
 * `TOKEN.SECRET` in X-Dfs-Lock-Token. The token is a counter anyone can guess; the secret
 * (random, told only to the caller the lock server granted the lease to) is what makes it
 * a credential. The file server keeps comparing tokens to fence off superseded writers.
 */
export type LeaseCredential = string

/** A secret is 128 random bits in base64url: 22 characters. */
const CREDENTIAL = /^(\d{1,16})\.([A-Za-z0-9_-]{16,64})$/

export function leaseCredentialOf (lease: { token: number, secret: string }): LeaseCredential {
  return `${lease.token}.${lease.secret}`
}

/** The token and secret in a credential, or null when it is not one (a bare token included). */
export function parseLeaseCredential (value: string | undefined): { token: number, secret: string } | null {
  const match = value === undefined ? null : CREDENTIAL.exec(value)
  if (match === null) return null
  const token = Number(match[1])
  return Number.isSafeInteger(token) ? { token, secret: match[2] } : null
}
