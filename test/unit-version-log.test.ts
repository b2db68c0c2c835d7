import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { VersionLog } from '../servers/file/versionLog'
import type { AppendRecovery } from '../servers/file/versionLog'

/** A state folder of its own, removed after the test. */
function stateDir (t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-version-log-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

function linesOf (log: VersionLog): string[] {
  return fs.readFileSync(log.path, 'utf8').split('\n').filter((line) => line !== '')
}

/** What recovery at start was asked to do, with the CRC it is told each range has on disk. */
function recorder (crcOnDisk: number | null = null): AppendRecovery & { cuts: Array<[string, number]>, checked: string[] } {
  const cuts: Array<[string, number]> = []
  const checked: string[] = []
  return {
    cuts,
    checked,
    cut: async (filePath, size) => { cuts.push([filePath, size]) },
    crcOf: async (filePath) => {
      checked.push(filePath)
      return crcOnDisk
    }
  }
}

const SMALL = { compactAfterLines: 40 }

t.test('a log in use is compacted: it stays bounded, and a restart finds every version and change id', async (t) => {
  const dir = stateDir(t)
  const log = await VersionLog.open(dir, undefined, SMALL)
  let most = 0
  for (let i = 1; i <= 1000; i++) {
    await log.set(`/f${i % 10}`, i, `client-${i}`)
    most = Math.max(most, linesOf(log).length)
  }
  await log.close()
  // Without compaction the log would hold 1,000 lines; with it, at most the threshold past a snapshot of 10 files.
  t.ok(most <= SMALL.compactAfterLines + 10 + 1, `the log never held more than ${most} lines`)
  const again = await VersionLog.open(dir)
  t.teardown(async () => { await again.close() })
  for (let f = 0; f < 10; f++) t.equal(again.get(`/f${f}`), 990 + (f === 0 ? 10 : f), `/f${f} is at its last version`)
  t.ok(again.applied('/f3', 'client-993'), 'the last change of a file is still known as applied')
  t.ok(again.applied('/f3', 'client-843'), 'and the 16th last of its client')
  t.notOk(again.applied('/f3', 'client-833'), 'older ones are forgotten, as without compaction')
})

t.test('lines whose fsync has not finished are carried into the compacted log', async (t) => {
  const dir = stateDir(t)
  const log = await VersionLog.open(dir, undefined, SMALL)
  // All written in one turn of the event loop: the compaction at the 41st line finds 40
  // lines written and none synced, and their writers are answered only after it.
  const before = fs.statSync(log.path).ino
  const writes: Array<Promise<void>> = []
  for (let i = 0; i < 100; i++) writes.push(log.set(`/new-${i}`, 1))
  await Promise.all(writes)
  t.not(fs.statSync(log.path).ino, before, 'the log was compacted (replaced) meanwhile')
  await log.close()
  const again = await VersionLog.open(dir)
  t.teardown(async () => { await again.close() })
  const missing = Array.from({ length: 100 }, (_, i) => `/new-${i}`).filter((p) => again.get(p) !== 1)
  t.same(missing, [], 'every answered write is in the log after a restart')
})

t.test('an append under way keeps its intent through a compaction: a crash after it is undone at start', async (t) => {
  const dir = stateDir(t)
  const log = await VersionLog.open(dir, undefined, SMALL)
  await log.set('/log', 3)
  await log.appendStarting('/log', 120)
  for (let i = 0; i < 60; i++) await log.set(`/other-${i % 5}`, i + 1)
  t.ok(linesOf(log).length < 60, 'compacted after the intent')
  await log.close() // as a crash before the append's version line
  const recovery = recorder()
  const again = await VersionLog.open(dir, recovery)
  t.teardown(async () => { await again.close() })
  t.same(recovery.cuts, [['/log', 120]], 'the file is cut back to its size before the append')
  t.equal(again.get('/log'), 3)
})

t.test('an append whose bytes may not be on disk keeps its range through a compaction; one that is done does not', async (t) => {
  const range = { from: 120, to: 150, crc: 1234 }
  for (const done of [false, true]) {
    const dir = stateDir(t)
    const log = await VersionLog.open(dir, undefined, SMALL)
    await log.set('/log', 3)
    await log.appendStarting('/log', 120)
    await log.set('/log', 4, 'mount-7', range)
    if (done) log.appendDone('/log')
    for (let i = 0; i < 60; i++) await log.set(`/other-${i % 5}`, i + 1)
    await log.close() // a power cut: the range's bytes are not on disk (the CRC differs)
    const recovery = recorder(999)
    const again = await VersionLog.open(dir, recovery)
    if (done) {
      t.same(recovery.checked, [], 'an append on disk is not checked again')
      t.same(recovery.cuts, [])
      t.ok(again.applied('/log', 'mount-7'))
    } else {
      t.same(recovery.checked, ['/log'], 'the range is checked at start, as without compaction')
      t.same(recovery.cuts, [['/log', 120]], 'and the append whose bytes are missing is undone')
      t.notOk(again.applied('/log', 'mount-7'), 'its change is not known as applied, so a retry applies it')
    }
    t.equal(again.get('/log'), 4)
    await again.close()
  }
})

t.test('an intent that a later version line ended is not carried into a compaction', async (t) => {
  const dir = stateDir(t)
  const log = await VersionLog.open(dir, undefined, SMALL)
  await log.appendStarting('/log', 50)
  await log.set('/log', 9) // the file replaced whole after a failed append, say
  for (let i = 0; i < 60; i++) await log.set(`/other-${i % 5}`, i + 1)
  await log.close()
  const recovery = recorder()
  const again = await VersionLog.open(dir, recovery)
  t.teardown(async () => { await again.close() })
  t.same(recovery.cuts, [], 'nothing is cut at start')
  t.equal(again.get('/log'), 9)
})

t.test('removed paths are kept by path up to a bound, then as a floor that new files start above', async (t) => {
  const dir = stateDir(t)
  const options = { compactAfterLines: 40, removedKept: 3 }
  const log = await VersionLog.open(dir, undefined, options)
  for (let i = 1; i <= 10; i++) await log.set(`/tmp-${i}`, i * 10)
  for (let i = 1; i <= 10; i++) log.removed(`/tmp-${i}`)
  t.equal(log.get('/tmp-10'), undefined, 'a removed path has no file version')
  t.equal(log.removedVersion('/tmp-10'), 100, 'the last removed are kept by path')
  t.equal(log.removedVersion('/tmp-7'), undefined, 'older ones are not')
  t.equal(log.highest('/tmp-7'), 70, 'but the floor is above their versions')
  t.equal(log.highest('/never-seen'), 70, 'and above any path of this server')
  for (let i = 0; i < 60; i++) await log.set(`/other-${i % 5}`, i + 1)
  const lines = linesOf(log).length
  t.ok(lines < 40 + 5 + 3 + 2, `the compacted log holds no line per forgotten path (${lines} lines)`)
  await log.close()
  const again = await VersionLog.open(dir, undefined, options)
  t.teardown(async () => { await again.close() })
  t.same([again.removedVersion('/tmp-9'), again.highest('/tmp-1'), again.get('/tmp-9')], [90, 70, undefined], 'a restart finds the same')
  await again.set('/tmp-9', again.highest('/tmp-9') + 1)
  t.same([again.get('/tmp-9'), again.removedVersion('/tmp-9')], [91, undefined], 'a file made again at a removed path goes on above it')
})

t.test('a removal is on record after a restart', async (t) => {
  const dir = stateDir(t)
  const log = await VersionLog.open(dir)
  await log.set('/a', 5)
  log.removed('/a')
  await log.close()
  const again = await VersionLog.open(dir)
  t.teardown(async () => { await again.close() })
  t.equal(again.removedVersion('/a'), 5, 'with its line in the page cache it is on record as removed')
  t.equal(again.highest('/a'), 5)
})
