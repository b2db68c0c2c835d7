import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import type { DfsClient } from '../client/dfsClient'
import { OpenFileTable } from '../client/openFiles'
import { loadFuse } from './loadFuse'
import type { FuseInstance } from './loadFuse'
import { createFuseOperations } from './operations'
import type { FileOwner } from './operations'

export interface MountOptions {
  mountpoint: string
  client: DfsClient
  debug?: boolean
  /** Wraps the FUSE operations before they are handed to the kernel (the mount's log: src/cli/mountLog.ts). */
  wrapOperations?: (operations: Record<string, unknown>) => Record<string, unknown>
  /** More options for libfuse, as dfs-mount -o gives them (allow_other, ro, ...): checked there. */
  kernelFlags?: string[]
  /** Who owns every file as the mount shows it; default: the user running the mount. */
  owner?: FileOwner
}

export interface MountedDfs {
  mountpoint: string
  files: OpenFileTable
  /** Sends pending writes, then unmounts; falls back to a lazy unmount when busy. */
  unmount: () => Promise<void>
}

/**
 * Kernel-facing options, each chosen for a reason:
 * - big_writes: writes arrive in large pieces instead of 4 KiB (fuse-native has no option
 *   for it, but joins options with commas, so it rides along in fsname): up to 1 MiB, as the
 *   patched fuse-native (level 10) answers the kernel's INIT with max_pages (libfuse 2 alone
 *   stops at 128 KiB). A 256 MiB write then costs the mount a quarter less CPU.
 * - nonempty: the repo's mountpoint/ holds a .gitkeep; libfuse 2 refuses a non-empty
 *   mount point without it.
 * - use_ino: stat shows our inode numbers (src/fuse/inodeNumbers.ts), stable for a file's
 *   life, instead of libfuse's, which change whenever it forgets a node (git compares them).
 * - auto_cache: the kernel keeps file pages between opens and drops them when an open finds
 *   a new mtime or size; open() always revalidates with the file server, so a changed file
 *   is never served from stale pages, and an unchanged one reads at page-cache speed.
 * - entry_timeout=1 (libfuse's default, said here because it was measured): the kernel
 *   trusts a name it saw for a second. Names are never cached as absent (negative_timeout
 *   0), so a file another mount made is found at once; one it removed fails the next
 *   getattr or open here (attributes are never cached), and an open that finds its file
 *   gone answers ESTALE, on which the kernel looks the name up again (open(O_CREAT) of
 *   sqlite's rollback journal, removed and made by another mount, then creates it).
 *   entry_timeout=0 cost a lookup per path walk: `ls -l` ran at 4,552 entries/s against
 *   8,256, and cached opens at 0.81x sshfs against 1.04x (npm run bench -- --quick).
 * - attr_timeout=0 and ac_attr_timeout=0: the kernel asks us for attributes instead of
 *   trusting its own copy, so the size another client's append created is seen at the next
 *   open; the client proxy remembers attributes briefly, so this costs no network round trip.
 *   A getattr may answer a longer time for its own attributes (operations.ts, kernelKeepsFor:
 *   a file its callback vouches for), which the mount takes back when the callback ends.
 * - timeout: fuse-native answers ETIMEDOUT after 15 s by default; opening a large file or
 *   waiting for a lock may legitimately take longer, and every network call below has its
 *   own timeout anyway. flush, fsync and release have none at all: on a hard mount they wait
 *   until written data is stored (the client proxy retries), and a timer answering ETIMEDOUT
 *   there would drop the data while telling the program about it only through close().
 * Exported for the benchmark's passthrough (bench/passthrough.ts), whose floor is measured
 * with these same options.
 */
export function kernelOptions (debug: boolean, flags: readonly string[]): Record<string, unknown> {
  return {
    fsname: ['dfs', 'big_writes', 'nonempty', 'use_ino', ...flags].join(','),
    subtype: 'dfs',
    autoCache: true,
    entryTimeout: '1',
    attrTimeout: '0',
    acAttrTimeout: '0',
    force: true,
    debug,
    timeout: { default: 60_000, open: 600_000, flush: false, release: false, fsync: false, create: 120_000, truncate: 600_000 }
  }
}

/** The kernel's read-ahead for a mount, in KiB: as large as one request may be (patch level 10's max_pages). */
export const READ_AHEAD_KB = 1024

/**
 * Raises the kernel's read-ahead for the mount at `mountpoint` from the 128 KiB every FUSE
 * mount starts with (its INIT answer can only lower it) to READ_AHEAD_KB, so that a
 * sequential read of a file comes in requests of 1 MiB, not 128 KiB: a cold read of 256 MiB
 * through a fresh mount, ten runs alternating, took a median of 322 MB/s before and 388
 * after. It is the mount's backing device's setting in sysfs, which only root may write:
 * false, and nothing changed, otherwise; it never throws. The device comes from
 * /proc/self/mountinfo, since a stat of the mount point by the process that serves it would
 * deadlock.
 */
export async function widenReadAhead (mountpoint: string): Promise<boolean> {
  try {
    const device = mountDeviceOf(await readFile('/proc/self/mountinfo', 'utf8'), mountpoint)
    if (device === undefined) return false
    await writeFile(`/sys/class/bdi/${device}/read_ahead_kb`, `${READ_AHEAD_KB}\n`)
    return true
  } catch {
    // Mounted already: a failure here costs the read-ahead only, never the mount.
    return false
  }
}

/** A path as /proc/mounts and mountinfo write it, which escape spaces, tabs, newlines and backslashes in octal (\040). */
function unescapedMountPath (field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** The major:minor of the last mount at `mountpoint` in a mountinfo text. */
export function mountDeviceOf (mountinfo: string, mountpoint: string): string | undefined {
  let device: string | undefined
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ')
    if (fields.length < 5) continue
    if (unescapedMountPath(fields[4]) === mountpoint) device = fields[2]
  }
  return device
}

export async function mountDfs (opts: MountOptions): Promise<MountedDfs> {
  const Fuse = loadFuse()
  const files = new OpenFileTable(opts.client)
  const operations = createFuseOperations(opts.client, files, opts.owner)
  const fuse: FuseInstance = new Fuse(opts.mountpoint, opts.wrapOperations?.(operations) ?? operations,
    kernelOptions(opts.debug ?? false, opts.kernelFlags ?? []))
  // Attributes the kernel keeps (operations.ts, kernelKeepsFor) go once their callback stops vouching.
  opts.client.onVouchEnded((path) => fuse.invalidateAttributes(path))
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())))
  await widenReadAhead(opts.mountpoint)
  // In the background: the mount serves at once, and the old copies count from when they are found.
  opts.client.cache.loadIndex().catch(() => {})
  let unmounted: Promise<void> | null = null
  return {
    mountpoint: opts.mountpoint,
    files,
    unmount: async () => {
      unmounted ??= (async () => {
        await files.flushAll()
        try {
          await new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())))
        } catch {
          // Busy, or unmounted already (fusermount -u behind our back): then there is nothing to detach.
          await lazyUnmount(opts.mountpoint).catch(async (err: unknown) => { if (await isMounted(opts.mountpoint)) throw err })
        } finally {
          // Leases and locks kept for this mount's programs go back now, not when they run out.
          await opts.client.shutdown()
        }
      })()
      await unmounted
    }
  }
}

/** Runs fusermount (which a normal user needs to unmount); its complaint, or null when it succeeded. */
export async function fusermount (args: string[]): Promise<string | null> {
  return await new Promise((resolve) => {
    execFile('fusermount', args, { timeout: 10_000 }, (err, _stdout, stderr) => resolve(err ? (stderr.trim() || err.message) : null))
  })
}

/** Detaches a busy or stale mount; it goes away once the last user lets go. */
export async function lazyUnmount (mountpoint: string): Promise<void> {
  const failure = await fusermount(['-u', '-z', mountpoint])
  if (failure !== null) throw new Error(failure)
}

/** Whether the kernel has a mount at this path. */
export async function isMounted (mountpoint: string): Promise<boolean> {
  const mounts = await readFile('/proc/mounts', 'utf8')
  return mounts.split('\n').some((line) => {
    const target = line.split(' ')[1]
    return target !== undefined && unescapedMountPath(target) === mountpoint
  })
}
