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
  return typeof input === 'string' && isCanonical(input) ? input : normalizeFully(input)
}

/** normalizePath with no shortcut for a path that is canonical already; exported for the test that compares the two. */
export function normalizeFully (input: unknown): string {
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

/** Code units a name may have and still be within MAX_NAME_BYTES whatever it holds (UTF-8 takes at most 3 bytes per unit). */
const SURELY_SHORT_NAME = Math.floor(MAX_NAME_BYTES / 3)
/** The same for a whole path and MAX_PATH_BYTES. */
const SURELY_SHORT_PATH = Math.floor(MAX_PATH_BYTES / 3)

/**
 * Whether a path is in canonical form already, checked in one pass with no allocation: a
 * mount normalizes the path of every FUSE operation (the kernel sends canonical ones), and
 * the split and join of the full check were a visible share of a sqlite transaction's CPU.
 * A path it is not sure of (a long name, say) goes through the full check instead.
 */
function isCanonical (path: string): boolean {
  if (path.charCodeAt(0) !== 0x2f || path.length > SURELY_SHORT_PATH) return false
  if (path.length === 1) return true
  let nameStart = 1
  for (let i = 1; i <= path.length; i++) {
    const code = i === path.length ? 0x2f : path.charCodeAt(i)
    if (code === 0) return false
    if (code !== 0x2f) continue
    const length = i - nameStart
    // Empty names ('//', a trailing '/'), '.', '..' and possibly long names take the full check.
    if (length === 0 || length > SURELY_SHORT_NAME) return false
    if (path.charCodeAt(nameStart) === 0x2e && (length === 1 || (length === 2 && path.charCodeAt(nameStart + 1) === 0x2e))) return false
    nameStart = i + 1
  }
  return true
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
