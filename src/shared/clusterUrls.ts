import { isIP } from 'node:net'
import { DEFAULT_LOCK_URL } from './defaults'
import type { DirectoryApi } from './api/directoryApi'
import type { HealthAnswer } from './protocol'

/*
 * Where a machine reaches the cluster's servers when nobody named their addresses for it.
 * A server started without a public address names itself by a loopback one (127.0.0.1):
 * right on its own machine, wrong everywhere else. Two rules make such names usable:
 * - the directory server records a file server that registers a loopback URL from another
 *   machine at the address it came from (registeredUrlOf);
 * - so a loopback URL the directory hands out names a server on the directory's own machine,
 *   which a client reaches by the host it reaches the directory by (seenVia).
 */

/** Whether a host name or address names the machine it is used on, and no other. */
export function isLoopbackHost (host: string): boolean {
  const bare = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return bare === 'localhost' || bare.endsWith('.localhost') || bare === '::1' ||
    /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare)
}

/** `url` with another host (an address or a name), kept as written otherwise; a URL that does not parse is returned as it is. */
function withHost (url: string, host: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return url
  }
  parsed.hostname = isIP(host) === 6 ? `[${host}]` : host
  // As written: URL adds a "/" to an empty path.
  return url.endsWith('/') ? parsed.toString() : parsed.toString().replace(/\/$/, '')
}

function hostOf (url: string): string | null {
  try {
    return new URL(url).hostname
  } catch {
    return null
  }
}

/**
 * A server URL the directory handed out, as seen by a machine that reaches the directory at
 * `directoryUrl`: a loopback URL names the directory's own machine, so it gets the
 * directory's host (scheme and port kept). Anything else, or a directory reached by a
 * loopback URL itself (this machine is the directory's), is taken as it is.
 */
export function seenVia (serverUrl: string, directoryUrl: string): string {
  const server = hostOf(serverUrl)
  const directory = hostOf(directoryUrl)
  if (server === null || directory === null || !isLoopbackHost(server) || isLoopbackHost(directory)) return serverUrl
  return withHost(serverUrl, directory)
}

/**
 * The lock server's URL for a machine that reaches the directory server at `directoryUrl`,
 * from the URL the directory names in its /health (`lockUrl`; a directory that names none is
 * taken to name the default), by seenVia: the default layout runs the lock server beside the
 * directory, and a directory started without --lock names 127.0.0.1.
 */
export function lockUrlFromDirectory (health: HealthAnswer, directoryUrl: string): string {
  const named = typeof health.lockUrl === 'string' && health.lockUrl !== '' ? health.lockUrl : DEFAULT_LOCK_URL
  return seenVia(named, directoryUrl)
}

/** The lock server's URL as lockUrlFromDirectory reads it, from the directory's /health asked now. */
export async function askLockUrl (directory: DirectoryApi): Promise<string> {
  return lockUrlFromDirectory(await directory.health(), directory.transport.baseUrl)
}

/**
 * The URL the directory records for a file server that registers `url` over a connection
 * from `peerAddress`: a loopback URL sent from another machine (a server started with
 * --host 0.0.0.0 and no --public-url) would send every client to its own machine, so it
 * becomes the address the server came from, which reached the directory. Otherwise as sent.
 */
export function registeredUrlOf (url: string, peerAddress: string | undefined): string {
  const host = hostOf(url)
  if (host === null || !isLoopbackHost(host) || peerAddress === undefined || isIP(peerAddress) === 0) return url
  const peer = peerAddress.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1')
  return isLoopbackHost(peer) ? url : withHost(url, peer)
}
