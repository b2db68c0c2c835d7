import t from 'tap'
import { FreeSpaceWatch, LOW_SPACE_BYTES, LOW_SPACE_FILES } from '../src/client/freeSpaceWatch'
import type { FreeSpace } from '../src/client/freeSpaceWatch'

const MIB = 1024 * 1024

/** A server's free space as a measure function sees it, counting the measures taken. */
function server (freeBytes: number, freeFiles?: number): { measure: () => Promise<FreeSpace>, free: number, files?: number, measures: number } {
  const s = {
    free: freeBytes,
    files: freeFiles,
    measures: 0,
    measure: async () => {
      s.measures++
      return { freeBytes: s.free, freeFiles: s.files }
    }
  }
  return s
}

/** A write of `adding` bytes to an existing file that then holds back `heldBack`. */
const write = (adding: number, heldBack = adding): { adding: number, heldBack: number, newFile: boolean } => ({ adding, heldBack, newFile: false })

t.test('with room to spare, writes ask nothing; an old measure is taken again behind them', async (t) => {
  let now = 1_000_000
  const watch = new FreeSpaceWatch(() => now)
  const a = server(10 * LOW_SPACE_BYTES)
  t.ok(await watch.fits('a', write(100), a.measure), 'the first write measures')
  t.equal(a.measures, 1)
  for (let i = 0; i < 100; i++) t.ok(await watch.fits('a', write(4096), a.measure))
  t.equal(a.measures, 1, 'no measure while the last shows room to spare')
  now += 5_001
  t.ok(await watch.fits('a', write(1), a.measure), 'an old measure still lets the write through')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(a.measures, 2, 'and is taken again in the background')
  const b = server(10 * LOW_SPACE_BYTES)
  t.ok(await watch.fits('b', write(1), b.measure))
  t.equal(b.measures, 1, 'each server is measured on its own')
})

t.test('short of room, each write measures, and bytes that do not fit are refused', async (t) => {
  const watch = new FreeSpaceWatch(() => 0)
  const s = server(MIB)
  t.ok(await watch.fits('s', write(1000), s.measure))
  t.ok(await watch.fits('s', write(1000, 2000), s.measure))
  t.equal(s.measures, 2, 'a measure per write under LOW_SPACE_BYTES')
  t.notOk(await watch.fits('s', write(1000, MIB + 1), s.measure), 'what the file holds back counts, not only the new bytes')
  s.free = 0
  t.notOk(await watch.fits('s', write(1), s.measure), 'a full disk takes nothing')
  s.free = 2 * MIB
  t.ok(await watch.fits('s', write(1), s.measure), 'and takes again once there is room')
})

t.test('a new file needs a free inode where the disk counts them; an existing file does not', async (t) => {
  const watch = new FreeSpaceWatch(() => 0)
  const s = server(10 * LOW_SPACE_BYTES, 10 * LOW_SPACE_FILES)
  const newFile = { adding: 10, heldBack: 10, newFile: true }
  t.ok(await watch.fits('s', newFile, s.measure))
  t.ok(await watch.fits('s', newFile, s.measure))
  t.equal(s.measures, 1, 'inodes to spare: no measure')
  s.files = 0
  const fewer = new FreeSpaceWatch(() => 0)
  t.notOk(await fewer.fits('s', newFile, s.measure), 'no inode left: a new file is refused')
  t.ok(await fewer.fits('s', write(10), s.measure), 'a write to a file that exists still fits')
  s.files = undefined
  t.ok(await new FreeSpaceWatch(() => 0).fits('s', newFile, s.measure), 'a disk with no fixed count of inodes limits nothing')
})

t.test('a server that does not answer the measure is not taken to be full', async (t) => {
  const watch = new FreeSpaceWatch(() => 0)
  let asked = 0
  const failing = async (): Promise<FreeSpace> => {
    asked++
    throw new Error('ECONNREFUSED')
  }
  t.ok(await watch.fits('down', write(100), failing))
  t.ok(await watch.fits('down', write(100, 200), failing))
  t.equal(asked, 1, 'nor asked again at every write')
})
