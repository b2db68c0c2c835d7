import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { waitFor } from './helpers/waitFor'
import type { Test } from 'tap'
import { AppendHandles } from '../servers/file/appendHandles'
import { FileStore, STATE_DIR_NAME, UPLOAD_DIR_NAME } from '../servers/file/fileStore'
import { uploadsLeft } from './helpers/diskImage'
import { BadPathError, BadRequestError, ConflictError, IsDirectoryError, NotDirectoryError, NotEmptyError, NotFoundError } from '../src/shared/errors'

/* A file server's store on its own, on a temp folder: no HTTP, no leases (no guard). */

/** A temp folder with a `root` for the store and room beside it for things outside the root. */
async function storeIn (t: Test): Promise<{ store: FileStore, root: string, outside: string }> {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-filestore-'))
  const root = path.join(base, 'root')
  const outside = path.join(base, 'outside')
  await fsp.mkdir(outside)
  const store = await FileStore.open(root)
  t.teardown(async () => {
    await store.close().catch(() => {}) // a test may have closed it already
    await fsp.rm(base, { recursive: true, force: true })
  })
  return { store, root, outside }
}

const body = (text: string): Readable => Readable.from([Buffer.from(text)])

async function contentOf (store: FileStore, file: string): Promise<string> {
  const { stream } = await store.openRead(file)
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString()
}

t.test('create makes an empty file at version 1, or a folder, in an existing folder', async (t) => {
  const { store, root } = await storeIn(t)
  t.match(await store.create('/a.txt', 'file'), { path: '/a.txt', kind: 'file', version: 1, size: 0 })
  t.ok(fs.statSync(path.join(root, 'a.txt')).isFile(), 'on disk')
  t.match(await store.create('/d', 'dir'), { path: '/d', kind: 'dir', version: 0, size: 0 })
  t.match(await store.create('/d/b.txt', 'file'), { path: '/d/b.txt', version: 1 })
  await t.rejects(store.create('/a.txt', 'file'), ConflictError, 'an existing file is never truncated')
  await t.rejects(store.create('/d', 'dir'), ConflictError)
  await t.rejects(store.create('/', 'dir'), ConflictError)
  await t.rejects(store.create('/missing/c.txt', 'file'), NotFoundError, 'no parent folder')
  await t.rejects(store.create('/a.txt/c.txt', 'file'), NotDirectoryError, 'a parent that is a file')
})

t.test('append adds bytes and one version per append', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/log.txt', 'file')
  t.match(await store.append('/log.txt', body('one\n')), { version: 2, size: 4 })
  const meta = await store.append('/log.txt', body('two\n'))
  t.match(meta, { version: 3, size: 8 })
  t.equal(fs.readFileSync(path.join(root, 'log.txt'), 'utf8'), 'one\ntwo\n', 'on disk')
  t.equal(await contentOf(store, '/log.txt'), 'one\ntwo\n')
  t.same(await store.stat('/log.txt'), meta, 'stat agrees with what append answered')
  await store.create('/d', 'dir')
  await t.rejects(store.append('/d', body('x')), IsDirectoryError)
  await t.rejects(store.append('/nope.txt', body('x')), NotFoundError)
})

t.test('an append whose body fails midway leaves the file as it was', async (t) => {
  const { store } = await storeIn(t)
  await store.create('/log.txt', 'file')
  await store.append('/log.txt', body('kept\n'))
  const broken = new Readable({
    read () {
      this.push(Buffer.from('half of it'))
      this.destroy(new Error('client went away'))
    }
  })
  await t.rejects(store.append('/log.txt', broken), /client went away/)
  t.match(await store.stat('/log.txt'), { version: 2, size: 5 })
  t.equal(await contentOf(store, '/log.txt'), 'kept\n')
})

t.test('truncate and overwrite change the bytes and add a version', async (t) => {
  const { store } = await storeIn(t)
  await store.create('/f.txt', 'file')
  await store.append('/f.txt', body('0123456789'))
  t.match(await store.truncate('/f.txt', 4), { version: 3, size: 4 })
  t.equal(await contentOf(store, '/f.txt'), '0123')
  t.match(await store.truncate('/f.txt', 6), { version: 4, size: 6 }, 'growing pads with zeros')
  t.equal(await contentOf(store, '/f.txt'), '0123\0\0')
  t.match(await store.overwrite('/f.txt', body('new')), { version: 5, size: 3 })
  t.equal(await contentOf(store, '/f.txt'), 'new')
  await store.create('/d', 'dir')
  await t.rejects(store.truncate('/d', 0), IsDirectoryError)
  await t.rejects(store.truncate('/nope', 0), NotFoundError)
  await t.rejects(store.overwrite('/d', body('x')), IsDirectoryError)
})

t.test('stat and list describe files and folders, never the state folder', async (t) => {
  const { store, root } = await storeIn(t)
  // A file put on the disk by hand, not through dfs, is served at version 1.
  fs.mkdirSync(path.join(root, 'docs'))
  fs.writeFileSync(path.join(root, 'docs', 'by-hand.txt'), 'abc')
  t.match(await store.stat('/docs/by-hand.txt'), { kind: 'file', version: 1, size: 3 })
  t.match(await store.stat('/docs'), { kind: 'dir', version: 0, size: 0 })
  t.match(await store.stat('/'), { kind: 'dir' })
  await store.create('/top.txt', 'file')
  t.ok(fs.existsSync(path.join(root, STATE_DIR_NAME)), 'the state folder exists on disk')
  t.same((await store.list('/')).map((e) => `${e.name}:${e.kind}`).sort(), ['docs:dir', 'top.txt:file'], 'but is not listed')
  t.same((await store.list('/docs')).map((e) => e.name), ['by-hand.txt'])
  t.same((await store.scan()).map((e) => e.path).sort(), ['/docs', '/docs/by-hand.txt', '/top.txt'])
  await t.rejects(store.list('/top.txt'), NotDirectoryError)
  await t.rejects(store.list('/nope'), NotFoundError)
  await t.rejects(store.stat('/nope'), NotFoundError)
  await t.rejects(store.stat(`/${STATE_DIR_NAME}`), BadPathError, 'the state folder is reserved')
  await t.rejects(store.stat(`/${STATE_DIR_NAME}/versions.log`), BadPathError)
  await t.rejects(store.create(`/${STATE_DIR_NAME}/x`, 'file'), BadPathError)
})

t.test('a removed file leaves its folder at once and its space soon after; close waits for that', async (t) => {
  const { store, root } = await storeIn(t)
  await store.createWithContent('/big.bin', body('z'.repeat(256 * 1024)))
  const inode = fs.statSync(path.join(root, 'big.bin')).ino
  await store.remove('/big.bin')
  t.notOk(fs.existsSync(path.join(root, 'big.bin')), 'the name is gone when remove returns')
  await store.close()
  const uploads = path.join(root, STATE_DIR_NAME, UPLOAD_DIR_NAME)
  t.same(fs.readdirSync(uploads).filter((name) => fs.statSync(path.join(uploads, name)).ino === inode), [], 'and the file itself once the store is closed')
  t.same(fs.readdirSync(uploads), [], 'nothing is left in the upload folder')
})

t.test('remove deletes a file; one made again later at the path starts above its version', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/f.txt', 'file')
  await store.append('/f.txt', body('x'))
  await store.append('/f.txt', body('y'))
  await store.remove('/f.txt')
  t.notOk(fs.existsSync(path.join(root, 'f.txt')), 'gone from disk')
  await t.rejects(store.stat('/f.txt'), NotFoundError)
  await t.rejects(store.remove('/f.txt'), NotFoundError, 'twice')
  // A client may still cache version 3 of the old file: the new one must not look like it.
  t.match(await store.create('/f.txt', 'file'), { version: 4, size: 0 })

  await store.create('/d', 'dir')
  await t.rejects(store.remove('/d'), IsDirectoryError, 'remove is for files')
  await store.create('/d/inner.txt', 'file')
  await t.rejects(store.removeFolder('/d'), NotEmptyError)
  await t.rejects(store.removeFolder('/f.txt'), NotDirectoryError)
  await t.rejects(store.removeFolder('/'), BadPathError)
  await store.remove('/d/inner.txt')
  await store.removeFolder('/d')
  await t.rejects(store.stat('/d'), NotFoundError)
})

t.test('versions survive closing and opening the store again (a restart)', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/f.txt', 'file')
  await store.append('/f.txt', body('x'))
  await store.create('/gone.txt', 'file')
  await store.truncate('/gone.txt', 1)
  await store.remove('/gone.txt')
  await store.close()
  const reopened = await FileStore.open(root)
  t.teardown(async () => await reopened.close())
  t.equal((await reopened.stat('/f.txt')).version, 2)
  t.equal((await reopened.create('/gone.txt', 'file')).version, 3, 'a removed file\'s version too')
})

t.test('nothing outside the root is reachable', async (t) => {
  const { store, root, outside } = await storeIn(t)
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'secret')
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'link.txt'))
  fs.symlinkSync(outside, path.join(root, 'linkdir'))

  // FileStore is handed canonical paths, but it does not rely on it.
  await t.rejects(store.stat('/../outside/secret.txt'), NotFoundError, '.. out of the root')
  await t.rejects(store.openRead('/../outside/secret.txt'), NotFoundError)
  await t.rejects(store.create('/../outside/new.txt', 'file'), NotFoundError)
  // A link is described as a link; nothing reads, writes or goes through what it points to.
  t.match(await store.stat('/link.txt'), { kind: 'symlink', target: path.join(outside, 'secret.txt') }, 'a symlink to a file outside is a link')
  await t.rejects(store.openRead('/link.txt'), BadRequestError)
  await t.rejects(store.append('/link.txt', body('x')), BadRequestError)
  await t.rejects(store.truncate('/link.txt', 0), BadRequestError)
  await t.rejects(store.overwrite('/link.txt', body('x')), BadRequestError)
  fs.chmodSync(path.join(outside, 'secret.txt'), 0o644)
  await store.chmod('/link.txt', 0o600)
  t.equal(fs.statSync(path.join(outside, 'secret.txt')).mode & 0o777, 0o644, 'chmod of a link leaves what it points to alone')
  await store.setTimes('/link.txt', 1_000_000)
  t.not(fs.statSync(path.join(outside, 'secret.txt')).mtimeMs, 1_000_000, 'utimes of a link sets the link\'s times only')
  await t.rejects(store.stat('/linkdir/secret.txt'), NotFoundError, 'a file below a symlinked folder')
  await t.rejects(store.list('/linkdir'), NotDirectoryError)
  // A link is not a folder here: ENOTDIR, as for any other non-folder on the way.
  await t.rejects(store.create('/linkdir/new.txt', 'file'), NotDirectoryError, 'creating through a symlinked folder')
  await t.rejects(store.create('/linkdir/new', 'symlink', { target: '/x' }), NotDirectoryError, 'a link through a symlinked folder')
  // Even one that stays inside: nothing goes through a link, so none can be swapped to point out later.
  fs.writeFileSync(path.join(root, 'real.txt'), 'inside')
  fs.mkdirSync(path.join(root, 'realdir'))
  fs.writeFileSync(path.join(root, 'realdir', 'f.txt'), 'f')
  fs.symlinkSync(path.join(root, 'real.txt'), path.join(root, 'alias.txt'))
  fs.symlinkSync('realdir', path.join(root, 'aliasdir'))
  t.equal((await store.stat('/alias.txt')).kind, 'symlink', 'a symlink within the root')
  await t.rejects(store.stat('/aliasdir/f.txt'), NotFoundError, 'a file below a link to a folder inside the root')
  t.same((await store.list('/')).map((e) => e.name).sort(), ['alias.txt', 'aliasdir', 'link.txt', 'linkdir', 'real.txt', 'realdir'], 'links are listed')
  t.same((await store.scan()).map((e) => `${e.path} ${e.kind}`).sort(),
    ['/alias.txt symlink', '/aliasdir symlink', '/link.txt symlink', '/linkdir symlink', '/real.txt file', '/realdir dir', '/realdir/f.txt file'], 'scan walks no link')
  await store.remove('/link.txt')
  t.ok(fs.existsSync(path.join(outside, 'secret.txt')), 'removing a link leaves its target')

  t.equal(fs.readFileSync(path.join(outside, 'secret.txt'), 'utf8'), 'secret', 'the file outside is untouched')
  t.same(fs.readdirSync(outside), ['secret.txt'], 'and nothing was created beside it')
  t.ok(fs.lstatSync(path.join(root, 'linkdir')).isSymbolicLink(), 'the symlink itself is still there')
})

t.test('an append cut off by a crash leaves the file as before it, and a retry of it then lands once', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/log.txt', 'file')
  await store.append('/log.txt', body('one\n'), undefined, 'change-1')
  const before = await store.stat('/log.txt')
  // What a kill -9 between the append's first bytes and its version line leaves behind: the
  // intent line (written first) and bytes on disk, but no version line.
  await store.close()
  await fsp.appendFile(path.join(root, STATE_DIR_NAME, 'versions.log'), JSON.stringify({ p: '/log.txt', a: before.size }) + '\n')
  await fsp.appendFile(path.join(root, 'log.txt'), 'two\n')
  const reopened = await FileStore.open(root)
  t.teardown(async () => await reopened.close())
  t.equal(await contentOf(reopened, '/log.txt'), 'one\n', 'the cut-off append is undone at start')
  t.equal((await reopened.stat('/log.txt')).version, before.version, 'at the version it had')
  const retried = await reopened.append('/log.txt', body('two\n'), undefined, 'change-2')
  t.equal(retried.version, before.version + 1)
  t.equal(await contentOf(reopened, '/log.txt'), 'one\ntwo\n', 'the client\'s retry lands once')
  t.equal((await reopened.append('/log.txt', body('two\n'), undefined, 'change-2')).version, before.version + 1, 'and only once')
  t.equal(await contentOf(reopened, '/log.txt'), 'one\ntwo\n')
})

t.test('a completed append is kept at start: only a cut-off one is undone', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/log.txt', 'file')
  await store.append('/log.txt', body('one\n'))
  await store.append('/log.txt', body('two\n'))
  await store.close()
  const reopened = await FileStore.open(root)
  t.teardown(async () => await reopened.close())
  t.equal(await contentOf(reopened, '/log.txt'), 'one\ntwo\n')
})

t.test('the dfs mode is kept where the disk needs other bits: create, chmod, writes, renames, removal and a restart', async (t) => {
  const { store, root } = await storeIn(t)
  const diskMode = (rel: string): number => fs.statSync(path.join(root, rel)).mode & 0o7777
  t.equal((await store.create('/zero.txt', 'file', { mode: 0 })).mode, 0, 'a file created with mode 0')
  t.equal(diskMode('zero.txt'), 0o600, 'is readable and writable for the server on its disk')
  t.equal((await store.create('/plain.txt', 'file', { mode: 0o640 })).mode, 0o640, 'a mode the disk holds as is')
  t.equal(diskMode('plain.txt'), 0o640, 'is the disk\'s mode')
  t.equal((await store.create('/shut', 'dir', { mode: 0o500 })).mode, 0o500, 'a folder created 0500')
  t.equal(diskMode('shut'), 0o700, 'is writable and searchable for the server')
  await store.create('/shut/inside.txt', 'file', { mode: 0o444 })
  t.equal((await store.append('/zero.txt', body('x'))).mode, 0, 'an append keeps the mode')
  t.equal((await store.overwrite('/zero.txt', body('y'))).mode, 0, 'a store of the whole file keeps the mode')
  t.equal(diskMode('zero.txt'), 0o600, 'and the server\'s bits')
  t.equal((await store.chmod('/plain.txt', 0o4000)).mode, 0o4000, 'chmod to a mode without owner bits')
  t.equal((await store.chmod('/plain.txt', 0o755)).mode, 0o755, 'and back')
  t.equal((await store.linkAs('/zero.txt', '/moved.txt', false)).mode, 0, 'a rename on the server keeps the mode')
  await store.remove('/zero.txt')
  t.equal((await store.create('/zero.txt', 'file')).mode, 0o644 & ~process.umask(), 'a new file at the old path does not inherit the record')
  await store.moveFolder('/shut', '/closed')
  t.equal((await store.stat('/closed')).mode, 0o500, 'a moved folder keeps its mode')
  t.equal((await store.stat('/closed/inside.txt')).mode, 0o444, 'and so do the files in it')
  t.equal((await store.receive('/arrived.txt', body('z'), { fromVersion: 1, mtimeMs: 1000, mode: 0o200, replace: false })).mode, 0o200, 'a file received for a rename keeps the sender\'s mode')
  await t.rejects(store.create('/bad', 'symlink', { target: 'a\0b' }), BadRequestError, 'a link target with NUL')
  await t.rejects(store.create('/bad', 'symlink', {}), BadRequestError, 'a link without a target')

  await store.close()
  const reopened = await FileStore.open(root)
  t.teardown(async () => await reopened.close())
  const modes = await Promise.all(['/moved.txt', '/plain.txt', '/closed', '/closed/inside.txt', '/arrived.txt'].map(async (p) => (await reopened.stat(p)).mode))
  t.same(modes, [0, 0o755, 0o500, 0o444, 0o200], 'every mode survives a restart')
  t.match(fs.readFileSync(path.join(root, STATE_DIR_NAME, 'modes.log'), 'utf8').trim().split('\n').length, 4, 'the record holds only the modes the disk cannot (compacted)')
})

t.test('an append whose version line reached the disk and whose bytes did not (a power cut) is undone, and its change id forgotten', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/log.txt', 'file')
  await store.append('/log.txt', body('one\n'), undefined, 'change-1')
  await store.append('/log.txt', body('two\n'), undefined, 'change-2')
  const twoAt = (await store.stat('/log.txt')).version
  await store.close()
  // The disk lost the second append's bytes (or kept zeros), not its version line.
  fs.writeFileSync(path.join(root, 'log.txt'), 'one\n\0\0\0\0')
  const reopened = await FileStore.open(root)
  t.teardown(async () => await reopened.close())
  t.equal(await contentOf(reopened, '/log.txt'), 'one\n', 'cut back to the size before it')
  const retried = await reopened.append('/log.txt', body('two\n'), undefined, 'change-2')
  t.ok(retried.version > twoAt, 'a retry of it is applied, above the version the lost one had')
  t.equal(await contentOf(reopened, '/log.txt'), 'one\ntwo\n', 'the retry lands once')
})

t.test('bytes past the last recorded append (its successor\'s intent line lost to a power cut) are cut off at start', async (t) => {
  const { store, root } = await storeIn(t)
  await store.create('/log.txt', 'file')
  await store.append('/log.txt', body('one\n'))
  await store.close()
  await fsp.appendFile(path.join(root, 'log.txt'), 'half')
  const reopened = await FileStore.open(root)
  t.teardown(async () => await reopened.close())
  t.equal(await contentOf(reopened, '/log.txt'), 'one\n')
})

t.test('appends to many files at once all land, with their versions, over a restart', async (t) => {
  const { store, root } = await storeIn(t)
  const names = Array.from({ length: 20 }, (_, i) => `/f${i}.txt`)
  for (const name of names) await store.create(name, 'file')
  // Their version lines share the log's fsyncs (group commit).
  await Promise.all(names.flatMap((name) => [store.append(name, body('a\n')), store.append(name, body('b\n'))]))
  await store.close()
  const reopened = await FileStore.open(root)
  t.teardown(async () => await reopened.close())
  for (const name of names) {
    t.equal((await contentOf(reopened, name)).length, 4, `${name} has both appends`)
    t.equal((await reopened.stat(name)).version, 3, `${name} is at version 3`)
  }
})

// Append handles kept open between appends (servers/file/appendHandles.ts): reused for the
// file they were opened on, never for another file at the path, closed when the file goes.

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
  // The name goes at once; the unlink itself runs behind (DeferredUnlinks).
  t.notOk(fs.existsSync(file), 'the name is gone')
  await waitFor('the file unlinked behind', async () => (await held.stat()).nlink === 0, 5000, 10)
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

t.test('createWithContent places a new file with its bytes, mode and mtime, exclusively, once per change id', async (t) => {
  const { store, root } = await storeIn(t)
  const made = await store.createWithContent('/new.txt', body('hello\n'), { mode: 0o600, mtimeMs: 1_580_608_922_000, changeId: 'c1' })
  t.match(made, { repeated: false, meta: { path: '/new.txt', kind: 'file', version: 1, size: 6, mode: 0o600, mtimeMs: 1_580_608_922_000 } })
  t.equal(fs.readFileSync(path.join(root, 'new.txt'), 'utf8'), 'hello\n', 'on disk')
  // At most the next upload's file, made ahead and empty.
  t.same(uploadsLeft(root), [], 'no upload file left beside')
  t.ok(fs.readdirSync(path.join(root, STATE_DIR_NAME, UPLOAD_DIR_NAME)).length <= 1, 'beside the one made ahead')
  const again = await store.createWithContent('/new.txt', body('hello\n'), { changeId: 'c1' })
  t.match(again, { repeated: true, meta: { version: 1, size: 6 } }, 'a retry of the same change is answered as the file is')
  await t.rejects(store.createWithContent('/new.txt', body('other\n'), { changeId: 'c2' }), ConflictError, 'another change at an existing path is a conflict')
  await t.rejects(store.createWithContent('/missing/x.txt', body('x')), NotFoundError, 'the folder must exist')
  t.equal(await contentOf(store, '/new.txt'), 'hello\n', 'the file is untouched')

  // What runs alongside (the directory's claim) failing takes the file away again.
  let undone = 0
  const refused = store.createWithContent('/refused.txt', body('x'), {}, { run: async () => { throw new ConflictError('taken') }, undo: async () => { undone++ } })
  await t.rejects(refused, ConflictError)
  t.notOk(fs.existsSync(path.join(root, 'refused.txt')), 'the file is removed again')
  t.equal(undone, 0, 'nothing to undo of a claim that failed')
  t.match(await store.createWithContent('/refused.txt', body('y')), { repeated: false, meta: { size: 1 } }, 'and the path can be created later')

  // The claim starts before the disk steps, beside both rounds of fsyncs; a disk step that
  // fails after the claim went through (a name this disk has: EEXIST at the link) drops it.
  let claimedBeforeFile: boolean | undefined
  const claimed = await store.createWithContent('/early.txt', body('z'), {}, {
    run: async () => { claimedBeforeFile = !fs.existsSync(path.join(root, 'early.txt')) },
    undo: async () => { undone++ }
  })
  t.equal(claimed.meta.size, 1)
  t.equal(claimedBeforeFile, true, 'the claim started before the file took its name')
  await t.rejects(store.createWithContent('/early.txt', body('again'), {}, { run: async () => {}, undo: async () => { undone++ } }), ConflictError)
  t.equal(undone, 1, 'a claim that went through is dropped when the disk refuses the name')
  t.equal(await contentOf(store, '/early.txt'), 'z', 'and the file there is untouched')
})
