import fs from 'node:fs'
import path from 'node:path'
import { ClusterKey } from '../../servers/common/tokens'
import type { CallerIdentity } from '../../src/shared/transport'

/**
 * A test cluster's secrets: a fresh cluster key, and tokens made with it. Test clusters are
 * secure by default, so every test exercises authentication.
 */
export interface TestCredentials {
  key: ClusterKey
  /** A read-write client token (subject `tester`), as dfs-serve token makes. */
  write: string
  /** A read-only client token (subject `reader`). */
  read: string
  /** A cluster member's credential (subject `operator`): may call every route. */
  server: string
  /** What a DfsClient of the test sends: the write token. */
  caller: CallerIdentity
}

const DAY_MS = 86_400_000

export function newCredentials (key: ClusterKey = ClusterKey.generate()): TestCredentials {
  const write = key.clientToken('tester', { ttlMs: DAY_MS }).token
  return {
    key,
    write,
    read: key.clientToken('reader', { readOnly: true, ttlMs: DAY_MS }).token,
    server: key.serverCredential('operator')(),
    caller: { credential: () => write }
  }
}

/** Makes a key file (mode 0600) for dfs-serve in `dir`, and credentials of that key. */
export function credentialsWithKeyFile (dir: string): TestCredentials & { keyFile: string } {
  const keyFile = path.join(dir, 'cluster.key')
  fs.mkdirSync(dir, { recursive: true })
  return { ...newCredentials(ClusterKey.loadOrCreate(keyFile).key), keyFile }
}

/**
 * The caller of test code that talks to a server by its object (statsOf, fileApiOf): the
 * cluster helpers note each server's credentials here by its URL (which a restart on the
 * same port keeps), so those helpers need no argument.
 */
const callers = new Map<string, CallerIdentity>()

export function noteCaller (server: { url: string }, caller: CallerIdentity): void {
  callers.set(server.url, caller)
}

export function callerFor (server: { url: string }): CallerIdentity {
  return callers.get(server.url) ?? {}
}

/** The bearer token callerFor(server) sends, for a raw call; undefined if none was noted. */
export function credentialOf (server: { url: string }): string | undefined {
  return callerFor(server).credential?.()
}
