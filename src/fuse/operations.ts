import os from 'node:os'
import type { DfsClient } from '../client/dfsClient'
import type { OpenFileTable } from '../client/openFiles'
import type { FileMeta } from '../protocol'
import { errnoOf } from './errno'

type Callback = (code: number, ...values: unknown[]) => void

export interface FuseStat {
  mode: number
  size: number
  nlink: number
  uid: number
  gid: number
  blocks: number
  blksize: number
  mtime: number
  atime: number
  ctime: number
}

const S_IFREG = 0o100000
const S_IFDIR = 0o040000
const EROFS = -os.constants.errno.EROFS
const ENOTSUP = -os.constants.errno.ENOTSUP

export function statOf (meta: FileMeta, extraBytes = 0): FuseStat {
  const isDir = meta.kind === 'dir'
  const size = meta.size + extraBytes
  const mtime = meta.mtimeMs || Date.now()
  return {
    mode: isDir ? S_IFDIR | 0o755 : S_IFREG | 0o644,
    size,
    nlink: isDir ? 2 : 1,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    blocks: Math.ceil(size / 512),
    blksize: 4096,
    mtime,
    atime: mtime,
    ctime: mtime
  }
}

/**
 * Answers a FUSE callback from a promise. fuse-native needs a number as the first argument
 * of every callback (anything else leaves the kernel request hanging), so every outcome,
 * thrown or not, ends in exactly one numeric answer.
 */
function answer<T> (cb: Callback, work: () => Promise<T>, reply: (value: T) => unknown[] = () => []): void {
  work().then(
    (value) => cb(0, ...reply(value)),
    (err: unknown) => cb(errnoOf(err))
  )
}

/**
 * The FUSE operations: a thin adapter from syscalls to the client proxy and its open-file
 * table. Nothing here decides anything about caching, locking or versions.
 */
export function createFuseOperations (client: DfsClient, files: OpenFileTable): Record<string, unknown> {
  const refuse = (code: number) => (...args: unknown[]) => (args[args.length - 1] as Callback)(code)
  return {
    init: (cb: Callback) => cb(0),
    getattr: (path: string, cb: Callback) => answer(cb, async () => {
      const meta = await client.stat(path)
      return statOf(meta, meta.kind === 'file' ? files.pendingBytesOf(meta.path) : 0)
    }, (stat) => [stat]),
    readdir: (path: string, cb: Callback) => answer(cb, async () => await client.list(path), (entries) => {
      const self = statOf({ path, kind: 'dir', version: 0, size: 0, mtimeMs: 0 })
      return [['.', '..', ...entries.map((e) => e.name)], [self, self, ...entries.map((e) => statOf(e))]]
    }),
    open: (path: string, flags: number, cb: Callback) => answer(cb, async () => await files.open(path, flags), (id) => [id]),
    read: (_path: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => {
      files.read(fd, buffer, length, position).then((n) => cb(n), (err: unknown) => cb(errnoOf(err)))
    },
    write: (_path: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => {
      files.write(fd, buffer.subarray(0, length), position).then((n) => cb(n), (err: unknown) => cb(errnoOf(err)))
    },
    flush: (_path: string, fd: number, cb: Callback) => answer(cb, async () => await files.flush(fd)),
    fsync: (_path: string, _datasync: number, fd: number, cb: Callback) => answer(cb, async () => await files.flush(fd)),
    release: (_path: string, fd: number, cb: Callback) => answer(cb, async () => await files.release(fd)),
    opendir: (_path: string, _flags: number, cb: Callback) => cb(0, 0),
    releasedir: (_path: string, _fd: number, cb: Callback) => cb(0),
    access: (path: string, _mode: number, cb: Callback) => answer(cb, async () => await client.stat(path)),
    statfs: (_path: string, cb: Callback) => cb(0, { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, namemax: 255 }),
    create: refuse(EROFS),
    truncate: refuse(EROFS),
    ftruncate: refuse(EROFS),
    unlink: refuse(EROFS),
    rename: refuse(EROFS),
    mkdir: refuse(EROFS),
    rmdir: refuse(EROFS),
    symlink: refuse(ENOTSUP),
    link: refuse(ENOTSUP),
    mknod: refuse(EROFS),
    chmod: refuse(EROFS),
    chown: refuse(EROFS),
    utimens: refuse(EROFS),
    setxattr: refuse(ENOTSUP),
    removexattr: refuse(ENOTSUP)
  }
}
