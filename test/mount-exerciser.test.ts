import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import { FileWorker } from './helpers/fileWorkerClient'
import { mountCluster, outcome, run } from './helpers/mount'
import type { TestMount } from './helpers/mount'
import { statsOf } from './helpers/wire'

/*
 * Random operations on one file through two mounts of one cluster, checked against an
 * in-memory model: every read through the open handle, fstat, the file on the server's disk
 * after close and fsync, the other mount after a switch (close-to-open), and, while a handle
 * is open, the server's disk and the other mount against the last stored bytes
 * (store-on-close). The operations run in one long-lived worker process per mount; this
 * process only holds the model and decides. Replay a failure with DFS_EXERCISER_SEED=<seed
 * printed at the start>; DFS_EXERCISER_OPS sets the number of operations.
 */

const OPERATIONS = Number(process.env.DFS_EXERCISER_OPS ?? 3000)
/** DFS_EXERCISER_DEBUG=1 mounts with --debug and prints the end of each daemon's FUSE log on a failure. */
const DEBUG = process.env.DFS_EXERCISER_DEBUG === '1'
const FILE = '/exercise/data.bin'
const INITIAL = Buffer.from('the file as the server had it before the first operation\n')
/** Above this the exerciser prefers shrinking, so every whole-file check stays cheap. */
const SOFT_MAX_SIZE = 1024 * 1024
/** The large file's run: above PARTIAL_COPY_ABOVE (8 MiB), so writes in place start partial copies. */
const LARGE_INITIAL_BYTES = 12 * 1024 * 1024
const LARGE_OPERATIONS = Number(process.env.DFS_EXERCISER_OPS ?? 250)

/**
 * truncate(2) on a path, which reaches the mount as FUSE truncate with no handle. Node's
 * fs.truncate and coreutils' truncate open the file and ftruncate it instead.
 */
async function truncateByName (file: string, size: number): Promise<void> {
  const result = await run('perl', ['-e', 'truncate($ARGV[0], $ARGV[1]) or die "truncate: $!\\n"', file, String(size)], { timeoutMs: 30_000 })
  if (result.code !== 0) throw new Error(`truncate(2) of ${file} to ${size}: ${outcome(result)}`)
}

/** open, ftruncate, close: what coreutils' truncate -s does. */
async function truncateByOpen (file: string, size: number): Promise<void> {
  const result = await run('truncate', ['-s', String(size), file], { timeoutMs: 30_000 })
  if (result.code !== 0) throw new Error(`truncate -s ${size} ${file}: ${outcome(result)}`)
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let x = state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** Open modes and what they allow; w and w+ empty the file at open. */
const MODES = [
  { flags: 'r+', read: true, write: true, append: false, truncates: false, weight: 5 },
  { flags: 'w+', read: true, write: true, append: false, truncates: true, weight: 1 },
  { flags: 'w', read: false, write: true, append: false, truncates: true, weight: 1 },
  { flags: 'a+', read: true, write: true, append: true, truncates: false, weight: 2 },
  { flags: 'a', read: false, write: true, append: true, truncates: false, weight: 1 },
  { flags: 'r', read: true, write: false, append: false, truncates: false, weight: 2 }
] as const
type Mode = typeof MODES[number]

interface Side {
  name: 'A' | 'B'
  mount: TestMount
  worker: FileWorker
}

/** Where two buffers first differ, or -1 when they are equal. */
function firstDifference (actual: Buffer, expected: Buffer): number {
  const common = Math.min(actual.length, expected.length)
  for (let i = 0; i < common; i++) if (actual[i] !== expected[i]) return i
  return actual.length === expected.length ? -1 : common
}

t.test('random writes, truncates, appends and reads of one file through two mounts match a model, byte for byte', async (t) => {
  await exercise(t, { initial: INITIAL, operations: OPERATIONS, softMax: SOFT_MAX_SIZE })
})

t.test('the same on a file of 12 MiB, which a mount with no copy of it opens and writes in place by ranges (partial working copies)', async (t) => {
  // Of a fixed pattern, so the seed alone still replays the run.
  const large = Buffer.alloc(LARGE_INITIAL_BYTES)
  for (let i = 0; i + 4 <= large.length; i += 4) large.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, i)
  // Never cut below 9 MiB nor emptied at open, and mostly not read whole at a switch: a mount
  // then opens a version it has no copy of, and its writes in place start partial copies.
  const { server } = await exercise(t, { initial: large, operations: LARGE_OPERATIONS, softMax: 2 * LARGE_INITIAL_BYTES, minSize: LARGE_INITIAL_BYTES * 3 / 4, switchReads: 0.3 })
  // Which copies were partial depends on the seed (mount-ops-bigfile checks that they are made).
  if (server !== null) t.comment(`range reads (partial copies' blocks, reads by ranges): ${(await statsOf(server)).rangeReads}`)
})

interface ExerciseOptions {
  /** The file's bytes at the start. */
  initial: Buffer
  operations: number
  /** Above this size the exerciser prefers shrinking and small writes. */
  softMax: number
  /** Truncations never go below this, and no open empties the file (0: they may). */
  minSize?: number
  /** The chance that a switch to the other mount reads the file whole through it (1 unless given). */
  switchReads?: number
}

/** Random operations on one file through two mounts (see the top). Answers the file server, or null once the run failed. */
async function exercise (t: Test, opts: ExerciseOptions): Promise<{ server: { url: string } | null }> {
  const { initial: INITIAL, operations: OPERATIONS, softMax: SOFT_MAX_SIZE, minSize = 0, switchReads = 1 } = opts
  const seed = process.env.DFS_EXERCISER_SEED !== undefined ? Number(process.env.DFS_EXERCISER_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 32)
  t.comment(`seed ${seed} (replay with DFS_EXERCISER_SEED=${seed}), ${OPERATIONS} operations`)
  const random = prng(seed)
  const below = (n: number): number => Math.floor(random() * n)
  const chance = (p: number): boolean => random() < p
  const bytes = (length: number): Buffer => {
    const data = Buffer.alloc(length)
    let i = 0
    for (; i + 4 <= length; i += 4) data.writeUInt32LE(Math.floor(random() * 2 ** 32), i)
    for (; i < length; i++) data[i] = below(256)
    return data
  }
  const modes = MODES.filter((mode) => minSize === 0 || !mode.truncates)
  const pickMode = (): Mode => {
    let ticket = below(modes.reduce((sum, m) => sum + m.weight, 0))
    for (const mode of modes) if ((ticket -= mode.weight) < 0) return mode
    return modes[0]
  }
  const writeLength = (): number => (chance(0.7) ? 1 + below(100) : chance(0.85) ? 100 + below(8192) : 8192 + below(200_000))

  const perl = await run('perl', ['-e', '1'])
  if (perl.code !== 0) throw new Error(`the exerciser needs perl for truncate(2) by name, and perl did not run: ${outcome(perl)}`)
  const cluster = await startTestCluster(t, [{ [FILE.slice(1)]: '' }])
  const onDisk = path.join(cluster.roots[0], FILE)
  fs.writeFileSync(onDisk, INITIAL)
  const sides: Side[] = []
  for (const name of ['A', 'B'] as const) {
    const mount = await mountCluster(t, cluster, DEBUG ? ['--debug'] : [])
    sides.push({ name, mount, worker: await FileWorker.start(t) })
  }

  /** What this process wrote, as a local file would show it. */
  let model = Buffer.from(INITIAL)
  /**
   * What the server may have, oldest first. Changes land on close and fsync; gathered appends
   * also before a read that reaches the daemon, but the kernel answers some reads from its
   * page cache, so after a read the server has the bytes from before it or from it.
   */
  let stored = [Buffer.from(INITIAL)]
  let side = sides[0]
  /** working: the handle changes a private copy (stored whole on close), not gathered appends. */
  let open: { fd: number, mode: Mode, working: boolean } | null = null
  const history: string[] = []
  const counts: Record<string, number> = {}
  let index = 0
  const started = Date.now()

  const note = (what: string): void => {
    history.push(`#${index} ${side.name} ${what}`)
    if (history.length > 12) history.shift()
    const kind = what.split(' ')[0]
    counts[kind] = (counts[kind] ?? 0) + 1
  }
  const showDaemonLogs = (): void => {
    if (DEBUG) for (const { name, mount } of sides) t.comment(`mount ${name} daemon, last lines:\n${mount.output().split('\n').slice(-80).join('\n')}`)
  }
  /** Fails the test with everything needed to replay and locate the difference; false if it did. */
  const matches = (actual: Buffer, expected: Buffer, what: string): boolean => {
    const at = firstDifference(actual, expected)
    if (at === -1) return true
    t.fail(`${what} differs: seed ${seed}, operation #${index}, first difference at offset ${at} ` +
      `(got ${actual.length} bytes, expected ${expected.length}; byte there ${actual[at]} vs ${expected[at]})`, { recent: history })
    showDaemonLogs()
    return false
  }
  /**
   * States a handle that stays open may have sent behind since the last store (after a pause
   * in its writes, or 2 s after the first: WRITE_BEHIND_IDLE_MS, WRITE_BEHIND_MAX_MS), by
   * their sha1: any state the model passed through while a handle had changes unsent.
   */
  let behind = new Set<string>()
  const sha1 = (data: Buffer): string => crypto.createHash('sha1').update(data).digest('hex')
  const mayBeSentBehind = (): void => { behind.add(sha1(model)) }
  /**
   * The server's file is one of the stored states (the older ones are then out of the
   * question), or one a handle sent behind (it is then the only stored state).
   */
  const serverHasStored = (when: string): boolean => {
    const onServer = fs.readFileSync(onDisk)
    const at = stored.findIndex((state) => state.equals(onServer))
    if (at !== -1) {
      stored = stored.slice(at)
      return true
    }
    if (!behind.has(sha1(onServer))) return matches(onServer, stored[stored.length - 1], `${when}, the file on the server's disk`)
    stored = [onServer]
    return true
  }
  const storedNow = (): void => {
    stored = [Buffer.from(model)]
    behind = new Set()
  }
  const maybeStored = (): void => {
    if (!stored[stored.length - 1].equals(model)) stored.push(Buffer.from(model))
  }
  const resize = (size: number): void => {
    model = size <= model.length ? Buffer.from(model.subarray(0, size)) : Buffer.concat([model, Buffer.alloc(size - model.length)])
  }
  const writeModel = (data: Buffer, position: number): void => {
    if (position + data.length > model.length) resize(position + data.length)
    data.copy(model, position)
  }
  const other = (): Side => sides[side === sides[0] ? 1 : 0]

  try {
    for (index = 0; index < OPERATIONS; index++) {
      if (!open) {
        if (chance(0.4)) {
          side = other()
          note('switch')
          // Close-to-open: what the other mount stored at close is what this one reads now.
          if (chance(switchReads) && !matches(await side.worker.readPath(side.mount.at(FILE)), model, `after switching to mount ${side.name}, the file`)) return { server: null }
          continue
        }
        if (chance(0.1)) {
          const size = minSize + below(Math.min(model.length * 2 + 1000, SOFT_MAX_SIZE) - minSize)
          const byName = chance(0.5)
          note(`${byName ? 'truncate(2)' : 'truncate-s'} ${size}`)
          await (byName ? truncateByName : truncateByOpen)(side.mount.at(FILE), size)
          resize(size)
          storedNow()
          if (!serverHasStored('after truncate(path) with no open handle')) return { server: null }
          continue
        }
        const mode = pickMode()
        note(`open ${mode.flags}`)
        open = { fd: await side.worker.open(side.mount.at(FILE), mode.flags), mode, working: mode.truncates }
        if (mode.truncates) model = Buffer.alloc(0)
        continue
      }

      const { fd, mode } = open
      const roll = random()
      if (roll < 0.06) {
        note('close')
        open = null
        await side.worker.close(fd)
        storedNow()
        if (!serverHasStored('after close')) return { server: null }
      } else if (roll < 0.2 && mode.read) {
        note('read')
        if (!matches(await side.worker.read(fd), model, 'a whole-file read')) return { server: null }
        if (!open.working) maybeStored()
      } else if (roll < 0.24) {
        note('fstat')
        const size = await side.worker.size(fd)
        if (size !== model.length) {
          t.fail(`fstat size ${size}, model ${model.length}: seed ${seed}, operation #${index}`, { recent: history })
          showDaemonLogs()
          return { server: null }
        }
      } else if (roll < 0.27) {
        // Store-on-close: until then the server and the other mount see the last stored bytes.
        note('peek')
        if (!serverHasStored('while a handle is open')) return { server: null }
        const seen = await other().worker.readPath(other().mount.at(FILE))
        if (!behind.has(sha1(seen)) && !matches(seen, stored[0], `while mount ${side.name} has it open, mount ${other().name}'s read`)) return { server: null }
      } else if (roll < 0.29 && mode.write) {
        note('fsync')
        await side.worker.sync(fd)
        storedNow()
        if (!serverHasStored('after fsync')) return { server: null }
      } else if (roll < 0.38 && mode.write) {
        const size = minSize + (model.length > SOFT_MAX_SIZE ? below(model.length - minSize) : below(model.length * 2 + 1000 - minSize))
        const byName = chance(0.2)
        note(`${byName ? 'truncate(2)' : 'ftruncate'} ${size}`)
        // truncate(2) while this mount has the file open for writing joins that handle's changes.
        if (byName) await truncateByName(side.mount.at(FILE), size)
        else await side.worker.truncate(fd, size)
        resize(size)
        open.working = true
        mayBeSentBehind()
      } else if (mode.write) {
        const data = bytes(model.length > SOFT_MAX_SIZE ? 1 + below(100) : writeLength())
        if (mode.append) {
          note(`append ${data.length}`)
          await side.worker.write(fd, data, null)
          writeModel(data, model.length)
          mayBeSentBehind()
        } else {
          const where = random()
          const position = where < 0.25
            ? model.length // at the end: the gathered-append path
            : where < 0.4
              ? model.length + 1 + below(100_000) // past the end: a hole of zeros
              : below(model.length + 1)
          note(`write ${data.length}@${position}`)
          await side.worker.write(fd, data, position)
          if (position !== model.length) open.working = true
          writeModel(data, position)
          mayBeSentBehind()
        }
      } else if (mode.read) {
        note('read')
        if (!matches(await side.worker.read(fd), model, 'a whole-file read')) return { server: null }
        if (!open.working) maybeStored()
      }
    }
    if (open) {
      await side.worker.close(open.fd)
      open = null
      storedNow()
    }
    t.ok(serverHasStored('at the end'), 'the server has the model\'s bytes')
    for (const each of sides) t.ok(matches(await each.worker.readPath(each.mount.at(FILE)), model, `at the end, mount ${each.name}`), `mount ${each.name} shows them`)
    t.comment(`seed ${seed}: ${OPERATIONS} operations in ${Date.now() - started} ms; final size ${model.length}; ${JSON.stringify(counts)}`)
    return { server: cluster.fileServers[0] }
  } catch (err) {
    t.fail(`operation #${index} failed: ${String(err)} (seed ${seed})`, { recent: history })
    showDaemonLogs()
  }
  return { server: null }
}
