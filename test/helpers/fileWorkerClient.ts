import { spawn } from 'node:child_process'
import path from 'node:path'
import readline from 'node:readline'
import type { Test } from 'tap'
import { cleanEnv, repoRoot } from './processes'
import type { WorkerAnswer, WorkerCommand } from './fileWorkerProtocol'

const workerScript = path.join(__dirname, 'fileWorker.js')
/** Long enough that only a hang hits it: the mount's own network timeouts are a few seconds. */
const DEFAULT_COMMAND_TIMEOUT_MS = 30_000
const STOP_DEADLINE_MS = 5_000

/** A command the worker ran and that failed, with the errno code it got (EIO, ENOENT...). */
export class WorkerError extends Error {
  constructor (readonly code: string, message: string) {
    super(message)
  }
}

/**
 * A long-lived child process holding open files on a mount for the test process, which must
 * not do file I/O on a mount itself. Commands run one at a time, in order; each is given up
 * (and the worker killed) after a deadline, so a hung FUSE request fails the test instead of
 * freezing it. The worker is killed at teardown, before the mount it uses is taken down.
 */
export class FileWorker {
  private readonly waiting = new Map<number, { resolve: (a: WorkerAnswer) => void, reject: (e: Error) => void }>()
  private seq = 0
  private stderr = ''
  private dead: Error | null = null

  private constructor (
    private readonly child: ReturnType<typeof spawn>,
    readonly exited: Promise<void>,
    private readonly commandTimeoutMs: number
  ) {
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk })
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const answer = JSON.parse(line) as WorkerAnswer
      this.waiting.get(answer.seq)?.resolve(answer)
      this.waiting.delete(answer.seq)
    })
    void exited.then(() => this.fail(new Error(`the file worker exited; it printed: ${this.stderr.trim()}`)))
  }

  static async start (t: Test, opts: { commandTimeoutMs?: number } = {}): Promise<FileWorker> {
    const child = spawn(process.execPath, [workerScript], { cwd: repoRoot, env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.stdin.on('error', () => {}) // it died; the pending command reports that
    const worker = new FileWorker(child, exited, opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS)
    const onExit = (): void => { child.kill('SIGKILL') }
    process.once('exit', onExit)
    t.teardown(async () => {
      process.removeListener('exit', onExit)
      await worker.stop()
    })
    return worker
  }

  /** Runs a command; a failure on the worker's side is an answer (ok: false), not an exception. */
  async send (command: WorkerCommand, timeoutMs = this.commandTimeoutMs): Promise<WorkerAnswer> {
    if (this.dead) throw this.dead
    const seq = ++this.seq
    let timer: NodeJS.Timeout | undefined
    try {
      return await new Promise<WorkerAnswer>((resolve, reject) => {
        this.waiting.set(seq, { resolve, reject })
        timer = setTimeout(() => {
          this.fail(new Error(`file worker: ${command.op} got no answer within ${timeoutMs} ms (a hung file operation); worker killed`))
          this.child.kill('SIGKILL')
        }, timeoutMs)
        this.child.stdin!.write(JSON.stringify({ ...command, seq }) + '\n')
      })
    } finally {
      clearTimeout(timer)
    }
  }

  async open (file: string, flags: string | number): Promise<number> {
    return (await this.must({ op: 'open', path: file, flags })).fd as number
  }

  async write (fd: number, data: Buffer, position: number | null): Promise<void> {
    await this.must({ op: 'write', fd, data: data.toString('base64'), position })
  }

  async truncate (fd: number, size: number): Promise<void> {
    await this.must({ op: 'truncate', fd, size })
  }

  /** The whole file, read through the handle from offset 0 to EOF. */
  async read (fd: number): Promise<Buffer> {
    return Buffer.from((await this.must({ op: 'read', fd })).data as string, 'base64')
  }

  async readPath (file: string): Promise<Buffer> {
    return Buffer.from((await this.must({ op: 'readPath', path: file })).data as string, 'base64')
  }

  async size (fd: number): Promise<number> {
    return (await this.must({ op: 'size', fd })).size as number
  }

  async sync (fd: number): Promise<void> {
    await this.must({ op: 'sync', fd })
  }

  async close (fd: number): Promise<void> {
    await this.must({ op: 'close', fd })
  }

  /** Closes stdin (the worker closes its files and exits), then kills it if it lingers. */
  async stop (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.stdin!.end()
    let timer: NodeJS.Timeout | undefined
    const gone = await Promise.race([
      this.exited.then(() => true),
      new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), STOP_DEADLINE_MS) })
    ])
    clearTimeout(timer)
    if (!gone) {
      this.child.kill('SIGKILL')
      await this.exited
    }
  }

  private async must (command: WorkerCommand): Promise<WorkerAnswer> {
    const answer = await this.send(command)
    if (!answer.ok) throw new WorkerError(answer.code ?? 'ERROR', `${command.op}: ${answer.message ?? ''}`)
    return answer
  }

  private fail (err: Error): void {
    this.dead ??= err
    for (const { reject } of this.waiting.values()) reject(err)
    this.waiting.clear()
  }
}
