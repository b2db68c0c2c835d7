import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { mountCluster, outcome, run, sh } from './helpers/mount'
import type { TestMount } from './helpers/mount'
import type { Finished } from './helpers/processes'
import { quoted } from './helpers/mountOps'
import { startProcessCluster } from './helpers/processCluster'
import { waitFor } from './helpers/waitFor'

/*
 * A file created through a mount exists on that mount at once and on its server once it is
 * closed: the create rides in the close (one PUT /create with the bytes), and the close
 * returns only once the file is on the server's disk and in the directory.
 */

/** Long enough that only a hang hits it. */
const DONE_MS = 60_000

/**
 * A program that creates FILE (O_CREAT, and O_EXCL or O_APPEND if asked) and holds it open,
 * printing what a listing of its folder and a stat of it show on the same mount; once GO
 * appears it writes LINE (unless asked to write nothing) and closes, and prints `closed` if
 * the close succeeded. Not a shell: a shell's
 * redirection closes the file once before it writes (dup2), which sends the create at once.
 */
const HOLDER = `
const fs = require('node:fs')
const path = require('node:path')
const [file, go, line, how] = process.argv.slice(1)
const { O_WRONLY, O_CREAT, O_EXCL, O_APPEND } = fs.constants
const fd = fs.openSync(file, O_WRONLY | O_CREAT | (how === 'excl' ? O_EXCL : 0) | (how === 'append' ? O_APPEND : 0))
console.log(fs.readdirSync(path.dirname(file)).join(' '))
const stat = fs.statSync(file)
console.log('mode=' + (stat.mode & 0o777).toString(8) + ' size=' + stat.size)
fs.writeFileSync(go + '.ready', '')
const pause = new Int32Array(new SharedArrayBuffer(4))
while (!fs.existsSync(go)) Atomics.wait(pause, 0, 0, 20)
if (how !== 'empty') fs.writeSync(fd, line + '\\n')
fs.closeSync(fd)
console.log('closed')
`

async function createAndHold (t: Test, file: string, line: string, how: '' | 'excl' | 'append' | 'empty' = ''): Promise<{ release: () => void, done: Promise<Finished> }> {
  const go = path.join(t.testdir(), `go-${path.basename(file)}`)
  const done = run(process.execPath, ['-e', HOLDER, file, go, line, how], { timeoutMs: DONE_MS })
  await waitFor(`the create of ${file}`, async () => fs.existsSync(go + '.ready') || undefined, DONE_MS)
  return { release: () => fs.writeFileSync(go, ''), done }
}

async function twoMounts (t: Test): Promise<{ cluster: TestCluster, a: TestMount, b: TestMount }> {
  const cluster = await startTestCluster(t, [{ 'made/.keep': '' }])
  return { cluster, a: await mountCluster(t, cluster), b: await mountCluster(t, cluster) }
}

t.test('a file being created is on its mount at once (ls, stat, mode), and on the servers and other mounts once closed', async (t) => {
  const { cluster, a, b } = await twoMounts(t)
  const holding = await createAndHold(t, a.at('/made/new.txt'), 'hello')
  t.notOk(fs.existsSync(path.join(cluster.roots[0], 'made', 'new.txt')), 'not on the server before its close: the create rides in it')
  const elsewhere = await sh(`ls ${quoted(b.at('/made'))}`)
  t.notMatch(elsewhere.stdout, /new\.txt/, 'nor on another mount')
  holding.release()
  const held = await holding.done
  t.equal(held.code, 0, outcome(held))
  t.match(held.stdout, /new\.txt/, 'ls on the creating mount lists it at once')
  t.match(held.stdout, /mode=644 size=0/, 'stat shows it with the mode the umask gave')
  t.match(held.stdout, /closed/)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'made', 'new.txt'), 'utf8'), 'hello\n', 'on the server\'s disk once closed')
  const seen = await sh(`ls ${quoted(b.at('/made'))} && cat ${quoted(b.at('/made/new.txt'))}`)
  t.equal(seen.code, 0, outcome(seen))
  t.match(seen.stdout, /new\.txt\nhello\n/, 'and another mount lists and reads it after the close (close-to-open)')
})

t.test('a name another mount takes between the create and its close (no O_EXCL): both keep their bytes', async (t) => {
  const { cluster, a, b } = await twoMounts(t)
  const holding = await createAndHold(t, a.at('/made/both.txt'), 'from-a')
  const other = await sh(`echo from-b > ${quoted(b.at('/made/both.txt'))}`)
  t.equal(other.code, 0, outcome(other))
  holding.release()
  const held = await holding.done
  t.equal(held.code, 0, `the close succeeds: its bytes are on disk, beside the file: ${outcome(held)}`)
  const folder = path.join(cluster.roots[0], 'made')
  t.equal(fs.readFileSync(path.join(folder, 'both.txt'), 'utf8'), 'from-b\n', 'the mount that closed first keeps the name')
  const copies = fs.readdirSync(folder).filter((name) => name.startsWith('both.txt.conflict-'))
  t.equal(copies.length, 1, `one conflict copy: ${fs.readdirSync(folder).join(', ')}`)
  t.equal(fs.readFileSync(path.join(folder, copies[0]), 'utf8'), 'from-a\n', 'with the other mount\'s bytes')
  t.match(a.output(), /another client made the file meanwhile/, 'and the mount says so in its log')

  // With O_EXCL the one that closes second is told, and nothing of it is kept.
  const exclusive = await createAndHold(t, a.at('/made/excl.txt'), 'from-a', 'excl')
  const winner = await sh(`set -C; echo from-b > ${quoted(b.at('/made/excl.txt'))}`)
  t.equal(winner.code, 0, outcome(winner))
  exclusive.release()
  const lost = await exclusive.done
  t.not(lost.code, 0, 'the exclusive create that closes second fails')
  t.match(lost.stderr, /EEXIST/, `with EEXIST from its close: ${outcome(lost)}`)
  t.notMatch(lost.stdout, /closed/)
  t.equal(fs.readFileSync(path.join(folder, 'excl.txt'), 'utf8'), 'from-b\n', 'the winner keeps the name')
  t.same(fs.readdirSync(folder).filter((name) => name.startsWith('excl.txt.')), [], 'and no copy of the loser\'s bytes')
})

t.test('a name another mount takes first, when this create only appended or wrote nothing: one file, as on a local disk', async (t) => {
  const { cluster, a, b } = await twoMounts(t)
  const folder = path.join(cluster.roots[0], 'made')
  // Two machines start logging to one new log with >> at once: the lines go into one file.
  const appending = await createAndHold(t, a.at('/made/log.txt'), 'from-a', 'append')
  const other = await sh(`echo from-b >> ${quoted(b.at('/made/log.txt'))}`)
  t.equal(other.code, 0, outcome(other))
  appending.release()
  const appended = await appending.done
  t.equal(appended.code, 0, outcome(appended))
  t.equal(fs.readFileSync(path.join(folder, 'log.txt'), 'utf8'), 'from-b\nfrom-a\n', 'the later close\'s line is appended to the file the other made')
  t.match(a.output(), /were appended to it/, 'and the mount says so in its log')
  // A program that only opens the name with O_CREAT (a lock file, touch) finds the other's file.
  const empty = await createAndHold(t, a.at('/made/guard'), '', 'empty')
  const guard = await sh(`echo guard > ${quoted(b.at('/made/guard'))}`)
  t.equal(guard.code, 0, outcome(guard))
  empty.release()
  const opened = await empty.done
  t.equal(opened.code, 0, outcome(opened))
  t.equal(fs.readFileSync(path.join(folder, 'guard'), 'utf8'), 'guard\n', 'the file keeps the other mount\'s bytes')
  const seen = await sh(`cat ${quoted(a.at('/made/guard'))} ${quoted(a.at('/made/log.txt'))}`)
  t.equal(seen.stdout, 'guard\nfrom-b\nfrom-a\n', `and mount A reads both files as stored (${outcome(seen)})`)
  t.same(fs.readdirSync(folder).filter((name) => name.includes('.conflict-')), [], 'no conflict copy')
})

t.test('a folder another mount removes while a file is being created in it is made again at the close: the bytes are kept', async (t) => {
  const { cluster, a, b } = await twoMounts(t)
  const made = await sh(`mkdir -p ${quoted(a.at('/made/deep/er'))}`)
  t.equal(made.code, 0, outcome(made))
  const holding = await createAndHold(t, a.at('/made/deep/er/kept.txt'), 'precious')
  // The name lives only on mount A until its close: to B (and the servers) the folders are empty.
  const removed = await sh(`rmdir ${quoted(b.at('/made/deep/er'))} ${quoted(b.at('/made/deep'))}`)
  t.equal(removed.code, 0, `rmdir on mount B succeeds: ${outcome(removed)}`)
  holding.release()
  const held = await holding.done
  t.equal(held.code, 0, `the close succeeds: ${outcome(held)}`)
  t.match(held.stdout, /closed/)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'made', 'deep', 'er', 'kept.txt'), 'utf8'), 'precious\n', 'the file is on the server, in its folders made again')
  const seen = await sh(`cat ${quoted(b.at('/made/deep/er/kept.txt'))}`)
  t.equal(seen.stdout, 'precious\n', `and mount B reads it: ${outcome(seen)}`)
  t.match(a.output(), /its folder was removed by another client while the file was written here; the folder is made again/, 'mount A says so in its log')
})

t.test('mkdir -p and many creates: tar -x and cp -r of a tree arrive whole, with modes and times', async (t) => {
  const cluster = await startTestCluster(t, [{ 'in/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const tree: Record<string, Record<string, Record<string, string>>> = {}
  for (let d = 0; d < 4; d++) {
    tree[`d${d}`] = {}
    for (let e = 0; e < 3; e++) {
      const files: Record<string, string> = {}
      for (let f = 0; f < 10; f++) files[`f${f}.txt`] = `${d}/${e}/${f} `.repeat(f * 50 + 1)
      tree[`d${d}`][`e${e}`] = files
    }
  }
  const source = t.testdir({ src: tree })
  const src = path.join(source, 'src')
  fs.chmodSync(path.join(src, 'd1', 'e1', 'f1.txt'), 0o755)
  fs.utimesSync(path.join(src, 'd2', 'e0', 'f3.txt'), new Date('2020-02-02T02:02:02Z'), new Date('2020-02-02T02:02:02Z'))
  const archive = path.join(source, 'tree.tar')
  t.equal((await sh(`tar -C ${quoted(src)} -cf ${quoted(archive)} .`)).code, 0)

  const untar = await sh(`mkdir -p ${quoted(mount.at('/in/a/b/untarred'))} && tar -C ${quoted(mount.at('/in/a/b/untarred'))} -xf ${quoted(archive)}`, { timeoutMs: DONE_MS })
  t.equal(untar.code, 0, outcome(untar))
  const copy = await sh(`cp -rp ${quoted(src)} ${quoted(mount.at('/in/copied'))}`, { timeoutMs: DONE_MS })
  t.equal(copy.code, 0, outcome(copy))
  for (const [where, what] of [['in/a/b/untarred', 'tar -x'], ['in/copied', 'cp -rp']]) {
    const onServer = path.join(cluster.roots[0], where)
    const same = await sh(`diff -r ${quoted(src)} ${quoted(onServer)}`)
    t.equal(same.code, 0, `${what}: the server's disk holds the tree: ${outcome(same)}`)
    const throughMount = await sh(`diff -r ${quoted(src)} ${quoted(mount.at('/' + where))}`)
    t.equal(throughMount.code, 0, `${what}: and the mount shows it: ${outcome(throughMount)}`)
    const modes = await sh(`stat -c '%a %Y' ${quoted(mount.at(`/${where}/d1/e1/f1.txt`))} ${quoted(mount.at(`/${where}/d2/e0/f3.txt`))}`)
    t.match(modes.stdout, /^755 \d+\n644 1580608922\n$/, `${what}: modes and times kept: ${outcome(modes)}`)
  }
})

t.test('a create whose file server is killed before the close waits for it, and the file lands whole', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'made/.keep': '' }] })
  const mount = await c.mount()
  const holding = await createAndHold(t, mount.at('/made/crash.txt'), 'survives')
  await c.files[0].kill()
  holding.release()
  // The close waits for the server (a hard mount): it returns only once the file is stored.
  await c.files[0].restart()
  await c.files[0].waitHealthy()
  const held = await holding.done
  t.equal(held.code, 0, outcome(held))
  t.match(held.stdout, /closed/)
  t.equal(fs.readFileSync(path.join(c.files[0].root as string, 'made', 'crash.txt'), 'utf8'), 'survives\n', 'the file is on the server\'s disk, once')
  const client = c.client()
  t.teardown(() => client.close())
  t.equal((await client.readFile('/made/crash.txt')).toString(), 'survives\n', 'and in the namespace')
})
