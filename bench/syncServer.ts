import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'

/*
 * The other half of the durable floor (bench/README.md): a bare Node HTTP server, no Express,
 * no credentials, no version, no lock, that makes a file durable when the passthrough closes
 * or fsyncs it. `POST /sync?path=REL[&created=1]` with the bytes written since the last sync
 * as its body: fdatasync of the file below the tree (the bytes are already in it, written by
 * the passthrough), and of its folder too when it ends a create, so the name is durable as
 * well. `POST /sync?path=REL&folder=1`: fsync of a folder (after an unlink). 204 once synced.
 * This is what any design pays that makes such a step durable on a server over HTTP: one
 * request, its bytes, one fsync round; dfs pays it and its own work. `GET /content?path=REL`
 * answers a file's bytes, streamed from the disk: the network floor of a read (the durable
 * floor's mount fetches each file it opens for reading so).
 * The process exits when the pipe to its parent closes, so a benchmark that dies leaves no
 * server behind.
 */

export interface SyncServer {
  url: string
  /** Requests answered with a sync so far. */
  syncs: () => Promise<number>
  /** Files sent so far (GET /content). */
  fetches: () => Promise<number>
  close: () => Promise<void>
}

/**
 * The server in a child process of its own, as a real server is, so that it shares no event
 * loop with the benchmark's dfs cluster: the floor is meant to be the least, not a figure
 * that suffers from its neighbours.
 */
export async function startSyncServer (tree: string): Promise<SyncServer> {
  const child = spawn(process.execPath, [__filename, tree], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const url = await new Promise<string>((resolve, reject) => {
    let printed = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      printed += chunk
      if (printed.includes('\n')) resolve(printed.trim())
    })
    void exited.then(() => reject(new Error(`the durable floor's server exited (${child.exitCode ?? child.signalCode}) before listening`)))
  })
  return {
    url,
    syncs: async () => await countOf(`${url}/syncs`),
    fetches: async () => await countOf(`${url}/fetches`),
    close: async () => {
      child.kill('SIGTERM')
      await exited
    }
  }
}

/** A file's bytes, streamed as they are read from the disk (in 1 MiB reads), with their length first. */
function sendContent (file: string, response: http.ServerResponse): void {
  fs.stat(file, (err, stats) => {
    if (err !== null) {
      response.writeHead(404).end()
      return
    }
    response.writeHead(200, { 'content-length': stats.size })
    fs.createReadStream(file, { highWaterMark: 1024 * 1024 }).on('error', () => response.destroy()).pipe(response)
  })
}

async function countOf (url: string): Promise<number> {
  const response = await fetch(url)
  return Number(await response.text())
}

function serve (tree: string): void {
  // Descriptors kept per file, as dfs's file server keeps append handles, and used while the
  // name still leads to their inode (a database's journal is made anew at every transaction).
  const kept = new Map<string, { fd: number, ino: number }>()
  const descriptorOf = (file: string): number => {
    const { ino } = fs.statSync(file)
    const entry = kept.get(file)
    if (entry?.ino === ino) return entry.fd
    if (entry !== undefined) fs.closeSync(entry.fd)
    const fd = fs.openSync(file, 'r')
    kept.set(file, { fd, ino: fs.fstatSync(fd).ino })
    return fd
  }
  const syncFolder = (folder: string, answer: (err: NodeJS.ErrnoException | null) => void): void => {
    fs.open(folder, 'r', (openErr, dirFd) => {
      if (openErr !== null) return answer(openErr)
      fs.fsync(dirFd, (syncErr) => fs.close(dirFd, () => answer(syncErr)))
    })
  }
  let syncs = 0
  let fetches = 0
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://floor')
    const rel = url.searchParams.get('path')
    request.resume()
    request.once('end', () => {
      if (request.method === 'GET' && url.pathname === '/syncs') {
        response.writeHead(200).end(String(syncs))
        return
      }
      if (request.method === 'GET' && url.pathname === '/fetches') {
        response.writeHead(200).end(String(fetches))
        return
      }
      if (request.method === 'GET' && url.pathname === '/content' && rel !== null) {
        fetches++
        sendContent(path.join(tree, rel), response)
        return
      }
      if (request.method !== 'POST' || url.pathname !== '/sync' || rel === null) {
        response.writeHead(400).end()
        return
      }
      const file = path.join(tree, rel)
      const answer = (err: NodeJS.ErrnoException | null): void => {
        if (err === null) syncs++
        response.writeHead(err === null ? 204 : 500).end()
      }
      if (url.searchParams.get('folder') === '1') {
        // An unlink's: the folder, opened for this sync alone.
        syncFolder(file, answer)
        return
      }
      let fd: number
      try {
        fd = descriptorOf(file)
      } catch (err) {
        answer(err as NodeJS.ErrnoException)
        return
      }
      fs.fdatasync(fd, (err) => {
        if (err !== null || url.searchParams.get('created') !== '1') {
          answer(err)
          return
        }
        syncFolder(path.dirname(file), answer)
      })
    })
  })
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}\n`)
  })
  process.once('SIGTERM', () => process.exit(0))
  process.stdout.once('error', () => process.exit(0))
}

if (require.main === module) serve(path.resolve(process.argv[2]))
