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

t.test('a copy brought forward by appends: served at once here, its record on disk follows, and a replaced copy is appended to afresh', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-cache-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const cache = new LocalCache(dir)
  const at = (version: number, size: number): FileMeta => ({ path: '/log', kind: 'file', version, size, mtimeMs: 1 })
  await cache.store('/log', at(1, 3), Readable.from([Buffer.from('one')]))
  cache.applyAppend('/log', Buffer.from('-two'), at(2, 7))
  cache.applyAppend('/log', Buffer.from('-three'), at(3, 13))
  const here = await cache.get('/log')
  t.same(here?.meta, at(3, 13), 'this process serves the copy at the appends\' version at once')
  t.equal(fs.readFileSync(here?.file as string, 'utf8'), 'one-two-three')

  // Another process sharing the folder: the record on disk still names version 1 and 3 bytes,
  // which the copy no longer has, so it vouches for nothing until it is rewritten.
  t.equal(await new LocalCache(dir).get('/log'), null, 'another process does not trust the old record')
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  t.same((await new LocalCache(dir).get('/log'))?.meta, at(3, 13), 'once rewritten, the record vouches for the copy as it is')

  // A new copy of the path replaces the file the kept descriptor was open on.
  await cache.store('/log', at(7, 3), Readable.from([Buffer.from('new')]))
  cache.applyAppend('/log', Buffer.from('+more'), at(8, 8))
  const replaced = await cache.get('/log')
  t.same(replaced?.meta, at(8, 8))
  t.equal(fs.readFileSync(replaced?.file as string, 'utf8'), 'new+more', 'the append went to the new copy')
})
