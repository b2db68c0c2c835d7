import fs from 'node:fs'

/** The part of fuse-native's API dfs uses (it ships no types). */
export interface FuseInstance {
  mount: (cb: (err: Error | null) => void) => void
  unmount: (cb: (err: Error | null) => void) => void
  /** The attributes of `path` a getattr let the kernel keep stop counting now (patch level 8). */
  invalidateAttributes: (path: string) => void
}

export interface FuseConstructor {
  new (mountpoint: string, ops: Record<string, unknown>, opts: Record<string, unknown>): FuseInstance
  unmount: (mountpoint: string, cb: (err: Error | null) => void) => void
  /** The loaded binding's dfs patch level (patches/fuse-native+2.2.6.patch); undefined when unpatched. */
  DFS_PATCH_LEVEL?: number
  /** What the patched utimens passes instead of a time for UTIME_NOW and UTIME_OMIT. */
  UTIME_NOW: 'now'
  UTIME_OMIT: 'omit'
}

/** An fcntl lock request as the patched binding passes it (patch level 2). */
export interface FuseLockRequest {
  cmd: 'getlk' | 'setlk' | 'setlkw'
  type: 'read' | 'write' | 'unlock'
  start: number
  /** 0: to the end of the file, however far it grows. */
  len: number
  /** The kernel's lock owner (one per process's file table), 16 hex digits. */
  owner: string
}

/** A flock request as the patched binding passes it; owner: one per open file. */
export interface FuseFlockRequest {
  op: 'shared' | 'exclusive' | 'unlock'
  /** False for LOCK_NB. */
  wait: boolean
  owner: string
}

/**
 * What a lock or flock that was taken may answer (patch level 7): the kernel's cached pages of
 * the file are out of date, and go before the lock returns to the program.
 */
export const DROP_CACHED_PAGES = { dropCachedPages: true } as const

/** What getlk answers: the conflicting lock, or type 'unlock' when there is none. */
export interface FuseLockConflict {
  type: 'read' | 'write' | 'unlock'
  start: number
  len: number
  pid: number
}

/**
 * The patch level this code needs: 1 passes utimens both times, and NOW and OMIT; 2 adds the
 * lock and flock operations (fcntl and flock locks held across mounts); 3 lets an open ask for
 * direct_io on its handle (OPEN_DIRECT_IO after the fd in its callback); 4 passes create
 * its open flags after the mode (O_EXCL: a create that rides in the close); 5 carries a stat's
 * inode number whole (64 bits: it carried 32, see inodeNumbers.ts); 6 adds fallocate; 7 lets a
 * handle that bypasses the page cache be mapped with mmap(MAP_SHARED) (FUSE_DIRECT_IO_ALLOW_MMAP
 * added to libfuse's INIT answer) and a lock answer DROP_CACHED_PAGES; 8 lets a getattr answer
 * how long the kernel may keep the attributes, and invalidateAttributes take them back; 9 makes
 * an invalidation asked for after the FUSE loop ended (the mount went away) do nothing instead
 * of writing through the freed channel (a segfault at `fusermount -u`); 10 takes writes (and
 * direct reads) of up to 1 MiB in one request instead of 128 KiB (FUSE_MAX_PAGES). The patched
 * build only exists once npm install ran our postinstall; fuse-native's prebuilt binary (which
 * node-gyp-build loads when there is no build/Release, or with PREBUILDS_ONLY set) hands over
 * the access time as the modification time and never calls utimens for touch -m.
 */
export const REQUIRED_PATCH_LEVEL = 10

/** What an open's callback may pass after its fd (patch level 3): this handle bypasses the page cache. */
export const OPEN_DIRECT_IO = 1

export const PATCHED_BUILD_HINT = 'run npm install to build the patched fuse-native'

export class FuseUnavailableError extends Error {}

export const INSTALL_HINT = 'install the Debian packages libfuse2 and fuse, or keep fuse3 if you have it (either gives fusermount): apt-get install libfuse2 fuse'

/**
 * Loads fuse-native only when mounting: its native part needs libfuse.so.2 at load time, and
 * servers and the dfs CLI must run on machines without FUSE.
 */
export function loadFuse (): FuseConstructor {
  if (!fs.existsSync('/dev/fuse')) throw new FuseUnavailableError('/dev/fuse is missing: this machine (or container) has no FUSE device; load the fuse module or run with --device /dev/fuse')
  let Fuse: FuseConstructor
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    Fuse = require('fuse-native') as FuseConstructor
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    if (/libfuse/.test(message)) throw new FuseUnavailableError(`libfuse 2 is missing: ${INSTALL_HINT}`)
    throw new FuseUnavailableError(`cannot load fuse-native: ${message}`)
  }
  const level = Fuse.DFS_PATCH_LEVEL
  if (typeof level !== 'number' || level < REQUIRED_PATCH_LEVEL) {
    throw new FuseUnavailableError(`the loaded fuse-native is not the patched build (patch level ${level ?? 'none'}, need ${REQUIRED_PATCH_LEVEL}): ${PATCHED_BUILD_HINT}`)
  }
  return Fuse
}

/** fusermount (from the Debian package fuse) is what unmounts as a normal user, and what libfuse calls. */
export function findFusermount (): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const candidate = `${dir}/fusermount`
    if (fs.existsSync(candidate)) return candidate
  }
  return null
}
