import t from 'tap'
import { Namespace } from '../servers/directory/namespace'
import { RecentMoves } from '../servers/directory/recentMoves'
import type { FileMeta } from '../src/shared/protocol'

/*
 * Where the directory says a renamed file went (GET /moved), for a mount that still has it
 * open under its old name: never a path that now holds another file.
 */

function namespaceWith (...files: string[]): Namespace {
  const namespace = new Namespace()
  for (const file of files) namespace.claim(1, file, 'file')
  return namespace
}

t.test('a renamed file is found where it went, across renames of the file and of its folders', async (t) => {
  const namespace = namespaceWith('/logs/app.log', '/logs/other.log')
  namespace.switchFile('/logs/app.log', 1, '/logs/app.log.1', 1, null)
  t.equal(namespace.movedTo('/logs/app.log'), '/logs/app.log.1', 'renamed once')
  namespace.switchFile('/logs/app.log.1', 1, '/logs/app.log.2', 1, null)
  t.equal(namespace.movedTo('/logs/app.log'), '/logs/app.log.2', 'renamed again: followed to the end')
  t.equal(namespace.movedTo('/logs/app.log.1'), '/logs/app.log.2', 'from the middle too')
  namespace.switchFolder('/logs', '/old-logs', 1)
  t.equal(namespace.movedTo('/logs/app.log'), '/old-logs/app.log.2', 'its folder renamed')
  t.equal(namespace.movedTo('/logs/other.log'), '/old-logs/other.log', 'a file that only moved with its folder')
  t.equal(namespace.movedTo('/nowhere'), undefined, 'a path no rename left')
  // Moved to another server (a rename across servers switches the directory the same way).
  namespace.claim(2, '/elsewhere/keep', 'file')
  namespace.switchFile('/old-logs/other.log', 1, '/elsewhere/other.log', 2, null)
  t.equal(namespace.movedTo('/logs/other.log'), '/elsewhere/other.log', 'and to another file server')
})

t.test('nothing is followed into another file: removed, replaced, or a new file at the old name', async (t) => {
  const namespace = namespaceWith('/a', '/b', '/c', '/d')
  namespace.switchFile('/a', 1, '/a2', 1, null)
  namespace.drop(1, '/a2')
  t.equal(namespace.movedTo('/a'), undefined, 'the renamed file was removed')

  namespace.switchFile('/b', 1, '/b2', 1, null)
  namespace.switchFile('/c', 1, '/b2', 1, 1)
  t.equal(namespace.movedTo('/b'), undefined, 'a rename onto its new name replaced it')
  t.equal(namespace.movedTo('/c'), '/b2', 'the replacing file is followed')

  namespace.switchFile('/d', 1, '/d2', 1, null)
  namespace.claimNew(1, '/d', 'file')
  t.equal(namespace.movedTo('/d'), undefined, 'a new file at the old name: the name is its now')
  t.equal(namespace.movedTo('/d2'), undefined, 'a path a file is at was left by none')
})

t.test('a file server\'s report or removal forgets the moves into what it no longer holds', async (t) => {
  const namespace = namespaceWith('/x', '/y')
  namespace.switchFile('/x', 1, '/x2', 1, null)
  namespace.switchFile('/y', 1, '/y2', 1, null)
  const entry = (path: string): FileMeta => ({ path, kind: 'file', version: 1, size: 0, mtimeMs: 0 })
  namespace.replaceClaims(1, [entry('/x2')])
  t.equal(namespace.movedTo('/x'), '/x2', 'a file the report still has keeps its follower')
  t.equal(namespace.movedTo('/y'), undefined, 'one it lacks does not')
  namespace.dropServer(1)
  t.equal(namespace.movedTo('/x'), undefined, 'a server forgotten takes its files\' followers along')
})

t.test('the oldest moves are forgotten past the bound, and their bookkeeping with them', async (t) => {
  const moves = new RecentMoves(3)
  for (const name of ['a', 'b', 'c', 'd']) moves.moved(`/${name}`, `/${name}.1`)
  t.equal(moves.size, 3, 'at most the bound')
  t.equal(moves.whereIs('/a'), undefined, 'the oldest went first')
  t.equal(moves.whereIs('/d'), '/d.1', 'the newest stays')
  // A remembered move renewed by a later rename is the newest again.
  moves.moved('/b.1', '/b.2')
  moves.moved('/e', '/e.1')
  t.equal(moves.whereIs('/b'), '/b.2', 'followed on, and kept as the newest')
  t.equal(moves.whereIs('/c'), undefined, 'so the next oldest went')
  moves.removed('/b.2')
  t.equal(moves.whereIs('/b'), undefined, 'a removal ends every follower of the file')
  t.equal(moves.whereIs('/b.1'), undefined, 'the one in the middle too')
})
