import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { LocalCache } from '../src/client/localCache'
import type { FileMeta } from '../src/shared/protocol'

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

t.test('a copy being stored can be read as it arrives, and only a whole one is kept', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-cache-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const cache = new LocalCache(dir)
  const { PassThrough } = await import('node:stream')

  const body = new PassThrough()
  const { reader, download } = await cache.storeArriving('/big', metaOf('/big', 8), body)
  t.teardown(async () => await reader.close().catch(() => {}))
  body.write(Buffer.from('abcd'))
  await download.waitFor(4)
  const head = Buffer.alloc(4)
  await reader.read(head, 0, 4, 0)
  t.equal(head.toString(), 'abcd', 'the first bytes read while the rest has not come')
  t.notOk(download.finished)
  t.equal(await cache.get('/big'), null, 'not a cached copy until it is whole')
  body.end(Buffer.from('efgh'))
  await download.waitFor(Infinity)
  t.ok(download.finished)
  const whole = Buffer.alloc(8)
  await reader.read(whole, 0, 8, 0)
  t.equal(whole.toString(), 'abcdefgh', 'the same handle reads the whole copy')
  t.equal((await cache.get('/big'))?.meta.size, 8, 'and now it is the cached copy')

  const short = new PassThrough()
  const failing = await cache.storeArriving('/short', metaOf('/short', 8), short, (err) => new Error(`server gone: ${String(err)}`))
  t.teardown(async () => await failing.reader.close().catch(() => {}))
  short.end(Buffer.from('abc'))
  await t.rejects(failing.download.waitFor(8), /server gone: .*fetched 3 bytes of \/short, expected 8/, 'a short body fails its readers')
  t.equal(await cache.get('/short'), null, 'and is not kept')
  t.same((await fsp.readdir(path.join(dir, 'tmp'))), [], 'nor left behind')
})
