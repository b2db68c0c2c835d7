import fs from 'node:fs'
import path from 'node:path'
import { errnoOf } from '../src/fuse/errno'
import { FuseUnavailableError, loadFuse } from '../src/fuse/loadFuse'
import { kernelOptions } from '../src/fuse/mount'

/*
 * A minimal passthrough FUSE file system over a local folder, on the project's patched
 * fuse-native and with dfs's kernel options: the floor for any Node FUSE file system, which
 * the benchmark measures in the same run as dfs (bench/README.md). Every operation is one
 * asynchronous fs call on the backing folder, answered as fuse-native wants (a number first:
 * 0, a byte count, or a negative errno). It is a measuring tool, not a product: no caching,
 * no permissions of its own (the backing folder's apply to whoever runs it), no locks (libfuse
 * then leaves fcntl and flock locks to the kernel), nothing but what the workloads need.
 *
 *   node dist/bench/passthrough.js BACKING_FOLDER MOUNTPOINT
 *
 * It runs in a process of its own, so the benchmark can read the mount with synchronous calls.
 * It prints "mounted" once the kernel serves the mount, and unmounts on SIGTERM or SIGINT.
 */

type Callback = (code: number, ...values: unknown[]) => void
/** What the patched fuse-native (patch level 1) passes for each time of utimens. */
type TimeArgument = number | 'now' | 'omit'

/** Node's callback for an fs call with no result, answered as 0 or a negative errno. */
const done = (cb: Callback) => (err: NodeJS.ErrnoException | null): void => cb(err === null ? 0 : errnoOf(err))

/** A count (bytes read or written) or a negative errno. */
const counted = (cb: Callback) => (err: NodeJS.ErrnoException | null, n: number): void => cb(err === null ? n : errnoOf(err))

export function passthroughOperations (root: string): Record<string, unknown> {
  // libfuse hands over paths from the mount's root, starting with '/'.
  const backing = (p: string): string => root + p
  return {
    init: (cb: Callback) => cb(0),
    getattr: (p: string, cb: Callback) => fs.lstat(backing(p), (err, stat) => err === null ? cb(0, stat) : cb(errnoOf(err))),
    // Names only: libfuse 2 keeps nothing of a listing's attributes, so each lstat that
    // follows is a getattr of its own whatever this hands over.
    readdir: (p: string, cb: Callback) => fs.readdir(backing(p), (err, names) => err === null ? cb(0, ['.', '..', ...names]) : cb(errnoOf(err))),
    open: (p: string, flags: number, cb: Callback) => fs.open(backing(p), flags, (err, fd) => err === null ? cb(0, fd) : cb(errnoOf(err))),
    // The patched fuse-native (patch level 4) passes the open flags after the mode.
    create: (p: string, mode: number, flags: number, cb: Callback) =>
      fs.open(backing(p), flags | fs.constants.O_CREAT, mode, (err, fd) => err === null ? cb(0, fd) : cb(errnoOf(err))),
    read: (_p: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => fs.read(fd, buffer, 0, length, position, counted(cb)),
    write: (_p: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => fs.write(fd, buffer, 0, length, position, counted(cb)),
    // Writes went to the backing file as they came: nothing is held back until close.
    flush: (_p: string, _fd: number, cb: Callback) => cb(0),
    fsync: (_p: string, datasync: number, fd: number, cb: Callback) => (datasync !== 0 ? fs.fdatasync : fs.fsync)(fd, done(cb)),
    release: (_p: string, fd: number, cb: Callback) => fs.close(fd, done(cb)),
    truncate: (p: string, size: number, cb: Callback) => fs.truncate(backing(p), size, done(cb)),
    ftruncate: (_p: string, fd: number, size: number, cb: Callback) => fs.ftruncate(fd, size, done(cb)),
    unlink: (p: string, cb: Callback) => fs.unlink(backing(p), done(cb)),
    rename: (from: string, to: string, cb: Callback) => fs.rename(backing(from), backing(to), done(cb)),
    mkdir: (p: string, mode: number, cb: Callback) => fs.mkdir(backing(p), { mode }, done(cb)),
    rmdir: (p: string, cb: Callback) => fs.rmdir(backing(p), done(cb)),
    chmod: (p: string, mode: number, cb: Callback) => fs.chmod(backing(p), mode, done(cb)),
    // UTIME_OMIT keeps the time the file has, which fs.utimes needs spelled out (in seconds).
    utimens: (p: string, atime: TimeArgument, mtime: TimeArgument, cb: Callback) => fs.lstat(backing(p), (err, stat) => {
      if (err !== null) return cb(errnoOf(err))
      const secondsOf = (value: TimeArgument, currentMs: number): number => (value === 'now' ? Date.now() : value === 'omit' ? currentMs : value) / 1000
      fs.utimes(backing(p), secondsOf(atime, stat.atimeMs), secondsOf(mtime, stat.mtimeMs), done(cb))
    }),
    statfs: (p: string, cb: Callback) => fs.statfs(backing(p), (err, space) => err === null
      ? cb(0, { bsize: space.bsize, frsize: space.bsize, blocks: space.blocks, bfree: space.bfree, bavail: space.bavail, files: space.files, ffree: space.ffree, favail: space.ffree, namemax: 255 })
      : cb(errnoOf(err)))
  }
}

function main (argv: string[]): void {
  if (argv.length !== 2) {
    process.stderr.write('usage: passthrough.js BACKING_FOLDER MOUNTPOINT\n')
    process.exit(2)
  }
  const [root, mountpoint] = argv.map((arg) => path.resolve(arg))
  let Fuse
  try {
    Fuse = loadFuse()
  } catch (err) {
    process.stderr.write(`passthrough: ${err instanceof FuseUnavailableError ? err.message : String(err)}\n`)
    process.exit(1)
  }
  // dfs's options (src/fuse/mount.ts), under a subtype of its own so /proc/mounts tells them apart.
  const fuse = new Fuse(mountpoint, passthroughOperations(root), { ...kernelOptions(false, []), subtype: 'dfs-bench-passthrough' })
  fuse.mount((err) => {
    if (err !== null) {
      process.stderr.write(`passthrough: cannot mount ${mountpoint}: ${err.message}\n`)
      process.exit(1)
    }
    process.stdout.write('mounted\n')
  })
  let stopping = false
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) return
      stopping = true
      // fuse-native unmounts lazily (fusermount -u -z), so a busy mount goes too.
      fuse.unmount((err) => {
        if (err !== null) process.stderr.write(`passthrough: unmounting ${mountpoint} failed: ${err.message}\n`)
        process.exit(err === null ? 0 : 1)
      })
    })
  }
}

if (require.main === module) main(process.argv.slice(2))
