import fsp from 'node:fs/promises'
import os from 'node:os'
import readline from 'node:readline'
import type { WorkerAnswer, WorkerCommand } from './fileWorkerProtocol'

/*
 * A child process that does file I/O for a test. The test process never touches a mount
 * itself (a hung FUSE request would freeze it), and a shell command cannot keep a file open
 * between steps; this worker can: it reads one JSON command per line on stdin, runs it on
 * its open FileHandles, and answers one JSON line on stdout, in order.
 */

const handles = new Map<number, fsp.FileHandle>()

/** The error's code; for one libuv has no name for (ESTALE: 'Unknown system error -116'), the kernel's name of its errno. */
function codeOf (failure: NodeJS.ErrnoException): string {
  if (failure.code?.startsWith('Unknown system error') === true && failure.errno !== undefined) {
    const named = Object.entries(os.constants.errno).find(([, errno]) => errno === -(failure.errno as number))
    if (named !== undefined) return named[0]
  }
  return failure.code ?? 'ERROR'
}
let nextFd = 1

function handleOf (fd: number): fsp.FileHandle {
  const handle = handles.get(fd)
  if (!handle) throw new Error(`no open handle ${fd}`)
  return handle
}

/** The whole file as this handle reads it: pread from 0 until EOF, whatever the size says. */
async function readWhole (handle: fsp.FileHandle): Promise<Buffer> {
  const chunks: Buffer[] = []
  let position = 0
  for (;;) {
    const chunk = Buffer.alloc(256 * 1024)
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, position)
    if (bytesRead === 0) return Buffer.concat(chunks)
    chunks.push(chunk.subarray(0, bytesRead))
    position += bytesRead
  }
}

async function perform (command: WorkerCommand): Promise<Omit<WorkerAnswer, 'seq' | 'ok'>> {
  switch (command.op) {
    case 'open': {
      const fd = nextFd++
      handles.set(fd, await fsp.open(command.path, command.flags))
      return { fd }
    }
    case 'write': {
      const data = Buffer.from(command.data, 'base64')
      let done = 0
      while (done < data.length) {
        const position = command.position === null ? null : command.position + done
        done += (await handleOf(command.fd).write(data, done, data.length - done, position)).bytesWritten
      }
      return {}
    }
    case 'truncate':
      await handleOf(command.fd).truncate(command.size)
      return {}
    case 'read':
      return { data: (await readWhole(handleOf(command.fd))).toString('base64') }
    case 'readPath':
      return { data: (await fsp.readFile(command.path)).toString('base64') }
    case 'size':
      return { size: (await handleOf(command.fd).stat()).size }
    case 'sync':
      await handleOf(command.fd).sync()
      return {}
    case 'close': {
      const handle = handleOf(command.fd)
      handles.delete(command.fd)
      await handle.close()
      return {}
    }
  }
}

const lines = readline.createInterface({ input: process.stdin })
let queue = Promise.resolve()
lines.on('line', (line) => {
  queue = queue.then(async () => {
    const command = JSON.parse(line) as WorkerCommand & { seq: number }
    let answer: WorkerAnswer
    try {
      answer = { seq: command.seq, ok: true, ...(await perform(command)) }
    } catch (err) {
      const failure = err as NodeJS.ErrnoException
      answer = { seq: command.seq, ok: false, code: codeOf(failure), message: failure.message }
    }
    process.stdout.write(JSON.stringify(answer) + '\n')
  })
})
lines.on('close', () => {
  void queue.then(async () => {
    await Promise.allSettled([...handles.values()].map(async (h) => await h.close()))
    process.exit(0)
  })
})
