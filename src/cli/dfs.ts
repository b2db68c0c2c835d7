import path from 'node:path'
import readline from 'node:readline'
import { pipeline } from 'node:stream/promises'
import yargs from 'yargs/yargs'
import type { Argv } from 'yargs'
import { DfsClient } from '../client/dfsClient'
import type { ListEntry } from '../client/dfsClient'
import { NotFoundError } from '../shared/errors'
import type { FileMeta } from '../shared/protocol'
import { CliError, runMain } from './common'
import { commandCacheFolder } from './cacheFolder'
import { parseByteSize } from './byteSize'
import { clientCaller, trustClusterCa } from './credentials'
import { clientOptions, refuseRepeatedOptions } from './options'
import { formatStatus, STATUS_DEGRADED_EXIT } from './status'
import { StatusApi } from '../shared/clusterStatus'
import { Transport } from '../shared/transport'
import { DirectoryApi } from '../shared/api'
import { askLockUrl } from '../shared/clusterUrls'

interface ClientArgs {
  directory: string
  lock: string | undefined
  cacheDir: string
  cacheMaxSize: string
  timeoutMs: number
  lockTimeoutMs: number
  tokenFile: string | undefined
  ca: string | undefined
}

async function clientOf (args: ClientArgs): Promise<DfsClient> {
  trustClusterCa(args.ca)
  const cacheBytes = parseByteSize(args.cacheMaxSize, '--cache-max-size')
  const caller = clientCaller(args.tokenFile, args.directory)
  // Not given: the one the directory names, asked once (a request of its own per command).
  const lockUrl = args.lock ?? await askLockUrl(new DirectoryApi(new Transport('directory server', args.directory, args.timeoutMs, caller)))
  const client = new DfsClient({
    directoryUrl: args.directory,
    lockUrl,
    cacheDir: commandCacheFolder(path.resolve(args.cacheDir)),
    cacheBytes,
    timeoutMs: args.timeoutMs,
    lockTimeoutMs: args.lockTimeoutMs,
    metaTtlMs: 0,
    caller
  })
  // Copies of earlier commands count against the budget, so the folder stays within it.
  await client.cache.loadIndex()
  return client
}

/** "no such file: PATH" rather than the directory server's wording, as users expect from cat. */
async function named<T> (path: string, task: () => Promise<T>): Promise<T> {
  try {
    return await task()
  } catch (err) {
    if (err instanceof NotFoundError) throw new CliError(`no such file: ${path}`)
    throw err
  }
}

/** A size as typed: a whole number of bytes (yargs would make `abc` NaN and the message say so). */
function sizeOf (text: string): number {
  const size = /^[0-9]+$/.test(text.trim()) ? Number(text.trim()) : NaN
  if (!Number.isSafeInteger(size)) throw new CliError(`size must be a whole number of bytes, 0 or more, not ${text}`)
  return size
}

function formatEntry (entry: ListEntry): string {
  const when = entry.mtimeMs ? new Date(entry.mtimeMs).toISOString().replace('T', ' ').slice(0, 19) : '-'.padEnd(19)
  // A file whose server is down: the directory knows its name, nothing more.
  const size = entry.kind === 'dir' ? '-' : entry.unavailable === true ? '?' : String(entry.size)
  const version = entry.kind === 'dir' ? '-' : entry.unavailable === true ? '?' : `v${entry.version}`
  const type = entry.kind === 'dir' ? 'd' : entry.kind === 'symlink' ? 'l' : '-'
  const suffix = entry.kind === 'dir' ? '/' : entry.kind === 'symlink' ? ` -> ${entry.target ?? '?'}` : ''
  return `${type} ${size.padStart(10)} ${version.padStart(6)} ${when} ${entry.name}${suffix}`
}

/** TEXT and a newline, or standard input as it is. */
async function bodyOf (text: string | undefined): Promise<Buffer> {
  if (text !== undefined) return Buffer.from(text + '\n')
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

function reportWrite (path: string, meta: FileMeta): void {
  process.stderr.write(`${path}: version ${meta.version}, ${meta.size} bytes\n`)
}

function withPath<T> (y: Argv<T>): Argv<T & { path: string }> {
  return y.positional('path', { type: 'string', demandOption: true })
}

function pathAndText<T> (y: Argv<T>): Argv<T & { path: string, text: string | undefined }> {
  return withPath(y).positional('text', { type: 'string' })
}

/**
 * The prompts read lines through one iterator: readline's question() drops lines that
 * arrive before it is asked, which loses every answer when they are piped in.
 */
async function interactive (client: DfsClient): Promise<void> {
  const rl = readline.createInterface({ input: process.stdin, terminal: process.stdin.isTTY })
  const lines = rl[Symbol.asyncIterator]()
  const ask = async (prompt: string): Promise<string> => {
    process.stdout.write(prompt)
    const line = await lines.next()
    if (line.done === true) throw new CliError('no answer given')
    return String(line.value).trim()
  }
  try {
    const action = (await ask('read or write? [r/w] ')).toLowerCase()
    if (!['r', 'read', 'w', 'write'].includes(action)) throw new CliError(`answer r or w, not "${action}"`)
    const path = await ask('file name (e.g. /notes/todo.txt): ')
    if (action.startsWith('r')) {
      process.stdout.write(await named(path, async () => await client.readFile(path)))
      return
    }
    const text = await ask('text to append: ')
    const meta = await named(path, async () => await client.append(path, text + '\n'))
    process.stdout.write(`appended to ${path}: now version ${meta.version}, ${meta.size} bytes\n`)
  } finally {
    rl.close()
  }
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  const parser = yargs(argv)
    .scriptName('dfs')
    .usage('$0 [command] [options]\n\nReads and changes files on a dfs cluster. With no command, asks what to do.')
    .options(clientOptions())
    .middleware(refuseRepeatedOptions)
    .command('cat <path>', 'print a file', (y) => withPath(y), async (args) => {
      const client = await clientOf(args)
      await pipeline(await named(args.path, async () => await client.createReadStream(args.path)), process.stdout)
    })
    .command('append <path> [text]', 'append TEXT and a newline (or standard input, as is) to a file', (y) => pathAndText(y), async (args) => {
      const data = await bodyOf(args.text)
      const client = await clientOf(args)
      reportWrite(args.path, await named(args.path, async () => await client.append(args.path, data)))
    })
    .command('ls [path]', 'list a folder', (y) => y.positional('path', { type: 'string', default: '/' }), async (args) => {
      const client = await clientOf(args)
      const entries = await named(args.path, async () => await client.list(args.path))
      process.stdout.write(entries.map((e) => formatEntry(e) + '\n').join(''))
    })
    .command('stat <path>', 'show version, size and time of a file or folder', (y) => withPath(y), async (args) => {
      const client = await clientOf(args)
      const meta = await named(args.path, async () => await client.statFresh(args.path))
      process.stdout.write(JSON.stringify({ ...meta, mtime: new Date(meta.mtimeMs).toISOString() }, null, 2) + '\n')
    })
    .command('write <path> [text]', 'replace a file with TEXT and a newline (or standard input, as is); creates it if missing', (y) => pathAndText(y), async (args) => {
      const data = await bodyOf(args.text)
      const client = await clientOf(args)
      reportWrite(args.path, await named(args.path, async () => await client.writeFile(args.path, data)))
    })
    .command('rm <path>', 'remove a file', (y) => withPath(y), async (args) => {
      const client = await clientOf(args)
      await named(args.path, async () => await client.unlink(args.path))
    })
    .command('mv <from> <to>', 'rename or move a file or folder (also to a folder on another file server)', (y) => y
      .positional('from', { type: 'string', demandOption: true })
      .positional('to', { type: 'string', demandOption: true }),
    async (args) => {
      const client = await clientOf(args)
      await named(args.from, async () => await client.rename(args.from, args.to))
    })
    .command('mkdir <path>', 'create a folder', (y) => withPath(y), async (args) => {
      const client = await clientOf(args)
      await client.mkdir(args.path)
    })
    .command('rmdir <path>', 'remove an empty folder', (y) => withPath(y), async (args) => {
      const client = await clientOf(args)
      await named(args.path, async () => await client.rmdir(args.path))
    })
    .command('truncate <path> <size>', 'cut or extend a file to SIZE bytes', (y) => withPath(y)
      .positional('size', { type: 'string', demandOption: true }),
    async (args) => {
      const size = sizeOf(args.size)
      const client = await clientOf(args)
      await named(args.path, async () => await client.truncate(args.path, size))
    })
    .command('df', 'total and free space of the cluster', (y) => y, async (args) => {
      const client = await clientOf(args)
      const space = await client.statfs()
      const gib = (bytes: number): string => (bytes / 1024 ** 3).toFixed(1) + ' GiB'
      process.stdout.write(`${gib(space.totalBytes)} total, ${gib(space.freeBytes)} free on ${space.servers} file servers` +
        (space.unreachable > 0 ? ` (${space.unreachable} not answering)` : '') + '\n')
    })
    .command('status', 'the file servers, locks held and latest problems; exits 2 when a server is down', (y) => y
      .option('json', { type: 'boolean', default: false, describe: 'print the directory server\'s answer as JSON' }),
    async (args) => {
      trustClusterCa(args.ca)
      const status = await new StatusApi(new Transport('directory server', args.directory, args.timeoutMs, clientCaller(args.tokenFile, args.directory))).cluster()
      const { text, problems } = formatStatus(status)
      process.stdout.write(args.json ? JSON.stringify(status, null, 2) + '\n' : text)
      for (const problem of problems) process.stderr.write(`dfs: ${problem}\n`)
      if (problems.length > 0) process.exitCode = STATUS_DEGRADED_EXIT
    })
    .command('$0', false, (y) => y, async (args) => {
      await interactive(await clientOf(args))
    })
    .strict()
    .fail((message, err) => {
      throw err ?? new CliError(message)
    })
    .help()
  await parser.parseAsync()
}

runMain('dfs', main)
