import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { LocalCache } from '../src/client/localCache'
import type { FileMeta } from '../src/protocol'

const metaOf = (p: string, size: number): FileMeta => ({ path: p, kind: 'file', version: 1, size, mtimeMs: 1 })

t.test('copies left by an earlier run count against the budget: the oldest go first', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-cache-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const earlier = new LocalCache(dir)
  for (const name of ['/a', '/b', '/c']) {
    await earlier.store(name, metaOf(name, 100), Readable.from([Buffer.alloc(100, 1)]))
    await new Promise((resolve) => setTimeout(resolve, 20)) // distinct write times
  }

  const later = new LocalCache(dir, 250)
  t.equal(await later.loadIndex(), 3, 'all three copies found')
  t.equal(await later.get('/a'), null, 'the oldest was evicted to fit 250 bytes')
  t.equal((await fsp.readdir(path.join(dir, 'objects'))).length, 4, 'its files are gone; two copies and records stay')
  t.equal((await later.get('/c'))?.meta.size, 100, 'the newest is still served')
})
