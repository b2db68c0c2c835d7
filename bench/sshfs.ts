import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { isMounted } from '../src/fuse/mount'

/*
 * An sshfs mount of a local folder through a throwaway sshd on loopback, for the benchmark's
 * comparison column. Everything lives in a temp folder of its own: host key, client key,
 * authorized_keys, sshd config and pid file. /etc/ssh and the system's ssh service are never
 * touched, so a machine with openssh-server installed but not running stays as it was.
 */

const SSHD = '/usr/sbin/sshd'
const START_DEADLINE_MS = 10_000
const STOP_DEADLINE_MS = 10_000
/** OpenSSH's privilege separation chroot, compiled in; the ssh service creates it at start, which we do not run. */
const PRIVSEP_DIR = '/run/sshd'

const execFileAsync = promisify(execFile)
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** The first of `names` on PATH (or the absolute path itself if it exists), or null. */
export function findProgram (...names: string[]): string | null {
  for (const name of names) {
    const candidates = path.isAbsolute(name) ? [name] : (process.env.PATH ?? '').split(':').filter(Boolean).map((dir) => path.join(dir, name))
    for (const candidate of candidates) {
      try {
        fs.accessSync(candidate, fs.constants.X_OK)
        return candidate
      } catch {
        // not here
      }
    }
  }
  return null
}

/** Null when sshfs can be compared here, else the one line that says what is missing. */
export function sshfsMissing (): string | null {
  const missing = [
    findProgram('sshfs') === null ? 'sshfs' : null,
    findProgram(SSHD) === null ? SSHD : null,
    findProgram('ssh-keygen') === null ? 'ssh-keygen' : null,
    findProgram('fusermount3', 'fusermount') === null ? 'fusermount' : null
  ].filter((name): name is string => name !== null)
  return missing.length === 0 ? null : `no sshfs column: ${missing.join(', ')} not installed (apt-get install sshfs openssh-server)`
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

function collect (child: ChildProcess): () => string {
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  return () => output
}

const alive = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null

async function stopChild (child: ChildProcess | null): Promise<void> {
  if (child === null || !alive(child)) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const stopped = await Promise.race([exited.then(() => true), sleep(STOP_DEADLINE_MS).then(() => false)])
  if (!stopped) {
    child.kill('SIGKILL')
    await exited
  }
}

export class SshfsMount {
  private sshd: ChildProcess | null = null
  private sshfs: ChildProcess | null = null
  private mounted = false

  /**
   * @param stateDir an empty folder for keys, config and pid file
   * @param tree the local folder to serve
   * @param mountpoint an empty folder to mount it on
   */
  constructor (private readonly stateDir: string, private readonly tree: string, readonly mountpoint: string) {}

  async start (): Promise<void> {
    await fsp.mkdir(this.stateDir, { recursive: true })
    await fsp.mkdir(this.mountpoint, { recursive: true })
    const hostKey = path.join(this.stateDir, 'host_key')
    const clientKey = path.join(this.stateDir, 'client_key')
    const authorized = path.join(this.stateDir, 'authorized_keys')
    for (const key of [hostKey, clientKey]) await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'dfs-bench', '-f', key])
    await fsp.copyFile(`${clientKey}.pub`, authorized)
    const config = path.join(this.stateDir, 'sshd_config')
    await fsp.writeFile(config, [
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorized}`,
      `PidFile ${path.join(this.stateDir, 'sshd.pid')}`,
      // The temp folder is not laid out the way StrictModes wants, and PAM would read /etc/pam.d.
      'StrictModes no',
      'UsePAM no',
      // The benchmark runs as root; keys only, from this machine only (ListenAddress on the command line).
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      // In-process sftp: no dependence on where the distribution put sftp-server.
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      ''
    ].join('\n'))
    await fsp.mkdir(PRIVSEP_DIR, { recursive: true, mode: 0o755 })
    const port = await freePort()
    // -e: errors to stderr, which we keep for the error message.
    this.sshd = spawn(SSHD, ['-D', '-e', '-f', config, '-p', String(port), '-o', 'ListenAddress=127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const sshdOutput = collect(this.sshd)
    const deadline = Date.now() + START_DEADLINE_MS
    while (!(await accepts(port))) {
      if (!alive(this.sshd)) throw new Error(`sshd exited (${this.sshd.exitCode ?? this.sshd.signalCode}): ${sshdOutput().trim()}`)
      if (Date.now() > deadline) throw new Error(`sshd did not listen on port ${port} within ${START_DEADLINE_MS} ms: ${sshdOutput().trim()}`)
      await sleep(50)
    }
    // -f: sshfs stays our child, so we can stop it if the unmount does not end it.
    this.sshfs = spawn(findProgram('sshfs') ?? 'sshfs', ['-f', '-p', String(port), '-o',
      `IdentityFile=${clientKey},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR`,
      `${os.userInfo().username}@127.0.0.1:${this.tree}`, this.mountpoint], { stdio: ['ignore', 'pipe', 'pipe'] })
    const sshfsOutput = collect(this.sshfs)
    while (!(await isMounted(this.mountpoint))) {
      if (!alive(this.sshfs)) throw new Error(`sshfs exited (${this.sshfs.exitCode ?? this.sshfs.signalCode}) before mounting: ${sshfsOutput().trim()} ${sshdOutput().trim()}`)
      if (Date.now() > deadline) throw new Error(`sshfs not mounted within ${START_DEADLINE_MS} ms: ${sshfsOutput().trim()}`)
      await sleep(50)
    }
    this.mounted = true
  }

  /** Unmounts (lazily if busy), ends sshfs and sshd; true when no mount is left. Safe to call twice. */
  async stop (): Promise<boolean> {
    const fusermount = findProgram('fusermount3', 'fusermount') ?? 'fusermount'
    if (this.mounted || await isMounted(this.mountpoint)) {
      await execFileAsync(fusermount, ['-u', this.mountpoint]).catch(async () => await execFileAsync(fusermount, ['-u', '-z', this.mountpoint]).catch(() => {}))
    }
    await stopChild(this.sshfs)
    await stopChild(this.sshd)
    this.mounted = await isMounted(this.mountpoint)
    return !this.mounted
  }
}
