import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { O_ACCMODE } from '../src/client/openFiles'
import { errnoOf } from '../src/fuse/errno'
import { FuseUnavailableError, loadFuse } from '../src/fuse/loadFuse'
import { kernelOptions, widenReadAhead } from '../src/fuse/mount'
import { MemoryLocks } from './memoryLocks'

/*
 * A minimal passthrough FUSE file system over a local folder, on the project's patched
 * fuse-native and with dfs's kernel options: the floor for any Node FUSE file system, which
 * the benchmark measures in the same run as dfs (bench/README.md). Every operation is one fs
 * call on the backing folder, answered as fuse-native wants (a number first: 0, a byte count,
 * or a negative errno). It is a measuring tool, not a product: no caching,
 * no permissions of its own (the backing folder's apply to whoever runs it), no locks (libfuse
 * then leaves fcntl and flock locks to the kernel), nothing but what the workloads need.
 *
 *   node dist/bench/passthrough.js BACKING_FOLDER MOUNTPOINT [--async | --sync-server URL]
 *
 * The calls are synchronous unless --async is given: a trip through libuv's thread pool and
 * back costs two threads' wake-ups per operation, and on a busy machine that made the
 * asynchronous passthrough no floor at all (`ls -l` at 1,500 entries/s against 7,700, 1000
 * cached 4 KiB files at 608/s against 3,193, interleaved at load 7-11; dfs answers a getattr
 * from memory and passed it). The backing folder is a local one, never this mount, so
 * blocking on it cannot wait on ourselves; one request at a time is what the workloads send.
 *
 * With --sync-server, it is the durable floor instead: the close or fsync of a handle that
 * wrote sends the bytes written since its last one to bench/syncServer.ts, one bare
 * keep-alive request, and returns once that server has synced the file (and its folder, after
 * a create); an unlink has the server sync the folder. That is one request and one fsync
 * round per durable step, what it costs at least on a server, which dfs's appends, creates
 * and database transactions are measured against. A file opened for reading only has its
 * bytes fetched from that server as they are read from its disk (ArrivingBytes), one request
 * per open: the network floor of a read, which dfs's cold reads and first bytes are measured
 * against. Its fcntl locks come to the mount and are answered from memory (memoryLocks.ts), as
 * dfs must take them at its mount to share them between mounts.
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

/** The fs calls the passthrough makes, in Node's callback form. */
type FsCalls = Pick<typeof fs, 'lstat' | 'readdir' | 'open' | 'read' | 'write' | 'fsync' | 'fdatasync' | 'close' | 'truncate' | 'ftruncate' |
'unlink' | 'rename' | 'mkdir' | 'rmdir' | 'chmod' | 'utimes' | 'statfs'>

/**
 * The same calls made synchronously, each answered before the operation returns: one syscall
 * on the event loop's thread instead of a trip through libuv's thread pool and back.
 */
export function synchronousCalls (): FsCalls {
  const now = (call: (...args: never[]) => unknown) => (...args: unknown[]): void => {
    const cb = args.pop() as (err: unknown, value?: unknown) => void
    let value: unknown
    try {
      value = call(...(args as never[]))
    } catch (err) {
      cb(err)
      return
    }
    // A call with no result passes undefined after the null, which its callback ignores.
    cb(null, value)
  }
  return {
    lstat: now(fs.lstatSync),
    readdir: now(fs.readdirSync),
    open: now(fs.openSync),
    read: now(fs.readSync),
    write: now(fs.writeSync),
    fsync: now(fs.fsyncSync),
    fdatasync: now(fs.fdatasyncSync),
    close: now(fs.closeSync),
    truncate: now(fs.truncateSync),
    ftruncate: now(fs.ftruncateSync),
    unlink: now(fs.unlinkSync),
    rename: now(fs.renameSync),
    mkdir: now(fs.mkdirSync),
    rmdir: now(fs.rmdirSync),
    chmod: now(fs.chmodSync),
    utimes: now(fs.utimesSync),
    statfs: now(fs.statfsSync)
  } as unknown as FsCalls
}

/** @param calls how each fs call is made: Node's asynchronous ones (the default) or synchronousCalls(). */
export function passthroughOperations (root: string, calls: FsCalls = fs): Record<string, unknown> {
  // libfuse hands over paths from the mount's root, starting with '/'.
  const backing = (p: string): string => root + p
  return {
    init: (cb: Callback) => cb(0),
    getattr: (p: string, cb: Callback) => calls.lstat(backing(p), (err, stat) => err === null ? cb(0, stat) : cb(errnoOf(err))),
    // Names only: libfuse 2 keeps nothing of a listing's attributes, so each lstat that
    // follows is a getattr of its own whatever this hands over.
    readdir: (p: string, cb: Callback) => calls.readdir(backing(p), (err, names) => err === null ? cb(0, ['.', '..', ...names]) : cb(errnoOf(err))),
    open: (p: string, flags: number, cb: Callback) => calls.open(backing(p), flags, (err, fd) => err === null ? cb(0, fd) : cb(errnoOf(err))),
    // The patched fuse-native (patch level 4) passes the open flags after the mode.
    create: (p: string, mode: number, flags: number, cb: Callback) =>
      calls.open(backing(p), flags | fs.constants.O_CREAT, mode, (err, fd) => err === null ? cb(0, fd) : cb(errnoOf(err))),
    read: (_p: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => calls.read(fd, buffer, 0, length, position, counted(cb)),
    write: (_p: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => calls.write(fd, buffer, 0, length, position, counted(cb)),
    // Writes went to the backing file as they came: nothing is held back until close.
    flush: (_p: string, _fd: number, cb: Callback) => cb(0),
    fsync: (_p: string, datasync: number, fd: number, cb: Callback) => datasync !== 0 ? calls.fdatasync(fd, done(cb)) : calls.fsync(fd, done(cb)),
    release: (_p: string, fd: number, cb: Callback) => calls.close(fd, done(cb)),
    truncate: (p: string, size: number, cb: Callback) => calls.truncate(backing(p), size, done(cb)),
    ftruncate: (_p: string, fd: number, size: number, cb: Callback) => calls.ftruncate(fd, size, done(cb)),
    unlink: (p: string, cb: Callback) => calls.unlink(backing(p), done(cb)),
    rename: (from: string, to: string, cb: Callback) => calls.rename(backing(from), backing(to), done(cb)),
    mkdir: (p: string, mode: number, cb: Callback) => calls.mkdir(backing(p), { mode }, done(cb)),
    rmdir: (p: string, cb: Callback) => calls.rmdir(backing(p), done(cb)),
    chmod: (p: string, mode: number, cb: Callback) => calls.chmod(backing(p), mode, done(cb)),
    // UTIME_OMIT keeps the time the file has, which utimes needs spelled out (in seconds).
    utimens: (p: string, atime: TimeArgument, mtime: TimeArgument, cb: Callback) => calls.lstat(backing(p), (err, stat) => {
      if (err !== null) return cb(errnoOf(err))
      const secondsOf = (value: TimeArgument, currentMs: number): number => (value === 'now' ? Date.now() : value === 'omit' ? currentMs : value) / 1000
      calls.utimes(backing(p), secondsOf(atime, stat.atimeMs), secondsOf(mtime, stat.mtimeMs), done(cb))
    }),
    statfs: (p: string, cb: Callback) => calls.statfs(backing(p), (err, space) => err === null
      ? cb(0, { bsize: space.bsize, frsize: space.bsize, blocks: space.blocks, bfree: space.bfree, bavail: space.bavail, files: space.files, ffree: space.ffree, favail: space.ffree, namemax: 255 })
      : cb(errnoOf(err)))
  }
}

/**
 * A file's bytes as they come from the sync server (GET /content): a read waits for the bytes
 * it asks for and copies them from memory. The least a file system that fetches a file over
 * HTTP does on a read (no copy kept anywhere), the network floor of a cold read and of a
 * first byte.
 */
class ArrivingBytes {
  private readonly chunks: Buffer[] = []
  /** Where each chunk starts in the file. */
  private readonly starts: number[] = []
  private arrived = 0
  private size: number | null = null
  private failed = false
  private readonly waiting: Array<() => boolean> = []
  private readonly request: http.ClientRequest

  constructor (url: string, agent: http.Agent) {
    this.request = http.get(url, { agent }, (response) => {
      if (response.statusCode !== 200) {
        response.resume()
        this.fail()
        return
      }
      this.size = Number(response.headers['content-length'])
      response.on('data', (chunk: Buffer) => {
        this.starts.push(this.arrived)
        this.chunks.push(chunk)
        this.arrived += chunk.length
        this.wake()
      })
      response.once('error', () => this.fail())
      this.wake()
    })
    this.request.once('error', () => this.fail())
  }

  /** Answers `cb` with the bytes copied into `buffer` (fewer only at the file's end), or EIO. */
  read (buffer: Buffer, length: number, position: number, cb: Callback): void {
    const answered = (): boolean => {
      if (this.failed) {
        cb(-5) // EIO
        return true
      }
      if (this.size === null || this.arrived < Math.min(this.size, position + length)) return false
      cb(this.copy(buffer, length, position))
      return true
    }
    if (!answered()) this.waiting.push(answered)
  }

  /** Stops the transfer if it is still under way (a handle closed before its end). */
  close (): void {
    this.request.destroy()
  }

  private copy (buffer: Buffer, length: number, position: number): number {
    let copied = 0
    // The last chunk that starts at or before the position, by bisection.
    let low = 0
    let high = this.starts.length - 1
    while (low < high) {
      const middle = (low + high + 1) >> 1
      if (this.starts[middle] <= position) low = middle
      else high = middle - 1
    }
    for (let i = low; i < this.chunks.length && copied < length; i++) {
      const from = position + copied - this.starts[i]
      if (from >= this.chunks[i].length) continue
      copied += this.chunks[i].copy(buffer, copied, from, Math.min(this.chunks[i].length, from + length - copied))
    }
    return copied
  }

  private wake (): void {
    for (let i = 0; i < this.waiting.length;) {
      if (this.waiting[i]()) this.waiting.splice(i, 1)
      else i++
    }
  }

  private fail (): void {
    this.failed = true
    this.wake()
  }
}

/**
 * The passthrough's operations made durable on the sync server at `syncUrl`
 * (bench/syncServer.ts), one request each: the close and the fsync of a handle that wrote
 * since its last one (with those bytes as the body; after a create, its folder is synced
 * too), and an unlink (its folder). Calls are synchronous, as the plain passthrough's.
 */
export function durablePassthroughOperations (root: string, syncUrl: string): Record<string, unknown> {
  const operations = passthroughOperations(root, synchronousCalls())
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  /** Per open descriptor that wrote: its path, the bytes since its last sync, whether it was created. */
  const written = new Map<number, { path: string, chunks: Buffer[], created: boolean }>()
  const create = operations.create as (p: string, mode: number, flags: number, cb: Callback) => void
  const write = operations.write as (p: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => void
  const release = operations.release as (p: string, fd: number, cb: Callback) => void
  const unlink = operations.unlink as (p: string, cb: Callback) => void
  const open = operations.open as (p: string, flags: number, cb: Callback) => void
  const read = operations.read as (p: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => void
  /** Per descriptor opened for reading only: its bytes as they come from the server. */
  const fetched = new Map<number, ArrivingBytes>()
  const contentAgent = new http.Agent({ keepAlive: true })
  /** One request: the server syncs `rel` (a file, or with `folder` a folder) and answers 204. */
  const sync = (rel: string, body: Buffer, flags: string, cb: Callback): void => {
    const request = http.request(`${syncUrl}/sync?path=${encodeURIComponent(rel)}${flags}`, { method: 'POST', agent, headers: { 'content-length': body.length } }, (response) => {
      response.resume()
      response.once('end', () => cb(response.statusCode === 204 ? 0 : -5)) // EIO
    })
    request.once('error', () => cb(-5))
    request.end(body)
  }
  const syncWritten = (fd: number, cb: Callback): void => {
    const entry = written.get(fd)
    if (entry === undefined || (entry.chunks.length === 0 && !entry.created)) return cb(0)
    const body = Buffer.concat(entry.chunks)
    entry.chunks = []
    const flags = entry.created ? '&created=1' : ''
    entry.created = false
    sync(entry.path.slice(1), body, flags, cb)
  }
  return {
    ...operations,
    // fcntl locks come to the mount, as dfs's do (memoryLocks.ts): a database's locks cost the
    // floor the FUSE round trips they cost dfs.
    lock: new MemoryLocks().lock,
    // The local open still checks the name and gives the descriptor; the bytes come over HTTP.
    open: (p: string, flags: number, cb: Callback) => open(p, flags, (code, fd) => {
      if (code === 0 && (flags & O_ACCMODE) === fs.constants.O_RDONLY) {
        fetched.set(fd as number, new ArrivingBytes(`${syncUrl}/content?path=${encodeURIComponent(p.slice(1))}`, contentAgent))
      }
      cb(code, fd)
    }),
    read: (p: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => {
      const arriving = fetched.get(fd)
      if (arriving === undefined) read(p, fd, buffer, length, position, cb)
      else arriving.read(buffer, length, position, cb)
    },
    create: (p: string, mode: number, flags: number, cb: Callback) => create(p, mode, flags, (code, fd) => {
      if (code === 0) written.set(fd as number, { path: p, chunks: [], created: true })
      cb(code, fd)
    }),
    write: (p: string, fd: number, buffer: Buffer, length: number, position: number, cb: Callback) => write(p, fd, buffer, length, position, (count) => {
      if (count > 0) {
        const entry = written.get(fd) ?? { path: p, chunks: [], created: false }
        entry.chunks.push(Buffer.from(buffer.subarray(0, count)))
        written.set(fd, entry)
      }
      cb(count)
    }),
    flush: (_p: string, fd: number, cb: Callback) => syncWritten(fd, cb),
    fsync: (_p: string, _datasync: number, fd: number, cb: Callback) => syncWritten(fd, cb),
    unlink: (p: string, cb: Callback) => unlink(p, (code) => code !== 0 ? cb(code) : sync(path.posix.dirname(p).slice(1), Buffer.alloc(0), '&folder=1', cb)),
    release: (p: string, fd: number, cb: Callback) => {
      written.delete(fd)
      fetched.get(fd)?.close()
      fetched.delete(fd)
      release(p, fd, cb)
    }
  }
}

function main (argv: string[]): void {
  const asynchronous = argv[2] === '--async'
  const syncUrl = argv[2] === '--sync-server' ? argv[3] : undefined
  if (argv.length !== (asynchronous ? 3 : syncUrl !== undefined ? 4 : 2)) {
    process.stderr.write('usage: passthrough.js BACKING_FOLDER MOUNTPOINT [--async | --sync-server URL]\n')
    process.exit(2)
  }
  const [root, mountpoint] = argv.slice(0, 2).map((arg) => path.resolve(arg))
  let Fuse
  try {
    Fuse = loadFuse()
  } catch (err) {
    process.stderr.write(`passthrough: ${err instanceof FuseUnavailableError ? err.message : String(err)}\n`)
    process.exit(1)
  }
  // dfs's options (src/fuse/mount.ts), under a subtype of its own so /proc/mounts tells them apart.
  const operations = syncUrl !== undefined ? durablePassthroughOperations(root, syncUrl) : passthroughOperations(root, asynchronous ? fs : synchronousCalls())
  const fuse = new Fuse(mountpoint, operations, { ...kernelOptions(false, []), subtype: 'dfs-bench-passthrough' })
  fuse.mount((err) => {
    if (err !== null) {
      process.stderr.write(`passthrough: cannot mount ${mountpoint}: ${err.message}\n`)
      process.exit(1)
    }
    // dfs's read-ahead as well, so the network floor's cold read is measured as dfs's is.
    void widenReadAhead(mountpoint).then(() => process.stdout.write('mounted\n'))
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
