import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import type { Namespace } from '../servers/directory/namespace'
import { JournaledNamespace, NAMESPACE_JOURNAL_FILE } from '../servers/directory/namespaceJournal'
import type { EntryKind, FileMeta } from '../src/shared/protocol'

/* The directory's journaled namespace on its own: what a reopen of its state folder gives back. */

function meta (path: string, kind: EntryKind = 'file'): FileMeta {
  return { path, kind, version: 1, size: 0, mtimeMs: 0 }
}

function stateDir (t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-nsjournal-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

const lines: string[] = []
const log = (line: string): void => { lines.push(line) }

/** Every name, depth first, as "path:kind:ids". */
function everything (ns: Namespace, folder = '/'): string[] {
  return ns.list(folder).flatMap((e) => {
    const child = folder === '/' ? `/${e.name}` : `${folder}/${e.name}`
    const here = `${child}:${e.kind}:${[...e.machineIds].sort().join(',')}`
    return e.kind === 'dir' ? [here, ...everything(ns, child)] : [here]
  })
}

t.test('every kind of change survives a reopen, in the order it was made', async (t) => {
  const dir = stateDir(t)
  const ns = JournaledNamespace.open(dir, log)
  ns.replaceClaims(1, [meta('/a/one.txt'), meta('/a/two.txt'), meta('/empty', 'dir')])
  ns.replaceClaims(2, [meta('/b/three.txt'), meta('/a/four.txt')])
  ns.claimNew(1, '/a/new.txt', 'file')
  ns.claimNew(2, '/b/sub', 'dir')
  ns.drop(1, '/a/two.txt')
  ns.switchFile('/a/one.txt', 1, '/b/one.txt', 2, null)
  ns.switchFolder('/b/sub', '/b/moved', 2)
  ns.replaceClaims(3, [meta('/c/gone.txt')])
  ns.dropServer(3)
  const before = everything(ns)
  ns.close()

  const reopened = JournaledNamespace.open(dir, log)
  t.same(everything(reopened), before, 'the same names on the same servers')
  t.same(before, [
    '/a:dir:1,2', '/a/four.txt:file:2', '/a/new.txt:file:1',
    '/b:dir:2', '/b/moved:dir:2', '/b/one.txt:file:2', '/b/three.txt:file:2',
    '/empty:dir:1'
  ])
  t.equal(reopened.fileCount(), 4)
  reopened.close()
  t.equal(fs.readFileSync(path.join(dir, NAMESPACE_JOURNAL_FILE), 'utf8').trim().split('\n').length, 2, 'rewritten compacted at open: one line per server')
})

t.test('a report replaces what the journal had for that server', async (t) => {
  const dir = stateDir(t)
  const ns = JournaledNamespace.open(dir, log)
  ns.replaceClaims(1, [meta('/old.txt'), meta('/kept.txt')])
  ns.close()
  const reopened = JournaledNamespace.open(dir, log)
  reopened.replaceClaims(1, [meta('/kept.txt'), meta('/made-while-away.txt')])
  t.same(everything(reopened), ['/kept.txt:file:1', '/made-while-away.txt:file:1'])
  reopened.close()
})

t.test('a last line cut short by a crash is skipped, the rest is kept', async (t) => {
  const dir = stateDir(t)
  const ns = JournaledNamespace.open(dir, log)
  ns.replaceClaims(1, [meta('/a.txt')])
  ns.claimNew(1, '/b.txt', 'file')
  ns.close()
  fs.appendFileSync(path.join(dir, NAMESPACE_JOURNAL_FILE), '{"op":"new","machineId":1,"pa')
  const reopened = JournaledNamespace.open(dir, log)
  t.same(everything(reopened), ['/a.txt:file:1', '/b.txt:file:1'])
  t.match(lines.at(-1), /1 records skipped/)
  reopened.close()
})

t.test('a change the namespace refuses is not journaled', async (t) => {
  const dir = stateDir(t)
  const ns = JournaledNamespace.open(dir, log)
  ns.replaceClaims(1, [meta('/a.txt')])
  t.throws(() => ns.claimNew(2, '/a.txt', 'file'))
  ns.close()
  const text = fs.readFileSync(path.join(dir, NAMESPACE_JOURNAL_FILE), 'utf8')
  t.notMatch(text, /"op":"new"/)
})
