import fsp from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run, sh } from './helpers/mount'
import { localTempDir, quoted, restartFileServer, succeeded } from './helpers/mountOps'
import { InodeNumbers } from '../src/fuse/inodeNumbers'

/*
 * File metadata through a real mount (issue #12): modes as create, mkdir and chmod ask,
 * owners, symbolic links, folder link counts, inode numbers and files unlinked while open.
 * Every command on the mount runs in a child process (the mount is another process, too).
 */

async function shOut (t: Test, script: string): Promise<string> {
  const result = await sh(script)
  t.equal(result.code, 0, `${script.slice(0, 120)}: ${outcome(result)}`)
  return result.stdout.trim()
}

t.test('create and mkdir keep the mode asked for (after the umask), chmod 0 included, also across a server restart', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const root = cluster.roots[0]
  const mount = await mountCluster(t, cluster)
  const docs = quoted(mount.at('/docs'))

  // umask 077: touch asks for 0666 and gets 0600; umask 0 with an explicit 0 mode: 0.
  t.equal(await shOut(t, `umask 077 && touch ${docs}/private && stat -c %a ${docs}/private`), '600', 'touch under umask 077 makes 0600')
  t.equal(await shOut(t, `umask 0 && node -e "require('fs').closeSync(require('fs').openSync(process.argv[1], 'w', 0))" ${docs}/none && stat -c %a ${docs}/none`),
    '0', 'open(O_CREAT) with mode 0 makes mode 0')
  t.equal(await shOut(t, `umask 022 && mkdir -m 0750 ${docs}/sub && stat -c %a ${docs}/sub`), '750', 'mkdir -m 0750')
  t.equal(await shOut(t, `umask 027 && mkdir ${docs}/masked && stat -c %a ${docs}/masked`), '750', 'mkdir under umask 027 makes 0750')
  t.equal(await shOut(t, `umask 0 && mkdir -m 0 ${docs}/closed && stat -c %a ${docs}/closed`), '0', 'mkdir -m 0 makes mode 0')
  t.equal(await shOut(t, `chmod 0 ${docs}/a.txt && stat -c %a ${docs}/a.txt`), '0', 'chmod 0 shows 0')
  t.equal(await shOut(t, `chmod 4751 ${docs}/sub && stat -c %a ${docs}/sub`), '4751', 'chmod keeps set-id bits of a folder')
  t.equal(await shOut(t, `cat ${docs}/a.txt`), 'alpha', 'the mount still reads a file of mode 0 (it checks no permissions)')

  // The server's own files stay readable and writable for it; their dfs mode is on record.
  t.equal((await fsp.stat(path.join(root, 'docs/a.txt'))).mode & 0o777, 0o600, 'the server keeps owner read and write on its disk')
  t.equal((await fsp.stat(path.join(root, 'docs/closed'))).mode & 0o777, 0o700, 'and owner rwx on a folder')
  succeeded(t, await sh(`echo more >> ${docs}/a.txt && echo x > ${docs}/closed/inside`), 'writing to a mode-0 file and into a mode-0 folder')
  t.equal(await shOut(t, `stat -c %a ${docs}/a.txt`), '0', 'a write keeps the mode')

  // Moved on its server (a hard link), the mode goes along.
  t.equal(await shOut(t, `mv ${docs}/none ${docs}/renamed && stat -c %a ${docs}/renamed`), '0', 'a rename keeps mode 0')
  t.equal(await shOut(t, `mv ${docs}/closed ${docs}/closed2 && stat -c %a ${docs}/closed2`), '0', 'a folder rename keeps mode 0')

  await cluster.fileServers[0].close()
  await restartFileServer(t, cluster, 0)
  t.equal(await shOut(t, `stat -c %a ${docs}/a.txt ${docs}/renamed ${docs}/closed2 ${docs}/private ${docs}/sub`), '0\n0\n0\n600\n4751', 'after a restart of the file server')
  t.equal(await shOut(t, `chmod 644 ${docs}/a.txt && stat -c %a ${docs}/a.txt`), '644', 'chmod back to a mode the disk holds as is')
})

t.test('every file belongs to the mounting user: chown to them is a no-op, to anyone else EPERM', async (t) => {
  const cluster = await startTestCluster(t, [{ 'a.txt': 'alpha\n' }])
  const mount = await mountCluster(t, cluster)
  const file = quoted(mount.at('/a.txt'))
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  t.equal(await shOut(t, `stat -c %u:%g ${file}`), `${uid}:${gid}`, 'owned by the mounting user')
  succeeded(t, await sh(`chown ${uid}:${gid} ${file}`), 'chown to the mounting user')
  const other = await sh(`chown ${uid + 4242} ${file}`)
  t.not(other.code, 0, 'chown to another user fails')
  t.match(other.stderr, /Operation not permitted/, 'with EPERM')
  const group = await sh(`chgrp ${gid + 4242} ${file}`)
  t.match(group.stderr, /Operation not permitted/, 'chgrp to another group: EPERM')
})

t.test('symbolic links: ln -s, readlink, lstat, rename and unlink, stored as links on the file server', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n', 'bin/.keep': '' }])
  const root = cluster.roots[0]
  const mount = await mountCluster(t, cluster)
  const m = quoted(mount.mountpoint)

  succeeded(t, await sh(`ln -s ../docs/a.txt ${m}/bin/rel && ln -s /etc/hostname ${m}/bin/abs && ln -s nowhere ${m}/bin/dangling`), 'ln -s')
  t.equal(await shOut(t, `readlink ${m}/bin/rel ${m}/bin/abs ${m}/bin/dangling`), '../docs/a.txt\n/etc/hostname\nnowhere', 'readlink gives the targets as given')
  t.equal(await shOut(t, `stat -c '%F %s %a' ${m}/bin/rel`), 'symbolic link 13 777', 'lstat: a link, its size is the target\'s length')
  t.equal(await shOut(t, `cat ${m}/bin/rel`), 'alpha', 'a relative link resolves within the mount')
  t.equal(await shOut(t, `find ${m}/bin -type l | sort`), [`${mount.mountpoint}/bin/abs`, `${mount.mountpoint}/bin/dangling`, `${mount.mountpoint}/bin/rel`].join('\n'), 'readdir tells links apart')
  t.equal(await fsp.readlink(path.join(root, 'bin/rel')), '../docs/a.txt', 'the file server holds a real link with the target as given')

  succeeded(t, await sh(`mv ${m}/bin/rel ${m}/docs/again`), 'mv of a link')
  t.equal(await shOut(t, `readlink ${m}/docs/again`), '../docs/a.txt', 'the link moved as a link')
  t.equal(await shOut(t, `cat ${m}/docs/a.txt`), 'alpha', 'its target is untouched')
  succeeded(t, await sh(`ln -sfn a.txt ${m}/docs/again`), 'ln -sfn replaces a link')
  t.equal(await shOut(t, `cat ${m}/docs/again`), 'alpha', 'the new link resolves')
  succeeded(t, await sh(`rm ${m}/docs/again ${m}/bin/dangling`), 'rm of links')
  t.equal(await shOut(t, `ls -A ${m}/docs; cat ${m}/docs/a.txt`), 'a.txt\nalpha', 'rm took the links, not their targets')
  await t.rejects(fsp.lstat(path.join(root, 'docs/again')), { code: 'ENOENT' }, 'the server\'s link is gone')

  // Writing through a link writes its target (the kernel resolves it; the servers never do).
  succeeded(t, await sh(`ln -s a.txt ${m}/docs/via && echo beta >> ${m}/docs/via`), 'append through a link')
  t.equal(await shOut(t, `cat ${m}/docs/a.txt; readlink ${m}/docs/via`), 'alpha\nbeta\na.txt', 'the target grew, the link is still a link')
  t.equal(await shOut(t, `touch -h -d '2001-02-03 04:05:06 UTC' ${m}/docs/via && stat -c %Y ${m}/docs/via`), '981173106', 'touch -h sets the link\'s own time')

  // A second mount sees the links at once.
  const other = await mountCluster(t, cluster)
  t.equal(await shOut(t, `readlink ${quoted(other.at('/docs/via'))}; cat ${quoted(other.at('/docs/via'))}`), 'a.txt\nalpha\nbeta', 'another mount reads the link')
})

t.test('git checkout with links, node_modules/.bin style links and a python venv work on the mount', async (t) => {
  const cluster = await startTestCluster(t, [{ 'work/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const work = quoted(mount.at('/work'))
  const git = 'git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main -c core.symlinks=true'

  succeeded(t, await sh([
    `cd ${work}`, `${git} init -q repo`, 'cd repo', 'mkdir -p lib node_modules/pkg/bin node_modules/.bin',
    'echo "console.log(42)" > node_modules/pkg/bin/cli.js', 'ln -s ../pkg/bin/cli.js node_modules/.bin/pkg',
    'echo one > lib/one.txt', 'ln -s lib/one.txt top-link', 'ln -s lib dir-link',
    `${git} add -A`, `${git} commit -q -m links`
  ].join(' && ')), 'git commit of a tree with links')
  t.equal(await shOut(t, `cd ${work}/repo && node node_modules/.bin/pkg && cat dir-link/one.txt`), '42\none', 'node_modules/.bin style and folder links resolve')
  t.equal(await shOut(t, `cd ${work}/repo && ${git} status --porcelain`), '', 'git status: clean')
  succeeded(t, await sh(`cd ${work} && ${git} clone -q repo clone`), 'git clone onto the mount')
  t.equal(await shOut(t, `cd ${work}/clone && readlink top-link dir-link node_modules/.bin/pkg && ${git} status --porcelain`),
    'lib/one.txt\nlib\n../pkg/bin/cli.js', 'the clone checked out links as links, and is clean')
  succeeded(t, await sh(`cd ${work}/clone && rm top-link && ${git} checkout -q -- top-link && readlink top-link`), 'git checkout brings back a removed link')

  const venv = await sh(`python3 -m venv --without-pip ${work}/venv && ${work}/venv/bin/python -c "import sys; print(sys.prefix)"`)
  t.equal(venv.code, 0, `python3 -m venv: ${outcome(venv)}`)
  t.equal(venv.stdout.trim(), `${mount.mountpoint}/work/venv`, 'the venv\'s python runs through its link')
})

t.test('the file server never follows a link, however the path reaches it', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const mount = await mountCluster(t, cluster)
  const m = quoted(mount.mountpoint)
  succeeded(t, await sh(`ln -s /etc ${m}/etc-link && ln -s docs ${m}/docs-link`), 'links to a folder outside and inside the root')
  // Paths through a link never reach a server from the mount (the kernel resolves them), so
  // ask the file server itself, as any HTTP client could.
  // With a valid write token: what stops these is the link, not the credential.
  const server = cluster.fileServers[0].url
  const auth = ['-H', `Authorization: Bearer ${cluster.credentials.write}`]
  for (const [route, query] of [['stat', 'path=/etc-link/hostname'], ['stat', 'path=/docs-link/a.txt'], ['list', 'path=/etc-link'], ['content', 'path=/etc-link']] as const) {
    const result = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', ...auth, `${server}/${route}?${query}`])
    t.match(result.stdout, /^4(?!01|03)\d\d$/, `GET /${route}?${query} is refused (${result.stdout})`)
  }
  const create = await run('curl', ['-s', '-X', 'POST', ...auth, `${server}/create?path=/etc-link/dfs-escape`])
  t.match(create.stdout, /NOT_FOUND|NOT_DIRECTORY/, `creating below a link is refused: ${create.stdout}`)
  await t.rejects(fsp.stat('/etc/dfs-escape'), { code: 'ENOENT' }, 'nothing was made outside the root')
})

t.test('inode numbers stay with a file through writes, stores, renames and a remount; a folder\'s link count is never too low', async (t) => {
  const cluster = await startTestCluster(t, [{ 'd/a.txt': 'alpha\n', 'd/sub/x.txt': 'x\n', 'd/sub/deeper/y.txt': 'y\n' }])
  const mount = await mountCluster(t, cluster)
  const d = quoted(mount.at('/d'))
  const ino = async (rel: string): Promise<string> => await shOut(t, `stat -c %i ${d}/${rel}`)

  const first = await ino('a.txt')
  // 48 bits of a hash of the path: above 2^32 for this path, so a binding that cuts st_ino to 32 bits shows another number.
  const whole = new InodeNumbers().of('/d/a.txt')
  t.ok(whole > 2 ** 32, `the number of /d/a.txt needs more than 32 bits: ${whole}`)
  t.equal(first, String(whole), 'the mount shows it whole')
  t.not(first, await ino('sub/x.txt'), 'two files have two numbers')
  t.equal(await shOut(t, `ls -i ${d} | grep a.txt | awk '{print $1}'`), first, 'readdir (ls -i) gives the same number as stat')
  const other = await mountCluster(t, cluster)
  t.equal(await shOut(t, `stat -c %i ${quoted(other.at('/d/a.txt'))}`), first, 'another mount gives the path the same number')
  succeeded(t, await sh(`echo more >> ${d}/a.txt`), 'an append')
  t.equal(await ino('a.txt'), first, 'an append keeps the number')
  succeeded(t, await sh(`printf Z | dd of=${d}/a.txt bs=1 seek=1 conv=notrunc status=none`), 'a write in the middle (a store of the whole file)')
  t.equal(await ino('a.txt'), first, 'a store of the whole file keeps the number')
  succeeded(t, await sh(`mv ${d}/a.txt ${d}/b.txt && touch ${d}/a.txt`), 'mv, and a new file at the old name')
  t.equal(await ino('b.txt'), first, 'a renamed file keeps its number')
  t.not(await ino('a.txt'), first, 'a new file at the old name has another')
  const x = await ino('sub/x.txt')
  const y = await ino('sub/deeper/y.txt')
  succeeded(t, await sh(`mv ${d}/sub ${d}/moved`), 'mv of a folder')
  t.equal(await ino('moved/x.txt') + ' ' + await ino('moved/deeper/y.txt'), `${x} ${y}`, 'files below a renamed folder keep their numbers')


  t.equal(await shOut(t, `stat -c %h ${d}/moved ${d}`), '1\n1', 'a folder\'s link count is 1 (unknown), never fewer than its links')
  t.equal(await shOut(t, `find ${d} -name '*.txt' | sort | sed 's|.*/d/||'`), 'a.txt\nb.txt\nmoved/deeper/y.txt\nmoved/x.txt', 'find walks every subfolder')
})

t.test('a file unlinked while open stays readable and writable through its descriptors, and its name is gone for everyone at once', async (t) => {
  const cluster = await startTestCluster(t, [{ 'd/open.txt': 'hello world\n', 'd/keep.txt': 'kept\n' }])
  const root = cluster.roots[0]
  const mount = await mountCluster(t, cluster)
  const other = await mountCluster(t, cluster)
  const file = mount.at('/d/open.txt')
  // One python process holds the descriptors across the unlink and reports each step.
  const script = `
import os, subprocess, sys
path = sys.argv[1]
other = sys.argv[2]
fd = os.open(path, os.O_RDWR)
ap = os.open(path, os.O_WRONLY | os.O_APPEND)
os.pwrite(fd, b'HELLO', 0)
os.unlink(path)
print('listed', sorted(os.listdir(os.path.dirname(path))))
print('other', sorted(os.listdir(other)))
print('read', os.pread(fd, 100, 0))
os.write(ap, b'appended\\n')
os.pwrite(fd, b'W', 6)
print('after', os.pread(fd, 100, 0))
print('size', os.fstat(fd).st_size)
os.ftruncate(fd, 5)
print('cut', os.pread(fd, 100, 0))
os.close(ap)
print('still', os.pread(fd, 100, 0))
os.close(fd)
`
  const result = await run('python3', ['-c', script, file, other.at('/d')])
  t.equal(result.code, 0, outcome(result))
  t.equal(result.stdout, [
    "listed ['keep.txt']",
    "other ['keep.txt']",
    "read b'HELLO world\\n'",
    "after b'HELLO World\\nappended\\n'",
    'size 21',
    "cut b'HELLO'",
    "still b'HELLO'",
    ''
  ].join('\n'), 'reads and writes through both descriptors see one file, after its name went for every mount')
  t.same(await fsp.readdir(path.join(root, 'd')), ['keep.txt'], 'the file server holds no hidden copy')
  t.equal(await shOut(t, `ls -A ${quoted(mount.at('/d'))}`), 'keep.txt', 'nor does this mount list one after the close')
  succeeded(t, await sh(`echo new > ${quoted(file)} && cat ${quoted(file)}`), 'a new file at the same name')

  // A rename over a file open here (an editor's save) takes the old one away the same way.
  const over = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
with open(sys.argv[2], 'w') as f: f.write('replacement\\n')
os.rename(sys.argv[2], sys.argv[1])
print(os.pread(fd, 100, 0), open(sys.argv[1]).read())
os.close(fd)
`
  const replaced = await run('python3', ['-c', over, mount.at('/d/keep.txt'), mount.at('/d/keep.tmp')])
  t.equal(replaced.stdout, "b'kept\\n' replacement\n\n", `the old bytes stay readable through the old descriptor: ${outcome(replaced)}`)
  t.same((await fsp.readdir(path.join(root, 'd'))).sort(), ['keep.txt', 'open.txt'], 'and nothing hidden is left on the server')
})

t.test('tar -c | tar -x into the mount keeps modes, link targets and times', async (t) => {
  const cluster = await startTestCluster(t, [{ 'dst/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const local = await localTempDir(t)
  const src = path.join(local, 'src')
  succeeded(t, await sh([
    `mkdir -p ${quoted(src)}/bin ${quoted(src)}/secret`, `cd ${quoted(src)}`,
    'printf "#!/bin/sh\\necho hi\\n" > bin/run', 'chmod 0755 bin/run', 'echo key > secret/key', 'chmod 0400 secret/key', 'chmod 0700 secret',
    'echo plain > plain.txt', 'chmod 0640 plain.txt', 'ln -s bin/run run-link', 'ln -s /nowhere/at/all dangling', 'ln -s secret secret-link',
    'touch -h -d "2010-01-02 03:04:05 UTC" run-link plain.txt bin/run'
  ].join(' && ')), 'a local tree with modes, links and times')
  const dst = quoted(mount.at('/dst'))
  succeeded(t, await sh(`tar -C ${quoted(src)} -cf - . | tar -C ${dst} -xpf -`), 'tar -c | tar -xp into the mount')
  // %m mode, %y type, %l link target, %T@ mtime (seconds): for every entry, links included.
  const describe = "find . -mindepth 1 ! -name .keep -printf '%P %m %y %l %T@\\n' | sed 's/\\.[0-9]*$//' | sort"
  const here = await shOut(t, `cd ${quoted(src)} && ${describe}`)
  const there = await shOut(t, `cd ${dst} && ${describe}`)
  t.equal(there, here, 'the mount shows the same modes, types, link targets and mtimes')
  t.equal(await shOut(t, `${dst}/run-link`), 'hi', 'the extracted link runs its target')
})

t.test('fallocate makes a file at least that long (zeros), KEEP_SIZE changes nothing, and modes that change bytes are refused', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const root = cluster.roots[0]
  const mount = await mountCluster(t, cluster)
  const file = quoted(mount.at('/docs/image.bin'))
  t.equal(await shOut(t, `fallocate -l 1MiB ${file} && stat -c %s ${file}`), '1048576', 'fallocate -l makes a new file that long')
  t.equal(await shOut(t, `fallocate -n -l 3MiB ${file} && stat -c %s ${file}`), '1048576', 'with KEEP_SIZE (-n) the size stays')
  t.equal(await shOut(t, `fallocate -o 1MiB -l 4KiB ${file} && stat -c %s ${file}`), String(1048576 + 4096), 'a range past the end grows it')
  t.equal(await shOut(t, `fallocate -o 0 -l 4KiB ${file} && stat -c %s ${file}`), String(1048576 + 4096), 'a range within it changes nothing')
  const bytes = await fsp.readFile(path.join(root, 'docs/image.bin'))
  t.ok(bytes.length === 1048576 + 4096 && bytes.every((b) => b === 0), 'the file server holds that many zeros')
  const punch = await sh(`fallocate -p -o 0 -l 4KiB ${file}`)
  t.not(punch.code, 0, `punching a hole fails: ${outcome(punch)}`)
  t.match(punch.stderr, /unsupported|not supported/i, 'as unsupported')
  // glibc's posix_fallocate (python's os.posix_fallocate) on a file with bytes in it.
  t.equal(await shOut(t, `printf hello > ${quoted(mount.at('/docs/p.bin'))} && python3 -c "import os; fd = os.open('${mount.at('/docs/p.bin')}', os.O_RDWR); os.posix_fallocate(fd, 0, 10000); os.close(fd)" && stat -c %s ${quoted(mount.at('/docs/p.bin'))}`), '10000', 'posix_fallocate grows a file')
  t.equal((await fsp.readFile(path.join(root, 'docs/p.bin'))).subarray(0, 6).toString('latin1'), 'hello\0', 'keeping its bytes, zeros after them')
})
