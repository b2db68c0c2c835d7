import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import type { Request, Response } from 'express'
import { Agent, request as undiciRequest } from 'undici'
import { finishApp, jsonBody, listen, newApp, silentLogger } from '../servers/common/http'
import { Transport } from '../src/shared/transport'

/*
 * What one dfs call costs in the transport alone: a tiny Express app built like the real
 * servers (newApp: protocol header and check; express.json) in this process, and the same
 * calls made through a bare keep-alive http.request, through dfs's Transport and through
 * undici. Client and server share one process and one event loop, so a figure is the whole
 * round trip's CPU time on loopback. Run: npm run build && node dist/bench/transport.js [N]
 *
 * The machine is shared, so the clients take turns in short rounds (a slow spell then hits
 * them all alike) and the median is printed, not the mean.
 */

const N = Number(process.argv[2] ?? 2000)
const WARMUP = 300
const ROUNDS = 8
const BYTES = Buffer.alloc(4096, 7)
/** A line, as one append of a log: the durable row's body. */
const LINE = Buffer.alloc(100, 7)
const SMALL_JSON = { path: '/some/folder/file.txt', owner: 'bench', ttlMs: 30_000 }

type Client = (shape: Shape) => Promise<unknown>
type Shape = 'get' | 'postJson' | 'postBytes' | 'postDurable'

/**
 * `durableFile`: where POST /durable appends its body and fdatasyncs before it answers, as the
 * file server does an append: the floor of a durable request (one round trip and one sync).
 */
function app (durableFile: fs.promises.FileHandle): ReturnType<typeof newApp> {
  const server = newApp()
  server.get('/health', (_req, res) => { res.json({ service: 'lock', protocol: 1, bootId: 'x' }) })
  server.post('/json', jsonBody, (req: Request, res: Response) => { res.json({ got: Object.keys(req.body as object).length }) })
  // Read the bytes as the file server does (no body parser for octet streams), then answer.
  server.post('/bytes', (req, res) => {
    let size = 0
    req.on('data', (chunk: Buffer) => { size += chunk.length })
    req.on('end', () => { res.json({ size }) })
  })
  server.post('/durable', (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      durableFile.write(body).then(async () => await durableFile.datasync()).then(() => res.json({ size: body.length }), (err: Error) => res.status(500).json({ error: err.message }))
    })
  })
  finishApp(server, silentLogger)
  return server
}

/** The floor: what Node's own client costs, with the body read and parsed as JSON. */
function bareClient (base: string): Client {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
  const url = new URL(base)
  return async (shape) => await new Promise((resolve, reject) => {
    const body = shape === 'postJson' ? Buffer.from(JSON.stringify(SMALL_JSON)) : shape === 'postBytes' ? BYTES : shape === 'postDurable' ? LINE : undefined
    const req = http.request({
      host: url.hostname,
      port: url.port,
      agent,
      method: shape === 'get' ? 'GET' : 'POST',
      path: shape === 'get' ? '/health' : shape === 'postJson' ? '/json' : shape === 'postDurable' ? '/durable' : '/bytes',
      headers: body === undefined
        ? {}
        : { 'Content-Type': shape === 'postJson' ? 'application/json' : 'application/octet-stream', 'Content-Length': body.length }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

function transportClient (base: string): Client {
  const transport = new Transport('bench server', base)
  return async (shape) => {
    if (shape === 'get') return await transport.json({ method: 'GET', route: '/health' })
    if (shape === 'postJson') return await transport.json({ method: 'POST', route: '/json', body: SMALL_JSON })
    if (shape === 'postDurable') return await transport.json({ method: 'POST', route: '/durable', body: LINE })
    return await transport.json({ method: 'POST', route: '/bytes', body: BYTES })
  }
}

function undiciClient (base: string): Client {
  const dispatcher = new Agent({ connections: 64 })
  return async (shape) => {
    const { body } = shape === 'get'
      ? await undiciRequest(`${base}/health`, { dispatcher })
      : shape === 'postJson'
        ? await undiciRequest(`${base}/json`, { dispatcher, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(SMALL_JSON) })
        : await undiciRequest(`${base}/${shape === 'postDurable' ? 'durable' : 'bytes'}`, { dispatcher, method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: shape === 'postDurable' ? LINE : BYTES })
    return await body.json()
  }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function main (): Promise<void> {
  const durableDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'dfs-transport-bench-'))
  const durableFile = await fs.promises.open(path.join(durableDir, 'appends'), 'a')
  const server = await listen(app(durableFile), 0, '127.0.0.1')
  const clients: Array<[string, Client]> = [
    ['bare http.request', bareClient(server.url)],
    ['dfs Transport', transportClient(server.url)],
    ['undici request', undiciClient(server.url)]
  ]
  const shapes: Array<[Shape, string]> = [['get', 'GET /health'], ['postJson', 'POST small JSON'], ['postBytes', 'POST 4 KiB Buffer'], ['postDurable', 'POST 100 B, synced']]
  console.log(`transport micro-benchmark: ${N} sequential keep-alive calls per row, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  console.log('')
  console.log(`${'call'.padEnd(20)}${'client'.padEnd(20)}${'median µs'.padStart(10)}${'x bare'.padStart(8)}`)
  for (const [shape, label] of shapes) {
    const samples = new Map<string, number[]>(clients.map(([name]) => [name, []]))
    for (const [, client] of clients) for (let i = 0; i < WARMUP; i++) await client(shape)
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, client] of clients) {
        const into = samples.get(name) as number[]
        for (let i = 0; i < N / ROUNDS; i++) {
          const start = process.hrtime.bigint()
          await client(shape)
          into.push(Number(process.hrtime.bigint() - start) / 1000)
        }
      }
    }
    const bare = median(samples.get(clients[0][0]) as number[])
    for (const [name] of clients) {
      const m = median(samples.get(name) as number[])
      console.log(`${label.padEnd(20)}${name.padEnd(20)}${m.toFixed(0).padStart(10)}${(m / bare).toFixed(2).padStart(8)}`)
    }
  }
  console.log(`load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  await server.close()
  await durableFile.close()
  await fs.promises.rm(durableDir, { recursive: true, force: true })
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err)
  process.exit(1)
})
