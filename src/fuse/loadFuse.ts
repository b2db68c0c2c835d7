import fs from 'node:fs'

/** The part of fuse-native's API dfs uses (it ships no types). */
export interface FuseInstance {
  mount: (cb: (err: Error | null) => void) => void
  unmount: (cb: (err: Error | null) => void) => void
}

export interface FuseConstructor {
  new (mountpoint: string, ops: Record<string, unknown>, opts: Record<string, unknown>): FuseInstance
  unmount: (mountpoint: string, cb: (err: Error | null) => void) => void
}

export class FuseUnavailableError extends Error {}

export const INSTALL_HINT = 'install the Debian packages fuse and libfuse2 (apt-get install fuse libfuse2)'

/**
 * Loads fuse-native only when mounting: its native part needs libfuse.so.2 at load time, and
 * servers and the dfs CLI must run on machines without FUSE.
 */
export function loadFuse (): FuseConstructor {
  if (!fs.existsSync('/dev/fuse')) throw new FuseUnavailableError('/dev/fuse is missing: this machine (or container) has no FUSE device; load the fuse module or run with --device /dev/fuse')
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('fuse-native') as FuseConstructor
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    if (/libfuse/.test(message)) throw new FuseUnavailableError(`libfuse 2 is missing: ${INSTALL_HINT}`)
    throw new FuseUnavailableError(`cannot load fuse-native: ${message}`)
  }
}

/** fusermount (from the Debian package fuse) is what unmounts as a normal user, and what libfuse calls. */
export function findFusermount (): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const candidate = `${dir}/fusermount`
    if (fs.existsSync(candidate)) return candidate
  }
  return null
}
