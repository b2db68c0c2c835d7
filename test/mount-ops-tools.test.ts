import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run, sh } from './helpers/mount'
import { localTempDir, quoted, succeeded } from './helpers/mountOps'
import { cleanEnv } from './helpers/processes'
import { waitFor } from './helpers/waitFor'

/*
 * Everyday tools on a mount, each run as a real child process: what they leave behind is
 * checked through the mount, on another mount, and on the file servers' disks.
 */

t.test('cp in and out keeps every byte; cp over a file replaces it, and another mount sees the new bytes', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const root = cluster.roots[0]
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const local = await localTempDir(t)
  const original = path.join(local, 'original.bin')
  const back = path.join(local, 'back.bin')
  fs.writeFileSync(original, crypto.randomBytes(3 * 1024 * 1024 + 12345))

  succeeded(t, await run('cp', [original, a.at('/docs/copy.bin')]), 'cp into the mount')
  succeeded(t, await run('cmp', [original, a.at('/docs/copy.bin')]), 'cmp local vs mount')
  t.ok(fs.readFileSync(path.join(root, 'docs/copy.bin')).equals(fs.readFileSync(original)), 'the server has the same bytes')
  succeeded(t, await run('cp', [b.at('/docs/copy.bin'), back]), 'cp out of the other mount')
  succeeded(t, await run('cmp', [original, back]), 'cmp local vs copied back')

  // Over an existing file another mount has cached: a shorter file, so a stale tail would show.
  t.equal((await run('cat', [b.at('/docs/a.txt')])).stdout, 'alpha\n', 'mount B caches the old a.txt')
  const replacement = path.join(local, 'replacement.txt')
  fs.writeFileSync(replacement, 'new\n')
  succeeded(t, await run('cp', [replacement, a.at('/docs/a.txt')]), 'cp over a.txt')
  t.equal(fs.readFileSync(path.join(root, 'docs/a.txt'), 'utf8'), 'new\n', 'the server has the new bytes only')
  t.equal((await run('cat', [b.at('/docs/a.txt')])).stdout, 'new\n', 'mount B sees them at its next open')
  succeeded(t, await run('cp', [original, a.at('/docs/a.txt')]), 'cp a bigger file over it')
  succeeded(t, await run('cmp', [original, b.at('/docs/a.txt')]), 'mount B sees the bigger file whole')
})

t.test('an editor-style save (temp file, then mv -f over the original) and sed -i: another mount sees the new content, no temp file is left', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/notes.txt': 'one\ntwo\nthree\n' }])
  const root = cluster.roots[0]
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const notes = a.at('/docs/notes.txt')
  t.equal((await run('cat', [b.at('/docs/notes.txt')])).stdout, 'one\ntwo\nthree\n', 'mount B has the file cached')

  const temp = a.at('/docs/.notes.txt.swp')
  succeeded(t, await sh(`printf 'one\\n2\\nthree\\nfour\\n' > ${quoted(temp)} && mv -f ${quoted(temp)} ${quoted(notes)}`), 'save through a temp file')
  t.equal(fs.readFileSync(path.join(root, 'docs/notes.txt'), 'utf8'), 'one\n2\nthree\nfour\n', 'the server has the saved content')
  t.same(fs.readdirSync(path.join(root, 'docs')), ['notes.txt'], 'no temp file left on the server')
  t.equal((await run('cat', [b.at('/docs/notes.txt')])).stdout, 'one\n2\nthree\nfour\n', 'mount B sees the saved file')
  t.equal((await run('ls', ['-A', b.at('/docs')])).stdout, 'notes.txt\n', 'and lists no temp file')

  succeeded(t, await run('sed', ['-i', 's/^2$/two/; /four/d', notes]), 'sed -i')
  t.equal(fs.readFileSync(path.join(root, 'docs/notes.txt'), 'utf8'), 'one\ntwo\nthree\n', 'sed\'s edit is on the server')
  t.same(fs.readdirSync(path.join(root, 'docs')), ['notes.txt'], 'sed left no temp file')
  t.equal((await run('cat', [b.at('/docs/notes.txt')])).stdout, 'one\ntwo\nthree\n', 'mount B sees the edit')
  succeeded(t, await run('sed', ['-i', 's/one/ONE/', b.at('/docs/notes.txt')]), 'sed -i on mount B')
  t.equal((await run('cat', [notes])).stdout, 'ONE\ntwo\nthree\n', 'mount A sees B\'s edit')
})

t.test('git init, add, commit, log, status and fsck inside the mount', async (t) => {
  const git = await run('git', ['--version'])
  if (git.code !== 0) throw new Error(`git is not installed (or does not run) on this machine, so this test cannot run: ${outcome(git)}`)
  const cluster = await startTestCluster(t, [{ 'work/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const repo = mount.at('/work/repo')
  const env = { ...cleanEnv(), HOME: await localTempDir(t), GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0' }
  const identity = ['-c', 'user.name=Mount Test', '-c', 'user.email=mount@example.com', '-c', 'init.defaultBranch=main']
  const gitIn = async (...args: string[]): ReturnType<typeof run> => await run('git', [...identity, '-C', repo, ...args], { env, timeoutMs: 60_000 })

  succeeded(t, await run('mkdir', [repo]), 'mkdir repo')
  succeeded(t, await gitIn('init', '-q'), 'git init')
  succeeded(t, await sh(`cd ${quoted(repo)} && mkdir -p src && printf 'hello\\n' > README && seq 1 2000 > src/numbers.txt`), 'write files')
  succeeded(t, await gitIn('add', '.'), 'git add')
  succeeded(t, await gitIn('commit', '-q', '-m', 'first commit'), 'git commit')
  succeeded(t, await sh(`cd ${quoted(repo)} && printf 'hello again\\n' >> README && git rm -q src/numbers.txt`, { env }), 'change a file, git rm another')
  succeeded(t, await gitIn('commit', '-q', '-a', '-m', 'second commit'), 'git commit -a')

  const log = await gitIn('log', '--format=%s')
  succeeded(t, log, 'git log')
  t.equal(log.stdout, 'second commit\nfirst commit\n', 'git log shows both commits')
  const status = await gitIn('status', '--porcelain')
  succeeded(t, status, 'git status')
  t.equal(status.stdout, '', 'the work tree is clean')
  const fsck = await gitIn('fsck', '--full', '--strict')
  succeeded(t, fsck, 'git fsck')
  t.notMatch(fsck.stdout + fsck.stderr, /error|missing|corrupt|broken/i, 'git fsck reports nothing wrong')
  const show = await gitIn('show', 'HEAD~1:src/numbers.txt')
  t.equal(show.stdout.split('\n').length, 2001, 'an old version reads back from the object store')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'work/repo/README'), 'utf8'), 'hello\nhello again\n', 'the work tree is on the server')
})

t.test('tar -x of a tree: diff -r finds no difference, and modes and mtimes are kept', async (t) => {
  const cluster = await startTestCluster(t, [{ 'unpack/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const local = await localTempDir(t)
  const source = path.join(local, 'tree')
  const files: Record<string, Buffer> = {
    'README.md': Buffer.from('# a small tree\n'),
    'empty.txt': Buffer.alloc(0),
    'src/main.c': Buffer.from('int main(void) { return 0; }\n'),
    'src/lib/util.c': crypto.randomBytes(70_000),
    'data/blob.bin': crypto.randomBytes(1024 * 1024 + 3),
    'data/deeper/still/leaf.txt': Buffer.from('leaf\n'),
    'name with spaces.txt': Buffer.from('spaces\n')
  }
  for (const [file, content] of Object.entries(files)) {
    fs.mkdirSync(path.join(source, path.dirname(file)), { recursive: true })
    fs.writeFileSync(path.join(source, file), content)
  }
  fs.mkdirSync(path.join(source, 'empty-folder'))
  fs.chmodSync(path.join(source, 'src/main.c'), 0o755)
  fs.utimesSync(path.join(source, 'README.md'), new Date('2010-05-06T07:08:09Z'), new Date('2010-05-06T07:08:09Z'))
  const archive = path.join(local, 'tree.tar')
  succeeded(t, await run('tar', ['-cf', archive, '-C', source, '.']), 'tar -c locally')

  const dest = mount.at('/unpack/tree')
  succeeded(t, await run('mkdir', [dest]), 'mkdir on the mount')
  succeeded(t, await run('tar', ['-xf', archive, '-C', dest], { timeoutMs: 60_000 }), 'tar -x into the mount')
  const diff = await run('diff', ['-r', source, dest], { timeoutMs: 30_000 })
  t.equal(diff.code, 0, `diff -r finds no difference: ${outcome(diff)}`)
  const onServer = path.join(cluster.roots[0], 'unpack/tree')
  t.equal((await run('diff', ['-r', source, onServer])).code, 0, 'nor on the server\'s disk')
  t.ok(fs.statSync(path.join(onServer, 'empty-folder')).isDirectory(), 'the empty folder was made')

  const stats = await run('stat', ['-c', '%a %Y', path.join(dest, 'src/main.c'), path.join(dest, 'README.md')])
  succeeded(t, stats, 'stat on the mount')
  const [mainC, readme] = stats.stdout.trim().split('\n')
  t.equal(mainC.split(' ')[0], '755', 'the executable bit came through')
  // tar sets the mtime alone (atime UTIME_OMIT): the patched binding passes that on.
  t.equal(readme.split(' ')[1], String(Date.parse('2010-05-06T07:08:09Z') / 1000), 'the archived mtime was set')
})

/** Each entry below `root`: its path, type, mode, size (files), mtime to the millisecond and link target, as find prints them. */
async function treeListing (t: Test, root: string): Promise<string[]> {
  const listed = await run('find', ['.', '-mindepth', '1', '-printf', '%p %y %m %T@ %l\\n'], { cwd: root, timeoutMs: 30_000 })
  succeeded(t, listed, `find in ${root}`)
  // %T@ has nanoseconds: dfs keeps milliseconds. A folder's size differs by file system.
  return listed.stdout.split('\n').filter((line) => line !== '').map((line) => line.replace(/(\.\d{3})\d* /, '$1 ')).sort()
}

t.test('rsync -a into the mount twice: the second run sends nothing, and times, modes and link targets match the source', async (t) => {
  const cluster = await startTestCluster(t, [{ 'sync/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const source = path.join(await localTempDir(t), 'tree')
  fs.mkdirSync(path.join(source, 'src/lib'), { recursive: true })
  fs.writeFileSync(path.join(source, 'src/main.c'), 'int main(void) { return 0; }\n')
  fs.writeFileSync(path.join(source, 'src/lib/blob.bin'), crypto.randomBytes(300_000))
  fs.writeFileSync(path.join(source, 'secret.txt'), 'only mine\n', { mode: 0o600 })
  fs.chmodSync(path.join(source, 'src/main.c'), 0o755)
  fs.symlinkSync('src/main.c', path.join(source, 'main-link'))
  fs.symlinkSync('../nowhere', path.join(source, 'src/dangling'))
  // Every entry an old time of its own, folders last: rsync compares mtimes to the second, so
  // one made in the same second as its copy would not be set and would prove nothing.
  const entries = ['src/main.c', 'src/lib/blob.bin', 'secret.txt', 'main-link', 'src/dangling', 'src/lib', 'src']
  entries.forEach((entry, i) => {
    const when = new Date(Date.UTC(2011, 1, 3, 4, 5, i, 100 + i))
    fs.lutimesSync(path.join(source, entry), when, when)
  })

  const dest = mount.at('/sync/tree')
  succeeded(t, await run('rsync', ['-a', source + '/', dest + '/'], { timeoutMs: 60_000 }), 'the first rsync -a')
  const second = await run('rsync', ['-a', '--itemize-changes', source + '/', dest + '/'], { timeoutMs: 60_000 })
  succeeded(t, second, 'the second rsync -a')
  // Without kept times rsync would send every file again, and itemize each.
  t.equal(second.stdout.trim(), '', 'the second run changed nothing')
  t.same(await treeListing(t, dest), await treeListing(t, source), 'every entry has the source\'s type, mode, mtime and link target')
  t.equal((await run('diff', ['-r', '--no-dereference', source, dest])).code, 0, 'and the same bytes')
})

t.test('mknod: a fifo is refused with "Operation not permitted"; a regular file is made empty', async (t) => {
  const cluster = await startTestCluster(t, [{ 'nodes/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const fifo = await run('mkfifo', [mount.at('/nodes/pipe')])
  t.not(fifo.code, 0, 'mkfifo fails')
  t.match(fifo.stderr, /Operation not permitted/, `with EPERM: ${outcome(fifo)}`)
  // mknod(2) of S_IFREG: libfuse makes it a create.
  const regular = await run('python3', ['-c', 'import os, stat, sys; os.mknod(sys.argv[1], 0o640 | stat.S_IFREG)', mount.at('/nodes/plain')])
  succeeded(t, regular, 'mknod of a regular file')
  const stat = await run('stat', ['-c', '%F %a %s', mount.at('/nodes/plain')])
  t.equal(stat.stdout.trim(), 'regular empty file 640 0', 'an empty file with the mode asked for')
  t.ok(fs.statSync(path.join(cluster.roots[0], 'nodes/plain')).isFile(), 'stored on the server')
  const again = await run('python3', ['-c', 'import os, stat, sys; os.mknod(sys.argv[1], 0o640 | stat.S_IFREG)', mount.at('/nodes/plain')])
  t.match(again.stderr, /File exists/, 'a second mknod of the name: EEXIST')
})

t.test('mkdir, rm and rmdir; a folder that is not empty is refused with "Directory not empty"', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const root = cluster.roots[0]
  const mount = await mountCluster(t, cluster)
  const folder = mount.at('/docs/new')

  succeeded(t, await run('mkdir', ['-p', path.join(folder, 'inner')]), 'mkdir -p')
  t.ok(fs.statSync(path.join(root, 'docs/new/inner')).isDirectory(), 'the folders are on the server')
  succeeded(t, await sh(`echo x > ${quoted(path.join(folder, 'inner/f.txt'))}`), 'a file in it')
  const mkdirAgain = await run('mkdir', [folder])
  t.not(mkdirAgain.code, 0, 'mkdir of an existing folder fails')
  t.match(mkdirAgain.stderr, /File exists/, mkdirAgain.stderr.trim())

  const notEmpty = await run('rmdir', [folder])
  t.not(notEmpty.code, 0, 'rmdir of a folder with a folder in it fails')
  t.match(notEmpty.stderr, /Directory not empty/, notEmpty.stderr.trim())
  const notEmptyInner = await run('rmdir', [path.join(folder, 'inner')])
  t.match(notEmptyInner.stderr, /Directory not empty/, `a folder with a file in it: ${notEmptyInner.stderr.trim()}`)
  t.ok(fs.existsSync(path.join(root, 'docs/new/inner/f.txt')), 'nothing was removed')
  const rmdirFile = await run('rmdir', [mount.at('/docs/a.txt')])
  t.match(rmdirFile.stderr, /Not a directory/, `rmdir of a file: ${rmdirFile.stderr.trim()}`)
  const rmFolder = await run('rm', [folder])
  t.match(rmFolder.stderr, /Is a directory/, `rm of a folder: ${rmFolder.stderr.trim()}`)

  succeeded(t, await run('rm', [path.join(folder, 'inner/f.txt')]), 'rm the file')
  t.notOk(fs.existsSync(path.join(root, 'docs/new/inner/f.txt')), 'gone from the server')
  const missing = await run('cat', [path.join(folder, 'inner/f.txt')])
  t.match(missing.stderr, /No such file or directory/, 'and from the mount')
  succeeded(t, await run('rmdir', [path.join(folder, 'inner'), folder]), 'rmdir once empty')
  t.notOk(fs.existsSync(path.join(root, 'docs/new')), 'the folder is gone from the server')
  t.equal((await run('ls', [mount.at('/docs')])).stdout, 'a.txt\n', 'ls shows only what is left')

  succeeded(t, await run('mkdir', ['-p', mount.at('/docs/tree/x/y')]), 'a tree')
  succeeded(t, await sh(`for i in 1 2 3; do echo $i > ${quoted(mount.at('/docs/tree/x/y'))}/$i.txt; done`), 'files in it')
  succeeded(t, await run('rm', ['-r', mount.at('/docs/tree')]), 'rm -r')
  t.notOk(fs.existsSync(path.join(root, 'docs/tree')), 'rm -r removed the tree from the server')
})

t.test('truncate -s cuts and extends; touch -d sets the mtime ls -l shows; chmod sets the mode; df shows the cluster\'s size', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha beta gamma\n' }, { 'logs/b.log': 'b\n' }])
  const onDisk = path.join(cluster.roots[0], 'docs/a.txt')
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const file = a.at('/docs/a.txt')

  succeeded(t, await run('truncate', ['-s', '5', file]), 'truncate -s 5')
  t.equal(fs.readFileSync(onDisk, 'utf8'), 'alpha', 'cut on the server')
  t.equal((await run('cat', [b.at('/docs/a.txt')])).stdout, 'alpha', 'mount B sees it cut')
  succeeded(t, await run('truncate', ['-s', '+3', file]), 'truncate -s +3')
  t.ok(fs.readFileSync(onDisk).equals(Buffer.from('alpha\0\0\0')), 'extended with zeros')
  t.ok((await run('cat', [b.at('/docs/a.txt')])).stdout === 'alpha\0\0\0', 'mount B reads the extended file at its next open')
  // A stat is no open: another mount may answer it from attributes up to a second old.
  await waitFor('mount B to show the new size', async () => (await run('stat', ['-c', '%s', b.at('/docs/a.txt')])).stdout.trim() === '8', 5000, 100)
  t.pass('stat on mount B shows the new size')

  succeeded(t, await run('touch', ['-d', '2001-02-03 04:05:06 UTC', file]), 'touch -d')
  const expected = Date.parse('2001-02-03T04:05:06Z') / 1000
  t.equal(Math.floor(fs.statSync(onDisk).mtimeMs / 1000), expected, 'the server\'s file has that mtime')
  const listedOnA = await run('ls', ['-l', '--time-style=+%Y', file])
  t.match(listedOnA.stdout, / 2001 /, `ls -l on mount A shows the year: ${listedOnA.stdout.trim()}`)
  t.equal((await run('stat', ['-c', '%Y', file])).stdout.trim(), String(expected), 'stat shows the exact second')
  const listedOnB = await waitFor('ls -l on mount B to show 2001', async () => {
    const listed = await run('ls', ['-l', '--time-style=+%Y', b.at('/docs/a.txt')])
    return / 2001 /.test(listed.stdout) && listed.stdout
  }, 5000, 100)
  t.pass(`and so does mount B, within its attribute time: ${listedOnB.trim()}`)
  succeeded(t, await run('touch', [a.at('/docs/new.txt')]), 'touch makes a new file')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'docs/new.txt'), 'utf8'), '', 'an empty file on the server')
  succeeded(t, await run('touch', ['-d', '1999-12-31 23:59:59 UTC', a.at('/docs')]), 'touch -d on a folder')
  t.ok(fs.statSync(path.join(cluster.roots[0], 'docs')).mtime.getUTCFullYear() === 1999, 'the server\'s folder has that mtime')
  const folder = await run('ls', ['-ld', '--time-style=+%Y', a.at('/docs')])
  t.match(folder.stdout, / 1999 /, `ls -ld shows it: ${folder.stdout.trim()}`)

  succeeded(t, await run('chmod', ['640', file]), 'chmod 640')
  t.equal(fs.statSync(onDisk).mode & 0o777, 0o640, 'the server\'s file has mode 640')
  t.equal((await run('stat', ['-c', '%a', file])).stdout.trim(), '640', 'stat on the mount shows it')
  succeeded(t, await run('chmod', ['u+x', file]), 'chmod u+x')
  t.equal((await run('stat', ['-c', '%A', file])).stdout.trim(), '-rwxr-----', 'ls-style mode after u+x')
  succeeded(t, await sh(`[ -x ${quoted(file)} ]`), 'test -x sees the executable bit')

  const df = await run('df', ['-B1', '--output=size,avail', a.mountpoint])
  succeeded(t, df, 'df')
  const [size, avail] = df.stdout.trim().split('\n')[1].trim().split(/\s+/).map(Number)
  t.ok(size > 0, `df shows a size (${size} bytes)`)
  t.ok(avail > 0 && avail <= size, `and space available (${avail} bytes)`)
  const local = await run('df', ['-B1', '--output=size', cluster.roots[0]])
  const rootDisk = Number(local.stdout.trim().split('\n')[1])
  t.ok(Math.abs(size - 2 * rootDisk) <= 2 * 1024 * 1024, `the size is the sum over both file servers (${size} vs 2 x ${rootDisk})`)
})
