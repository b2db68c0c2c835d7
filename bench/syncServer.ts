import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'

/*
 * The other half of the durable floor (bench/README.md): a bare Node HTTP server, no Express,
 * no credentials, no version, no lock, that makes a file durable when the passthrough closes
 * it. `POST /sync?path=REL[&created=1]` with the bytes written since the last close as its
 * body: fdatasync of the file below the tree (the bytes are already in it, written by the
 * passthrough), and of its folder too when the close ends a create, so the name is durable
 * as well. 204 once synced. This is what any design pays that makes a close durable on a
 * server over HTTP: one request, its bytes, one fsync round; dfs pays it and its own work.
 */

export interface SyncServer {
  url: string
  /** Closes synced so far. */
  syncs: () => Promise<number>
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
    syncs: async () => {
      const response = await fetch(`${url}/syncs`)
      return Number(await response.text())
    },
    close: async () => {
      child.kill('SIGTERM')
      await exited
    }
  }
}

function serve (tree: string): void {
  // Descriptors kept per file, as dfs's file server keeps append handles: the floor opens none per request.
  const kept = new Map<string, number>()
  const descriptorOf = (file: string): number => {
    let fd = kept.get(file)
    if (fd === undefined) {
      fd = fs.openSync(file, 'r')
      kept.set(file, fd)
    }
    return fd
  }
  let syncs = 0
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://floor')
    const rel = url.searchParams.get('path')
    request.resume()
    request.once('end', () => {
      if (request.method === 'GET' && url.pathname === '/syncs') {
        response.writeHead(200).end(String(syncs))
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
        fs.open(path.dirname(file), 'r', (openErr, dirFd) => {
          if (openErr !== null) return answer(openErr)
          fs.fsync(dirFd, (syncErr) => fs.close(dirFd, () => answer(syncErr)))
        })
      })
    })
  })
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}\n`)
  })
  process.once('SIGTERM', () => process.exit(0))
}

if (require.main === module) serve(path.resolve(process.argv[2]))
