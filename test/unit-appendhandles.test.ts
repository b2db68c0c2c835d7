import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { AppendHandles } from '../servers/file/appendHandles'
import { FileStore } from '../servers/file/fileStore'
import { BadRequestError, NotFoundError } from '../src/shared/errors'

/*
 * Append handles kept open between appends (servers/file/appendHandles.ts): reused for the
 * file they were opened on, never for another file at the path, closed when the file goes.
 */

async function storeIn (t: Test): Promise<{ store: FileStore, root: string, outside: string }> {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-appendhandles-'))
  const root = path.join(base, 'root')
  const outside = path.join(base, 'outside')
  await fsp.mkdir(outside)
  const store = await FileStore.open(root)
  t.teardown(async () => {
    await store.close().catch(() => {})
    await fsp.rm(base, { recursive: true, force: true })
  })
  return { store, root, outside }
}

const body = (text: string): Readable => Readable.from([Buffer.from(text)])

/** How many descriptors of this process are open on the file (by its inode). */
function descriptorsOn (file: string): number {
  const { dev, ino } = fs.statSync(file)
  let count = 0
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const stats = fs.statSync(`/proc/self/fd/${fd}`)
      if (stats.dev === dev && stats.ino === ino) count++
    } catch {
      // closed meanwhile, or not a file
    }
  }
  return count
}

t.test('appends to one file share one handle, which the unlink closes', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/log.txt', 'file')
  for (let i = 0; i < 5; i++) await store.append('/log.txt', body(`line ${i}\n`))
  const file = path.join(root, 'log.txt')
  t.equal(descriptorsOn(file), 1, 'one handle kept open')
  t.equal(fs.readFileSync(file, 'utf8'), [0, 1, 2, 3, 4].map((i) => `line ${i}\n`).join(''))
  const held = await fsp.open(file, 'r')
  t.teardown(async () => await held.close())
  await store.remove('/log.txt')
  t.equal((await held.stat()).nlink, 0, 'unlinked')
  t.equal(descriptorsOn(`/proc/self/fd/${held.fd}`), 1, 'only the test\'s own descriptor is left on it: the kept handle is closed')
})

t.test('a file replaced on the disk behind the store gets the next append, not the old inode', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/log.txt', 'file')
  await store.append('/log.txt', body('old\n'))
  const file = path.join(root, 'log.txt')
  fs.writeFileSync(file + '.new', 'new\n')
  fs.renameSync(file + '.new', file)
  const meta = await store.append('/log.txt', body('more\n'))
  t.equal(fs.readFileSync(file, 'utf8'), 'new\nmore\n', 'appended to the file now at the path')
  t.equal(meta.size, 9)
})

t.test('a symbolic link put at the path is refused, even with a handle kept for the file it replaced', async (t) => {
  const { store, root, outside } = await storeIn(t)
  await store.create('/log.txt', 'file')
  await store.append('/log.txt', body('one\n'))
  const file = path.join(root, 'log.txt')
  fs.writeFileSync(path.join(outside, 'secret'), 'secret\n')
  fs.renameSync(file, path.join(outside, 'moved'))
  fs.symlinkSync(path.join(outside, 'secret'), file)
  await t.rejects(store.append('/log.txt', body('two\n')), BadRequestError, 'a link is not appended through')
  fs.unlinkSync(file)
  fs.linkSync(path.join(outside, 'secret'), file)
  await t.rejects(store.append('/log.txt', body('two\n')), NotFoundError, 'nor a hard link to a file outside')
  t.equal(fs.readFileSync(path.join(outside, 'secret'), 'utf8'), 'secret\n', 'outside untouched')
  t.equal(fs.readFileSync(path.join(outside, 'moved'), 'utf8'), 'one\n', 'nor the old file written through its kept handle')
})

t.test('past the cap the least lately used handle is closed', async (t) => {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-appendhandles-cap-'))
  t.teardown(async () => await fsp.rm(base, { recursive: true, force: true }))
  const handles = new AppendHandles(2)
  t.teardown(async () => await handles.closeAll())
  const open = async (name: string): Promise<{ handle: fsp.FileHandle, inode: string }> => {
    const handle = await fsp.open(path.join(base, name), 'a')
    const stats = await handle.stat()
    return { handle, inode: `${stats.dev}:${stats.ino}` }
  }
  const a = await open('a')
  const b = await open('b')
  const c = await open('c')
  handles.keep('/a', a)
  handles.keep('/b', b)
  t.equal(handles.take('/a', a.inode), a, 'taken back')
  handles.keep('/a', a)
  handles.keep('/c', c)
  t.equal(handles.size, 2)
  t.equal(handles.take('/b', b.inode), undefined, '/b was the least lately used: closed')
  t.equal(handles.take('/a', 'other'), undefined, 'a handle of another inode is not given out')
  t.equal(handles.size, 1, 'and is closed')
  t.equal(handles.take('/c', c.inode), c)
  await c.handle.close()
})
