import { DEFAULT_LOCK_URL } from './defaults'
import type { HealthAnswer } from './protocol'

/** Whether a host name or address names the machine it is used on, and no other. */
export function isLoopbackHost (host: string): boolean {
  const bare = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return bare === 'localhost' || bare.endsWith('.localhost') || bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare)
}

/**
 * The lock server's URL for a client of the directory server at `directoryUrl`, from the
 * URL the directory names in its /health (`lockUrl`; a directory that names none is taken to
 * name the default). A loopback URL there means "on the directory's machine": the default
 * layout runs the lock server beside the directory, and a directory started without --lock
 * names 127.0.0.1. Seen from another machine that is the directory's host, so a client that
 * reaches the directory by another name gets that host, with the lock server's scheme and
 * port. Anything else is taken as named.
 */
export function lockUrlFromDirectory (health: HealthAnswer, directoryUrl: string): string {
  const named = typeof health.lockUrl === 'string' && health.lockUrl !== '' ? health.lockUrl : DEFAULT_LOCK_URL
  let lock: URL
  let directory: URL
  try {
    lock = new URL(named)
    directory = new URL(directoryUrl)
  } catch {
    return named
  }
  if (!isLoopbackHost(lock.hostname) || isLoopbackHost(directory.hostname)) return named
  lock.hostname = directory.hostname
  // As named: URL adds a "/" to an empty path.
  return named.endsWith('/') ? lock.toString() : lock.toString().replace(/\/$/, '')
}
