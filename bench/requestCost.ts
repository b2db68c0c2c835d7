import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startCluster } from '../servers/cluster'
import { ClusterKey } from '../servers/common/tokens'
import { FileApi } from '../src/shared/api/fileApi'
import { Transport } from '../src/shared/transport'

/*
 * What one request of each kind the mount sends costs at the real servers: a cluster as
 * `npm run bench` starts it (directory, lock and two file servers in one process, a cluster
 * key, so every credential is checked) and, in the same process, N sequential calls of each
 * kind through the typed client API. No FUSE and no mount: the figures are the servers' and
 * the transport's share of an operation, the rest of what the bench's workloads measure is
 * the kernel's and the mount's.
 *
 * Per kind: the median wall time of one call, and the process's CPU time per call, user and
 * system (from /proc/self/stat): client and servers share one event loop, so a call's CPU is
 * its whole round trip's, the servers' own calls to each other (a create's claim) included.
 * Run: npm run build && node dist/bench/requestCost.js [N]
 */

const N = Number(process.argv[2] ?? 1000)
const WARMUP = 100
/** Kinds take turns in rounds, so a busy spell of the shared machine hits them alike. */
const ROUNDS = 4
const SMALL_FILE = Buffer.alloc(4096, 'a')
const LINE = Buffer.alloc(100, 'l')

type Kind = 'stat' | 'statInline' | 'append' | 'create'

const KINDS: Array<[Kind, string]> = [
  ['stat', 'GET /stat'],
  ['statInline', 'GET /stat?inline, callback (a first byte)'],
  ['append', 'POST /append, 100 B (no lease)'],
  ['create', 'PUT /create, 4 KiB (+ the claim)']
]

/** CPU time of this process so far, user and system, in ms (clock ticks of 10 ms). */
function cpuMs (): { user: number, system: number } {
  const fields = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')
  const tick = 1000 / 100
  return { user: Number(fields[11]) * tick, system: Number(fields[12]) * tick }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function main (): Promise<void> {
  if (!Number.isSafeInteger(N) || N < ROUNDS) throw new Error(`N must be an integer of at least ${ROUNDS}`)
  const workDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'dfs-request-cost-'))
  const roots = [path.join(workDir, 'files-1'), path.join(workDir, 'files-2')]
  // The files the calls use, made before the servers start (they report them to the directory).
  const calls = N + WARMUP
  fs.mkdirSync(path.join(roots[0], 'small'), { recursive: true })
  fs.mkdirSync(path.join(roots[0], 'created'), { recursive: true })
  fs.mkdirSync(roots[1], { recursive: true })
  for (let i = 0; i < calls; i++) fs.writeFileSync(path.join(roots[0], 'small', `f-${i}`), SMALL_FILE)
  fs.writeFileSync(path.join(roots[0], 'log'), '')
  const key = ClusterKey.generate()
  const token = key.clientToken('bench', { ttlMs: 3_600_000 }).token
  const cluster = await startCluster({ roots, directoryPort: 0, lockPort: 0, firstFilePort: 0, auth: { key } })
  try {
    const api = new FileApi(new Transport('file server 1', cluster.fileServers[0].url, 30_000, { credential: () => token, clientId: 'request-cost' }))
    const next = new Map<Kind, number>(KINDS.map(([kind]) => [kind, 0]))
    const call = async (kind: Kind): Promise<unknown> => {
      const i = next.get(kind) as number
      next.set(kind, i + 1)
      switch (kind) {
        case 'stat': return await api.stat(`/small/f-${i % calls}`)
        case 'statInline': return await api.statWithCallback(`/small/f-${i % calls}`, 16 * 1024)
        case 'append': return await api.append('/log', LINE)
        case 'create': return await api.createWithContent(`/created/n-${i}`, SMALL_FILE, { mode: 0o644 })
      }
    }
    const samples = new Map<Kind, number[]>(KINDS.map(([kind]) => [kind, []]))
    const cpu = new Map<Kind, { user: number, system: number }>(KINDS.map(([kind]) => [kind, { user: 0, system: 0 }]))
    for (const [kind] of KINDS) for (let i = 0; i < WARMUP; i++) await call(kind)
    for (let round = 0; round < ROUNDS; round++) {
      for (const [kind] of KINDS) {
        const into = samples.get(kind) as number[]
        const before = cpuMs()
        for (let i = 0; i < N / ROUNDS; i++) {
          const start = process.hrtime.bigint()
          await call(kind)
          into.push(Number(process.hrtime.bigint() - start) / 1000)
        }
        const after = cpuMs()
        const spent = cpu.get(kind) as { user: number, system: number }
        spent.user += after.user - before.user
        spent.system += after.system - before.system
      }
    }
    console.log(`request cost at the servers: ${N} sequential calls per kind, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`)
    console.log('')
    console.log(`${'call'.padEnd(44)}${'median µs'.padStart(10)}${'CPU µs'.padStart(9)}${'user'.padStart(7)}${'system'.padStart(8)}`)
    for (const [kind, label] of KINDS) {
      const count = (samples.get(kind) as number[]).length
      const { user, system } = cpu.get(kind) as { user: number, system: number }
      const perCall = (ms: number): string => (1000 * ms / count).toFixed(0)
      console.log(`${label.padEnd(44)}${median(samples.get(kind) as number[]).toFixed(0).padStart(10)}${perCall(user + system).padStart(9)}${perCall(user).padStart(7)}${perCall(system).padStart(8)}`)
    }
  } finally {
    await cluster.close()
    await fs.promises.rm(workDir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`request cost: failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
