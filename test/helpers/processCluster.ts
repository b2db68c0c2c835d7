import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import type { Test } from 'tap'
import { DfsClient } from '../../src/client/dfsClient'
import type { DfsClientOptions } from '../../src/client/dfsClient'
import { isMounted } from '../../src/fuse/mount'
import { writeTree } from './cluster'
import { credentialsWithKeyFile, noteCaller } from './credentials'
import type { TestCredentials } from './credentials'
import { requireFuse, run } from './mount'
import { cleanEnv, repoRoot } from './processes'
import { waitFor, within } from './waitFor'

/*
 * A cluster whose every server, and every mount, is an OS process of its own, so that a test
 * can do to one of them what really happens to machines: SIGKILL (crash), SIGSTOP (a hang:
 * the socket still accepts, nothing answers), SIGCONT, and restart on the same port with the
 * same data. The in-process cluster (cluster.ts) cannot do any of that.
 *
 *   const c = await startProcessCluster(t, { trees: [{ 'notes/a.txt': 'hi' }] })
 *   await c.files[0].kill(); await c.files[0].restart()
 *   c.lock.stop(); ...; c.lock.cont()
 *   const m = await c.mount(); await m.kill(); await m.restart()
 *
 * Everything is torn down by t.teardown, failed test or not: stopped processes get SIGCONT
 * first (a stopped process cannot act on SIGTERM), mounts are unmounted, the work folder goes.
 */

const dfsServeBin = path.join(repoRoot, 'bin', 'dfs-serve')
const dfsMountBin = path.join(repoRoot, 'bin', 'dfs-mount')

const START_DEADLINE_MS = 15_000
const MOUNT_DEADLINE_MS = 20_000
const EXIT_DEADLINE_MS = 10_000
/** What output() keeps of a process, so a chatty one cannot grow the test's memory. */
const OUTPUT_LIMIT = 64 * 1024

const LISTENING = /listening on (https?:\/\/\S+)/
const MOUNTED = /\bmounted .* at /

export type ServerKind = 'directory' | 'lock' | 'file'

/** What a managed process can be made to do; servers and mounts share it. */
export interface ManagedProcess {
  readonly name: string
  /** pid of the current incarnation (changes on restart). */
  readonly pid: number
  /** Everything this process printed, over all its incarnations, to explain a failure. */
  output: () => string
  /** Running, or stopped: not yet exited. */
  alive: () => boolean
  /** SIGKILL, and wait until the process is gone. A crash: no cleanup runs. */
  kill: () => Promise<void>
  /** SIGSTOP, and wait until the kernel shows it stopped. A hang: connections are still accepted. */
  stop: () => Promise<void>
  /** SIGCONT, and wait until the kernel shows it running again. */
  cont: () => Promise<void>
  /** Kills it if it still runs, and starts it again with the same arguments; resolves once it is ready. */
  restart: () => Promise<void>
}

export interface ServerProcess extends ManagedProcess {
  readonly kind: ServerKind
  /** Stays the same over restarts: a restart binds the port the first start got. */
  readonly url: string
  readonly port: number
  /** A file server's folder; kept over restarts. */
  readonly root: string | null
  /** Polls GET /health until it answers 200; gives back its body. */
  waitHealthy: (timeoutMs?: number) => Promise<Record<string, unknown>>
}

export interface MountProcess extends ManagedProcess {
  readonly mountpoint: string
  readonly cacheDir: string
  /** The path of a dfs path on this mount: at('/notes/a.txt'). */
  at: (dfsPath: string) => string
  /** SIGTERM: the daemon unmounts and exits, as on a normal shutdown. */
  unmount: () => Promise<void>
}

export interface ProcessClusterOptions {
  /** One file server per tree, each with a root folder of its own filled from the tree. */
  trees?: Array<Record<string, string>>
  /** Extra arguments to `dfs-serve lock`, e.g. ['--lease-ms', '2000']. */
  lockArgs?: string[]
  /** Extra arguments to every server, e.g. ['--tls-cert', F, '--tls-key', K, '--ca', CA]. */
  serverArgs?: string[]
}

export interface ProcessCluster {
  /** Holds the roots, cache folders, mount points and the lock server's state; removed at teardown. */
  workDir: string
  /** The lock server's --state-dir: what it keeps over a restart. */
  lockStateDir: string
  /** The cluster key (every server's --cluster-key) and tokens of it; clients and mounts send `credentials.write`. */
  credentials: TestCredentials & { keyFile: string }
  directory: ServerProcess
  lock: ServerProcess
  files: ServerProcess[]
  /** Starts one more file server on a new root filled from `tree`; `env` is added to its environment (DFS_CRASH_AT). */
  addFileServer: (tree?: Record<string, string>, env?: NodeJS.ProcessEnv) => Promise<ServerProcess>
  /** A DfsClient of this test process, with a cache folder of its own. Defaults: timeoutMs 2000. */
  client: (opts?: DfsClientOptions) => DfsClient
  /**
   * Mounts the cluster with `dfs-mount --foreground` in a child process on a fresh mount point.
   * `env` is added to its environment; `tokenFile: false` leaves out --token-file, so the mount
   * reads its token from the default places (give it a HOME of the test's own).
   */
  mount: (extraArgs?: string[], opts?: { env?: NodeJS.ProcessEnv, tokenFile?: boolean }) => Promise<MountProcess>
}

/** Everything any test in this process started, so an abrupt exit still leaves nothing behind. */
const liveChildren = new Set<ChildProcess>()
const liveMountpoints = new Set<string>()
process.once('exit', () => {
  // Only synchronous work is possible here; teardown normally did all of this already.
  for (const child of liveChildren) {
    child.kill('SIGCONT')
    child.kill('SIGKILL')
  }
  for (const mountpoint of liveMountpoints) spawnSync('fusermount', ['-u', '-z', mountpoint], { timeout: 5000 })
})

/** The kernel's state letter of a process (R, S, T, Z, ...), or null once it is gone. */
function processState (pid: number): string | null {
  try {
    // /proc/PID/stat is "pid (comm) state ...": comm may hold spaces and ')', so cut at the last ')'.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  } catch {
    return null
  }
}


interface Incarnation {
  child: ChildProcess
  exited: Promise<void>
}

/**
 * One OS process and its restarts: `node args...` in the repository, clean environment,
 * output kept. start() resolves with the first stdout line matching `ready`, and fails with
 * the process's output if it exits or stays silent first.
 */
class Supervised {
  private current: Incarnation | null = null
  private log = ''

  constructor (readonly name: string, private readonly env: NodeJS.ProcessEnv = cleanEnv()) {}

  get pid (): number {
    const pid = this.current?.child.pid
    if (pid === undefined) throw new Error(`${this.name} is not running`)
    return pid
  }

  output (): string {
    return this.log
  }

  alive (): boolean {
    const child = this.current?.child
    return child !== undefined && child.exitCode === null && child.signalCode === null
  }

  async start (args: string[], ready: RegExp, timeoutMs = START_DEADLINE_MS): Promise<string> {
    if (this.alive()) throw new Error(`${this.name} is already running (pid ${this.pid})`)
    const child = spawn(process.execPath, args, { cwd: repoRoot, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    this.current = { child, exited }
    liveChildren.add(child)
    void exited.then(() => liveChildren.delete(child))
    const keep = (chunk: string): void => {
      this.log = (this.log + chunk).slice(-OUTPUT_LIMIT)
    }
    keep(`--- ${this.name}: node ${args.join(' ')}\n`)
    child.stderr!.setEncoding('utf8').on('data', keep)
    const lines = readline.createInterface({ input: child.stdout! })
    let timer: NodeJS.Timeout | undefined
    try {
      return await new Promise<string>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`${this.name} printed no line matching ${ready} within ${timeoutMs} ms; output:\n${this.log}`)), timeoutMs)
        lines.on('line', (line) => {
          keep(line + '\n')
          const match = ready.exec(line)
          if (match) resolve(match[1] ?? line)
        })
        child.once('error', reject)
        void exited.then(() => reject(new Error(`${this.name} exited (${child.exitCode ?? child.signalCode}) before it was ready; output:\n${this.log}`)))
      })
    } catch (err) {
      child.kill('SIGKILL')
      await exited
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  async signal (signal: NodeJS.Signals): Promise<void> {
    if (!this.alive()) throw new Error(`${this.name} is not running; cannot send ${signal}`)
    this.current!.child.kill(signal)
  }

  async kill (): Promise<void> {
    if (!this.alive()) return
    const { child, exited } = this.current!
    child.kill('SIGKILL') // delivered to a stopped process too
    if (!(await within(exited, EXIT_DEADLINE_MS))) throw new Error(`${this.name} (pid ${child.pid}) did not die of SIGKILL within ${EXIT_DEADLINE_MS} ms`)
  }

  async stop (): Promise<void> {
    await this.signal('SIGSTOP')
    const pid = this.pid
    await waitFor(`${this.name} to be stopped`, async () => processState(pid) === 'T', 5000, 10)
  }

  async cont (): Promise<void> {
    await this.signal('SIGCONT')
    const pid = this.pid
    await waitFor(`${this.name} to run again`, async () => processState(pid) !== 'T', 5000, 10)
  }

  /** Ends the process politely (SIGCONT, then `signal`), then by SIGKILL; never throws. */
  async end (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.alive()) return
    const { child, exited } = this.current!
    child.kill('SIGCONT') // a stopped process would hold SIGTERM pending forever
    child.kill(signal)
    if (await within(exited, EXIT_DEADLINE_MS)) return
    process.stderr.write(`${this.name} (pid ${child.pid}) ignored ${signal} for ${EXIT_DEADLINE_MS} ms; killing it. Output:\n${this.log}\n`)
    child.kill('SIGKILL')
    await within(exited, EXIT_DEADLINE_MS)
  }
}

async function getHealth (url: string): Promise<Record<string, unknown> | false> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })
    if (!res.ok) return false
    return await res.json() as Record<string, unknown>
  } catch {
    return false // refused, reset or silent: not healthy yet
  }
}

/**
 * Starts one server process with `dfs-serve KIND args... --port 0` and reads back the URL it
 * printed; restarts reuse that port, so whoever knows the URL (clients, file servers, the
 * directory's map) reaches the new incarnation.
 */
async function startServer (kind: ServerKind, name: string, args: string[], root: string | null, env: NodeJS.ProcessEnv = {}): Promise<{ server: ServerProcess, proc: Supervised }> {
  const proc = new Supervised(name, { ...cleanEnv(), ...env })
  const url = await proc.start([dfsServeBin, kind, ...args, '--port', '0'], LISTENING)
  const port = Number(new URL(url).port)
  const server: ServerProcess = {
    kind,
    name,
    url,
    port,
    root,
    get pid () { return proc.pid },
    output: () => proc.output(),
    alive: () => proc.alive(),
    kill: async () => await proc.kill(),
    stop: async () => await proc.stop(),
    cont: async () => await proc.cont(),
    restart: async () => {
      await proc.kill()
      // The port was free a moment ago: SIGKILL closed the listening socket and Node binds
      // with SO_REUSEADDR, so TIME_WAIT connections of the old incarnation do not block it.
      const again = await proc.start([dfsServeBin, kind, ...args, '--port', String(port)], LISTENING)
      if (again !== url) throw new Error(`${name} came back at ${again}, not ${url}`)
      await server.waitHealthy()
    },
    waitHealthy: async (timeoutMs = START_DEADLINE_MS) => await waitFor(`${name} to answer ${url}/health`, async () => {
      if (!proc.alive()) throw new Error(`${name} is not running; output:\n${proc.output()}`)
      return await getHealth(url)
    }, timeoutMs, 50)
  }
  return { server, proc }
}

/**
 * Starts a directory server, a lock server and one file server per tree, each in its own
 * process, and tears it all down when the test ends.
 */
export async function startProcessCluster (t: Test, opts: ProcessClusterOptions = {}): Promise<ProcessCluster> {
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-proc-'))
  const ends: Array<() => Promise<void>> = []
  const mounts: MountProcess[] = []
  let clients = 0

  // One teardown that ends everything in reverse order of start, so mounts go before the
  // servers they use, and the work folder is removed only once nothing is mounted in it.
  t.teardown(async () => {
    for (const end of ends.reverse()) {
      try {
        await end()
      } catch (err) {
        process.stderr.write(`teardown: ${String(err)}\n`)
      }
    }
    const leftover = []
    for (const mount of mounts) if (await isMounted(mount.mountpoint)) leftover.push(mount.mountpoint)
    if (leftover.length > 0) {
      // Never delete under a live mount: that would delete files in the cluster's roots.
      process.stderr.write(`LEFTOVER MOUNT: ${leftover.join(', ')}; run fusermount -u -z on it. Keeping ${workDir}\n`)
      return
    }
    // A client a test left open may still write its cache's index there for a moment (ENOTEMPTY): asked again.
    await fsp.rm(workDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
  })

  const supervisedServer = async (kind: ServerKind, name: string, args: string[], root: string | null, env?: NodeJS.ProcessEnv): Promise<ServerProcess> => {
    const { server, proc } = await startServer(kind, name, args, root, env)
    // SIGKILL is enough for a server: it keeps nothing in memory worth flushing (file writes
    // are on disk before they are answered), and it is what the tests exercise anyway.
    ends.push(async () => await proc.end('SIGKILL'))
    return server
  }

  // Their state (machine ids, the lock journal) and the cluster key live in the work folder,
  // kept over their restarts, never in the developer's home.
  const credentials = credentialsWithKeyFile(path.join(workDir, 'secrets'))
  const keyArgs = ['--cluster-key', credentials.keyFile, ...opts.serverArgs ?? []]
  const tokenFile = path.join(workDir, 'secrets', 'token')
  fs.writeFileSync(tokenFile, credentials.write + '\n', { mode: 0o600 })
  // The lock server first: the directory server's status (dfs status, /status) asks it for the locks held.
  const lockStateDir = path.join(workDir, 'lock-state')
  const lock = await supervisedServer('lock', 'lock server', ['--state-dir', lockStateDir, ...keyArgs, ...opts.lockArgs ?? []], null)
  const directory = await supervisedServer('directory', 'directory server', ['--state-dir', path.join(workDir, 'directory-state'), '--lock', lock.url, ...keyArgs], null)
  const files: ServerProcess[] = []
  let fileServersStarted = 0
  const addFileServer = async (tree: Record<string, string> = {}, env?: NodeJS.ProcessEnv): Promise<ServerProcess> => {
    // Counted apart from `files`, so a start that failed (a clash) never lends its root to the next.
    const n = ++fileServersStarted
    const root = path.join(workDir, `root-${n}`)
    fs.mkdirSync(root, { recursive: true })
    writeTree(root, tree)
    const server = await supervisedServer('file', `file server ${n}`, ['--root', root, '--directory', directory.url, '--lock', lock.url, ...keyArgs], root, env)
    noteCaller(server, credentials.caller)
    files.push(server)
    return server
  }
  for (const tree of opts.trees ?? [{}]) await addFileServer(tree)

  const mount = async (extraArgs: string[] = [], opts: { env?: NodeJS.ProcessEnv, tokenFile?: boolean } = {}): Promise<MountProcess> => {
    requireFuse()
    const n = mounts.length + 1
    const base = path.join(workDir, `mount-${n}`)
    const mountpoint = path.join(base, 'mnt')
    const cacheDir = path.join(base, 'cache')
    await fsp.mkdir(mountpoint, { recursive: true })
    // Its state file and logs stay under base, not in the developer's home.
    const proc = new Supervised(`mount ${n}`, { ...cleanEnv(), XDG_STATE_HOME: path.join(base, 'state'), ...opts.env })
    const tokenArgs = opts.tokenFile === false ? [] : ['--token-file', tokenFile]
    const args = [dfsMountBin, mountpoint, '--foreground', '--directory', directory.url, '--lock', lock.url, '--cache-dir', cacheDir, ...tokenArgs, ...extraArgs]
    const detach = async (): Promise<void> => {
      // A daemon that died leaves the mount point "not connected" until it is detached.
      if (await isMounted(mountpoint)) {
        const result = await run('fusermount', ['-u', '-z', mountpoint])
        if (result.code !== 0) throw new Error(`fusermount -u -z ${mountpoint} failed: ${result.stderr.trim()}`)
      }
      await waitFor(`${mountpoint} to be unmounted`, async () => !(await isMounted(mountpoint)), 5000, 20)
      liveMountpoints.delete(mountpoint)
    }
    const start = async (): Promise<void> => {
      liveMountpoints.add(mountpoint)
      await proc.start(args, MOUNTED, MOUNT_DEADLINE_MS)
      await waitFor(`${mountpoint} to show in /proc/mounts`, async () => {
        if (!proc.alive()) throw new Error(`${proc.name} exited before mounting; output:\n${proc.output()}`)
        return await isMounted(mountpoint)
      }, MOUNT_DEADLINE_MS, 20)
    }
    const handle: MountProcess = {
      name: proc.name,
      mountpoint,
      cacheDir,
      get pid () { return proc.pid },
      at: (dfsPath) => path.join(mountpoint, dfsPath),
      output: () => proc.output(),
      alive: () => proc.alive(),
      kill: async () => {
        await proc.kill()
        await detach()
      },
      stop: async () => await proc.stop(),
      cont: async () => await proc.cont(),
      restart: async () => {
        await handle.kill()
        await start()
      },
      unmount: async () => {
        await proc.end('SIGTERM')
        await detach()
      }
    }
    mounts.push(handle)
    ends.push(async () => {
      try {
        await proc.end('SIGTERM')
      } finally {
        await detach()
      }
    })
    await start()
    return handle
  }

  return {
    workDir,
    lockStateDir,
    credentials,
    directory,
    lock,
    files,
    addFileServer,
    mount,
    client: (clientOpts = {}) => new DfsClient({
      directoryUrl: directory.url,
      lockUrl: lock.url,
      cacheDir: path.join(workDir, `cache-${++clients}`),
      timeoutMs: 2000,
      caller: credentials.caller,
      ...clientOpts
    })
  }
}
