import t from 'tap'
import { Namespace } from '../servers/directory/namespace'
import { BadPathError, ConflictError, CrossServerError, IsDirectoryError, NotDirectoryError, NotEmptyError, NotFoundError } from '../src/shared/errors'
import type { EntryKind, FileMeta } from '../src/shared/protocol'

/* The directory server's path map on its own: no HTTP, no file servers. */

function meta (path: string, kind: EntryKind = 'file'): FileMeta {
  return { path, kind, version: kind === 'file' ? 1 : 0, size: 0, mtimeMs: 0 }
}

/** A listing as "name:kind:ids", compact enough to compare whole (ids sorted: a Set's order is not the contract). */
function listed (ns: Namespace, path: string): string[] {
  return ns.list(path).map((e) => `${e.name}:${e.kind}:${[...e.machineIds].sort().join(',')}`)
}

t.test('an empty namespace has only the root', async (t) => {
  const ns = new Namespace()
  t.same(ns.lookup('/'), { kind: 'dir' })
  t.same(ns.list('/'), [])
  t.same(ns.holdersOf('/'), [])
  t.equal(ns.fileCount(), 0)
  t.throws(() => ns.lookup('/nope'), NotFoundError)
  t.throws(() => ns.list('/nope'), NotFoundError)
})

t.test('replaceClaims adds files with their folders, sorted in listings', async (t) => {
  const ns = new Namespace()
  ns.replaceClaims(1, [meta('/b.txt'), meta('/docs/a.txt'), meta('/empty', 'dir')])
  t.equal(ns.fileCount(), 2)
  t.same(ns.lookup('/docs/a.txt'), { kind: 'file', machineId: 1 })
  t.same(ns.lookup('/docs'), { kind: 'dir' }, 'a folder implied by a file exists')
  t.same(listed(ns, '/'), ['b.txt:file:1', 'docs:dir:1', 'empty:dir:1'])
  t.same(listed(ns, '/docs'), ['a.txt:file:1'])
  t.same(ns.holdersOf('/'), [1])
  t.throws(() => ns.list('/b.txt'), NotDirectoryError, 'a file is not listable')
  t.throws(() => ns.holdersOf('/b.txt'), NotDirectoryError)
})

t.test('a folder spans every server with something in it', async (t) => {
  const ns = new Namespace()
  ns.replaceClaims(1, [meta('/shared/one.txt')])
  ns.replaceClaims(2, [meta('/shared/two.txt')])
  t.same(ns.holdersOf('/shared').sort(), [1, 2])
  t.same(listed(ns, '/shared'), ['one.txt:file:1', 'two.txt:file:2'])
  t.same(listed(ns, '/'), ['shared:dir:1,2'])
})

t.test('replaceClaims is all or nothing on a clash', async (t) => {
  const ns = new Namespace()
  ns.replaceClaims(1, [meta('/a.txt'), meta('/f')])
  const err = t.throws(() => ns.replaceClaims(2, [meta('/new.txt'), meta('/a.txt')]), ConflictError) as ConflictError
  t.same(err.details.paths, ['/a.txt is held by file server 1'], 'names the clash')
  t.notOk(ns.has('/new.txt'), 'nothing of the refused report was added')
  t.throws(() => ns.replaceClaims(2, [meta('/f/under.txt')]), ConflictError, 'a path below a file clashes')
  t.throws(() => ns.replaceClaims(2, [meta('/a.txt', 'dir')]), ConflictError, 'a folder where a file is clashes')
  ns.replaceClaims(2, [meta('/x', 'dir')])
  t.throws(() => ns.replaceClaims(3, [meta('/x')]), ConflictError, 'a file where a folder is clashes')
  t.same(ns.lookup('/a.txt'), { kind: 'file', machineId: 1 })
})

t.test('replaceClaims replaces what a server claimed before', async (t) => {
  const ns = new Namespace()
  ns.replaceClaims(1, [meta('/old/a.txt'), meta('/keep.txt')])
  ns.replaceClaims(2, [meta('/old/b.txt')])
  ns.replaceClaims(1, [meta('/keep.txt')])
  t.notOk(ns.has('/old/a.txt'), 'a file no longer reported is gone')
  t.same(ns.holdersOf('/old'), [2], 'a folder stays while another server has something in it')
  ns.replaceClaims(2, [])
  t.notOk(ns.has('/old'), 'and goes with its last holder')
  t.same(listed(ns, '/'), ['keep.txt:file:1'])
  ns.replaceClaims(1, [meta('/keep.txt')])
  t.same(listed(ns, '/'), ['keep.txt:file:1'], 'the same report twice changes nothing')
})

t.test('claimNew refuses what exists and needs the parent folder', async (t) => {
  const ns = new Namespace()
  ns.replaceClaims(1, [meta('/a.txt'), meta('/d', 'dir')])
  ns.claimNew(1, '/d/new.txt', 'file')
  t.same(ns.lookup('/d/new.txt'), { kind: 'file', machineId: 1 })
  t.throws(() => ns.claimNew(2, '/a.txt', 'file'), ConflictError)
  t.throws(() => ns.claimNew(1, '/a.txt', 'file'), ConflictError, 'even by its own server')
  t.throws(() => ns.claimNew(1, '/d', 'dir'), ConflictError)
  t.throws(() => ns.claimNew(1, '/', 'dir'), ConflictError)
  t.throws(() => ns.claimNew(1, '/missing/x.txt', 'file'), NotFoundError, 'no parent folder')
  t.throws(() => ns.claimNew(1, '/a.txt/x.txt', 'file'), NotDirectoryError, 'a parent that is a file')
})

t.test('drop removes a file or a server\'s hold on a folder', async (t) => {
  const ns = new Namespace()
  ns.replaceClaims(1, [meta('/d/a.txt'), meta('/e', 'dir')])
  ns.replaceClaims(2, [meta('/d/b.txt')])
  t.throws(() => ns.drop(2, '/d/a.txt'), ConflictError, 'another server\'s file')
  t.throws(() => ns.drop(1, '/d'), NotEmptyError, 'a folder in which the server still has a file')
  ns.drop(1, '/d/a.txt')
  t.notOk(ns.has('/d/a.txt'))
  t.same(listed(ns, '/d'), ['b.txt:file:2'])
  ns.drop(1, '/d')
  t.same(ns.holdersOf('/d'), [2], 'the folder stays for the other server')
  t.throws(() => ns.drop(1, '/d'), NotFoundError, 'a hold already dropped')
  ns.drop(1, '/e')
  t.notOk(ns.has('/e'), 'a folder goes with its last holder')
  t.throws(() => ns.drop(1, '/'), BadPathError)
  t.throws(() => ns.drop(1, '/never'), NotFoundError)
})

t.test('switchFile moves a file between paths and servers, checking what it replaces', async (t) => {
  const ns = new Namespace()
  ns.replaceClaims(1, [meta('/a.txt'), meta('/d', 'dir')])
  ns.replaceClaims(2, [meta('/b.txt')])
  ns.switchFile('/a.txt', 1, '/d/a.txt', 2, null)
  t.notOk(ns.has('/a.txt'))
  t.same(ns.lookup('/d/a.txt'), { kind: 'file', machineId: 2 })
  t.throws(() => ns.switchFile('/d/a.txt', 1, '/c.txt', 1, null), ConflictError, 'a wrong source server')
  t.throws(() => ns.switchFile('/d/a.txt', 2, '/b.txt', 2, null), ConflictError, 'the target is not absent as the caller saw it')
  t.throws(() => ns.switchFile('/d/a.txt', 2, '/d', 2, null), IsDirectoryError)
  t.throws(() => ns.switchFile('/nope', 2, '/c.txt', 2, null), NotFoundError)
  t.throws(() => ns.switchFile('/d/a.txt', 2, '/missing/c.txt', 2, null), NotFoundError, 'no target folder')
  ns.switchFile('/d/a.txt', 2, '/b.txt', 2, 2)
  t.same(ns.lookup('/b.txt'), { kind: 'file', machineId: 2 }, 'replaces the file it was told of')
  t.equal(ns.fileCount(), 1)
})

t.test('switchFolder moves a folder of one server, with everything below it', async (t) => {
  const ns = new Namespace()
  ns.replaceClaims(1, [meta('/src/a.txt'), meta('/src/sub/b.txt'), meta('/empty', 'dir'), meta('/full/x.txt')])
  ns.replaceClaims(2, [meta('/both/two.txt'), meta('/theirs', 'dir')])
  ns.replaceClaims(1, [meta('/src/a.txt'), meta('/src/sub/b.txt'), meta('/empty', 'dir'), meta('/full/x.txt'), meta('/both/one.txt')])

  t.throws(() => ns.switchFolder('/both', '/moved', 1), CrossServerError, 'a folder that spans servers')
  t.throws(() => ns.switchFolder('/src', '/src/sub/deeper', 1), BadPathError, 'into itself')
  t.throws(() => ns.switchFolder('/', '/x', 1), BadPathError)
  t.throws(() => ns.switchFolder('/src', '/full', 1), NotEmptyError, 'over a folder with something in it')
  t.throws(() => ns.switchFolder('/src', '/full/x.txt', 1), NotDirectoryError, 'over a file')
  t.throws(() => ns.switchFolder('/src', '/theirs/src', 1), CrossServerError, 'into a folder of another server')
  t.throws(() => ns.switchFolder('/nope', '/x', 1), NotFoundError)

  const moved = ns.switchFolder('/src', '/empty', 1)
  t.same(moved.sort(), [['/src/a.txt', '/empty/a.txt'], ['/src/sub/b.txt', '/empty/sub/b.txt']])
  t.notOk(ns.has('/src'))
  t.notOk(ns.has('/src/sub/b.txt'))
  t.same(ns.lookup('/empty/sub/b.txt'), { kind: 'file', machineId: 1 })
  t.same(listed(ns, '/empty'), ['a.txt:file:1', 'sub:dir:1'])
  t.same(listed(ns, '/'), ['both:dir:1,2', 'empty:dir:1', 'full:dir:1', 'theirs:dir:2'])
})

t.test('a listing is in the order of the names\' UTF-16 code units, whatever order they were claimed in', async (t) => {
  const ns = new Namespace()
  const names = ['b', 'B', 'a.txt', 'a', 'Ä', 'z', '日本', '\u{1F600}', '\uFFFD', '10', '9', '_', '.hidden', 'a b']
  ns.replaceClaims(1, names.map((name) => meta(`/${name}`)))
  ns.claimNew(2, '/sub', 'dir')
  const expected = [...names, 'sub'].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  t.same(ns.list('/').map((e) => e.name), expected)
  t.same(ns.list('/').find((e) => e.name === 'sub'), { name: 'sub', kind: 'dir', machineIds: [2] }, 'each name with its kind and holders')
})
