import { BadPathError, NameTooLongError } from './errors'

/** Linux limits: NAME_MAX and PATH_MAX. */
export const MAX_NAME_BYTES = 255
export const MAX_PATH_BYTES = 4096

/**
 * Turns a client-supplied path into the one canonical form used on the wire and as map key:
 * absolute, '/'-separated, no empty, '.' or '..' segments, no trailing slash ('/' is the root).
 * Anything that could escape a root ('..', NUL) is refused rather than resolved, so no caller
 * ever has to think about traversal again.
 */
export function normalizePath (input: unknown): string {
  if (typeof input !== 'string' || input.length === 0) throw new BadPathError('path is missing', { path: input })
  if (input.includes('\0')) throw new BadPathError('path contains a NUL byte', { path: input.replace(/\0/g, '\\0') })
  if (Buffer.byteLength(input) > MAX_PATH_BYTES) throw new NameTooLongError('path is too long', { path: input.slice(0, 64) + '...' })
  const segments: string[] = []
  for (const segment of input.split('/')) {
    if (segment === '' || segment === '.') continue
    if (segment === '..') throw new BadPathError(`path may not contain '..': ${input}`, { path: input })
    if (Buffer.byteLength(segment) > MAX_NAME_BYTES) throw new NameTooLongError(`name is too long: ${segment.slice(0, 32)}...`, { path: input })
    segments.push(segment)
  }
  return '/' + segments.join('/')
}

export function parentOf (path: string): string {
  const cut = path.lastIndexOf('/')
  return cut <= 0 ? '/' : path.slice(0, cut)
}

export function baseName (path: string): string {
  return path.slice(path.lastIndexOf('/') + 1)
}

export function joinPath (folder: string, name: string): string {
  return folder === '/' ? '/' + name : folder + '/' + name
}

/** Every folder above a path, nearest last: '/a/b/c' gives ['/', '/a', '/a/b']. */
export function ancestorsOf (path: string): string[] {
  const result: string[] = []
  let current = path
  while (current !== '/') {
    current = parentOf(current)
    result.unshift(current)
  }
  return result
}
