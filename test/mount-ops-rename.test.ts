import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'
import { localTempDir, quoted, readUntilCallbackGranted, succeeded } from './helpers/mountOps'
import { statsOf } from './helpers/wire'
import { FileWorker } from './helpers/fileWorkerClient'
import type { WorkerError } from './helpers/fileWorkerClient'
import { waitFor } from './helpers/waitFor'
import { cutConnections } from './helpers/connections'

/*
 * mv on a mount of two file servers: server 1 holds /docs, server 2 holds /logs, so a move
 * from one folder to the other moves the bytes between the servers' disks.
 */

const trees: Array<Record<string, string>> = [
  { 'docs/a.txt': 'alpha\n', 'docs/deep/n.txt': 'nested\n', 'docs/deep/more/m.txt': 'more\n' },
  { 'logs/b.log': 'beta\n' }
]

t.test('mv of a file to a folder on the other file server moves its bytes there; another mount follows', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [root1, root2] = cluster.roots
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const local = await localTempDir(t)
  const big = path.join(local, 'big.bin')
  fs.writeFileSync(big, crypto.randomBytes(5 * 1024 * 1024 + 7))
  succeeded(t, await run('cp', [big, a.at('/docs/big.bin')]), 'cp a 5 MiB file onto server 1')
  t.equal((await run('cat', [b.at('/docs/a.txt')])).stdout, 'alpha\n', 'mount B has a.txt cached under its old name')
  const incomingBefore = (await statsOf(cluster.fileServers[1])).incoming

  succeeded(t, await run('mv', [a.at('/docs/a.txt'), a.at('/logs/a.txt')]), 'mv docs/a.txt logs/a.txt')
  t.notOk(fs.existsSync(path.join(root1, 'docs/a.txt')), 'gone from server 1\'s disk')
  t.equal(fs.readFileSync(path.join(root2, 'logs/a.txt'), 'utf8'), 'alpha\n', 'on server 2\'s disk, same bytes')
  t.equal((await run('cat', [a.at('/logs/a.txt')])).stdout, 'alpha\n', 'mount A reads it at the new path')
  t.equal((await run('cat', [b.at('/logs/a.txt')])).stdout, 'alpha\n', 'so does mount B')
  const oldOnB = await run('cat', [b.at('/docs/a.txt')])
  t.match(oldOnB.stderr, /No such file or directory/, `the old path is gone on mount B too: ${oldOnB.stderr.trim()}`)
  t.equal((await run('ls', [b.at('/docs')])).stdout, 'big.bin\ndeep\n', 'and mount B no longer lists it')

  succeeded(t, await run('mv', [a.at('/docs/big.bin'), a.at('/logs/')]), 'mv a 5 MiB file into logs/')
  t.notOk(fs.existsSync(path.join(root1, 'docs/big.bin')), 'gone from server 1')
  t.ok(fs.readFileSync(path.join(root2, 'logs/big.bin')).equals(fs.readFileSync(big)), 'server 2 has every byte')
  succeeded(t, await run('cmp', [big, b.at('/logs/big.bin')]), 'cmp through mount B')
  t.equal((await statsOf(cluster.fileServers[1])).incoming, incomingBefore + 2, 'two files came to server 2')

  // Back again, over an existing file: the target is replaced whole.
  fs.writeFileSync(path.join(local, 'other.txt'), 'other\n')
  succeeded(t, await run('cp', [path.join(local, 'other.txt'), a.at('/docs/a.txt')]), 'a new docs/a.txt on server 1')
  succeeded(t, await run('mv', ['-f', b.at('/logs/a.txt'), b.at('/docs/a.txt')]), 'mv -f from mount B back over it')
  t.equal(fs.readFileSync(path.join(root1, 'docs/a.txt'), 'utf8'), 'alpha\n', 'server 1 has the moved bytes in place of the old file')
  t.notOk(fs.existsSync(path.join(root2, 'logs/a.txt')), 'and server 2 has it no more')
  t.equal((await run('cat', [a.at('/docs/a.txt')])).stdout, 'alpha\n', 'mount A, which wrote the replaced file, reads the moved one')
})

t.test('mv within a server renames in place; mv of a folder to the other server falls back to copy and delete', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [root1, root2] = cluster.roots
  const mount = await mountCluster(t, cluster)

  succeeded(t, await run('mv', [mount.at('/docs/a.txt'), mount.at('/docs/deep/renamed.txt')]), 'mv within server 1')
  t.equal(fs.readFileSync(path.join(root1, 'docs/deep/renamed.txt'), 'utf8'), 'alpha\n', 'renamed on server 1\'s disk')
  t.equal((await statsOf(cluster.fileServers[1])).incoming, 0, 'nothing went to server 2')
  succeeded(t, await run('mv', [mount.at('/docs/deep'), mount.at('/docs/moved')]), 'mv of a folder within server 1')
  t.same(fs.readdirSync(path.join(root1, 'docs/moved')).sort(), ['more', 'n.txt', 'renamed.txt'], 'the folder moved whole on server 1')
  t.equal((await run('cat', [mount.at('/docs/moved/more/m.txt')])).stdout, 'more\n', 'files below it read at their new paths')

  // rename(2) of a folder across servers is EXDEV, and mv then copies the tree and removes it.
  const across = await run('mv', [mount.at('/docs/moved'), mount.at('/logs/moved')], { timeoutMs: 30_000 })
  succeeded(t, across, 'mv of the folder to logs/')
  t.notOk(fs.existsSync(path.join(root1, 'docs/moved')), 'gone from server 1')
  t.equal(fs.readFileSync(path.join(root2, 'logs/moved/more/m.txt'), 'utf8'), 'more\n', 'the tree is on server 2')
  t.equal(fs.readFileSync(path.join(root2, 'logs/moved/renamed.txt'), 'utf8'), 'alpha\n', 'every file of it')
  t.equal((await run('cat', [mount.at('/logs/moved/n.txt')])).stdout, 'nested\n', 'and reads through the mount')
  t.equal((await run('ls', [mount.at('/docs')])).stdout, '', 'docs/ is empty')
})

t.test('a file renamed on the mount while a program appends to it (a log rotated under its writer) keeps every line; one written in place refuses the rename', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [root1] = cluster.roots
  const mount = await mountCluster(t, cluster)
  const log = mount.at('/docs/app.log')
  const rotated = mount.at('/docs/app.log.1')
  // The writer holds its descriptor across the rename, as a daemon does until it is told to reopen.
  const rotation = await run('bash', ['-c', `echo first > ${quoted(log)}; exec 3>>${quoted(log)}; echo held >&3; mv ${quoted(log)} ${quoted(rotated)}; echo after >&3; exec 3>&-`])
  succeeded(t, rotation, 'appends before and after the rename')
  t.equal(fs.readFileSync(path.join(root1, 'docs/app.log.1'), 'utf8'), 'first\nheld\nafter\n', 'every line is in the renamed file')
  t.notOk(fs.existsSync(path.join(root1, 'docs/app.log')), 'and no file is made again under the old name')

  // The same through a folder rename.
  const folder = await run('bash', ['-c', `mkdir ${quoted(mount.at('/docs/run'))}; exec 3>>${quoted(mount.at('/docs/run/out.log'))}; echo one >&3; mv ${quoted(mount.at('/docs/run'))} ${quoted(mount.at('/docs/ran'))}; echo two >&3; exec 3>&-`])
  succeeded(t, folder, 'appends around a rename of the folder')
  t.equal(fs.readFileSync(path.join(root1, 'docs/ran/out.log'), 'utf8'), 'one\ntwo\n', 'both lines are in the moved file')

  // Written in place (not appended): its working copy is stored under its path, so the rename waits for its close.
  const inPlace = await run('bash', ['-c', `echo one > ${quoted(mount.at('/docs/db'))}; exec 3<>${quoted(mount.at('/docs/db'))}; echo XY >&3; mv ${quoted(mount.at('/docs/db'))} ${quoted(mount.at('/docs/db2'))}; echo "mv $?"; exec 3>&-`])
  t.match(inPlace.stdout, /mv 1/, 'mv fails')
  t.match(inPlace.stderr, /Device or resource busy/, `with EBUSY: ${outcome(inPlace)}`)
  t.equal(fs.readFileSync(path.join(root1, 'docs/db'), 'utf8'), 'XY\n\n', 'and the write (over "one\\n") is stored under the name it kept')
})

t.test('a file another mount renames while this one appends to it (a log rotated from another machine) keeps every line', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [root1] = cluster.roots
  const writer = await mountCluster(t, cluster)
  const rotator = await mountCluster(t, cluster)
  const on = (mount: typeof writer, file: string): string => quoted(mount.at(file))
  // Word of a rename comes with the file's callback, which the writer holds once its event channel is up.
  await readUntilCallbackGranted(writer.at('/docs/a.txt'), cluster.fileServers[0], 'alpha\n')
  // Made by the writer, rotated as logrotate does (rename, then a new file under the old name).
  const mine = await run('bash', ['-c', `echo first > ${on(writer, '/docs/a.log')}; exec 3>>${on(writer, '/docs/a.log')}; echo held >&3
    mv ${on(rotator, '/docs/a.log')} ${on(rotator, '/docs/a.log.1')} && echo new > ${on(rotator, '/docs/a.log')}; echo after >&3; exec 3>&-`])
  succeeded(t, mine, 'appends before and after the other mount\'s rename')
  t.equal(fs.readFileSync(path.join(root1, 'docs/a.log.1'), 'utf8'), 'first\nheld\nafter\n', 'every line is in the renamed file')
  t.equal(fs.readFileSync(path.join(root1, 'docs/a.log'), 'utf8'), 'new\n', 'none in the new file under the old name')

  // Made by the other mount, opened here for appending only.
  const theirs = await run('bash', ['-c', `echo first > ${on(rotator, '/docs/b.log')}; exec 3>>${on(writer, '/docs/b.log')}; echo held >&3
    mv ${on(rotator, '/docs/b.log')} ${on(rotator, '/docs/b.log.1')}; echo after >&3; exec 3>&-`])
  succeeded(t, theirs, 'appends to a file made elsewhere')
  t.equal(fs.readFileSync(path.join(root1, 'docs/b.log.1'), 'utf8'), 'first\nheld\nafter\n', 'every line is in the renamed file')
  t.notOk(fs.existsSync(path.join(root1, 'docs/b.log')), 'and no file is made again under the old name')

  // The folder renamed around the open file.
  const folder = await run('bash', ['-c', `mkdir ${on(writer, '/docs/run')}; exec 3>>${on(writer, '/docs/run/out.log')}; echo one >&3
    mv ${on(rotator, '/docs/run')} ${on(rotator, '/docs/ran')}; echo two >&3; exec 3>&-`])
  succeeded(t, folder, 'appends around the other mount\'s rename of the folder')
  t.equal(fs.readFileSync(path.join(root1, 'docs/ran/out.log'), 'utf8'), 'one\ntwo\n', 'both lines are in the moved file')
  t.notOk(fs.existsSync(path.join(root1, 'docs/run')), 'and nothing is made again under the old folder')
})

t.test('a file another mount renames while this one appends to it with no callback on it (its event channel was cut): the lines after the rename land in the renamed file', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [root1] = cluster.roots
  const writer = await mountCluster(t, cluster)
  const rotator = await mountCluster(t, cluster)
  const worker = await FileWorker.start(t)
  const fd = await worker.open(writer.at('/docs/daemon.log'), 'a')
  await worker.write(fd, Buffer.from('first\n'), null)
  await worker.sync(fd)
  // The writer's connections to the file server go, its event channel among them: it trusts
  // none of its callbacks there, so no word of the rename reaches it (as in a mount's first
  // moments, before its channel is up). It learns where the file went from the directory.
  const port = Number(new URL(cluster.fileServers[0].url).port)
  t.ok(await cutConnections(writer.daemon.pid as number, port) > 0, 'the writer\'s connections to the file server are cut')
  succeeded(t, await run('mv', [rotator.at('/docs/daemon.log'), rotator.at('/docs/daemon.log.1')]), 'the other mount renames the log')
  await worker.write(fd, Buffer.from('after\n'), null)
  await worker.close(fd)
  t.pass('the write and the close after the rename succeed')
  t.equal(fs.readFileSync(path.join(root1, 'docs/daemon.log.1'), 'utf8'), 'first\nafter\n', 'both lines are in the renamed file')
  t.notOk(fs.existsSync(path.join(root1, 'docs/daemon.log')), 'and nothing is made again under the old name')
})

t.test('a file another mount renames while this one writes it in place: the writes after the rename land in the renamed file, with word of the rename or without', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [root1] = cluster.roots
  const writer = await mountCluster(t, cluster)
  const rotator = await mountCluster(t, cluster)
  const worker = await FileWorker.start(t)
  const port = Number(new URL(cluster.fileServers[0].url).port)
  for (const cut of [false, true]) {
    const name = cut ? 'no-word' : 'word'
    succeeded(t, await run('bash', ['-c', `printf 'abcdef' > ${quoted(rotator.at(`/docs/${name}.db`))}`]), `${name}: the file is made`)
    // Written in place (a working copy), its first change stored before the rename.
    const fd = await worker.open(writer.at(`/docs/${name}.db`), 'r+')
    await worker.write(fd, Buffer.from('X'), 0)
    await worker.sync(fd)
    // Without word of the rename, the copy learns where the file went from the directory.
    if (cut) t.ok(await cutConnections(writer.daemon.pid as number, port) > 0, `${name}: the writer's connections to the file server are cut`)
    succeeded(t, await run('mv', [rotator.at(`/docs/${name}.db`), rotator.at(`/docs/${name}.db.1`)]), `${name}: the other mount renames it (the writer gives its lease back)`)
    await worker.write(fd, Buffer.from('Y'), 1)
    await worker.close(fd)
    t.equal(fs.readFileSync(path.join(root1, `docs/${name}.db.1`), 'utf8'), 'XYcdef', `${name}: both writes are in the renamed file`)
    t.notOk(fs.existsSync(path.join(root1, `docs/${name}.db`)), `${name}: and nothing is made again under the old name`)
  }
})

t.test('a file another mount renames onto a name this mount also has open: the appender\'s lines land in the renamed file, the other handle reads what it opened', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [root1] = cluster.roots
  const writer = await mountCluster(t, cluster)
  const rotator = await mountCluster(t, cluster)
  // Word of a rename comes with the file's callback, which the writer holds once its event channel is up.
  await readUntilCallbackGranted(writer.at('/docs/a.txt'), cluster.fileServers[0], 'alpha\n')
  const worker = await FileWorker.start(t)
  succeeded(t, await run('bash', ['-c', `echo last week > ${quoted(rotator.at('/docs/app.log.1'))}`]), 'last rotation\'s log is there')
  // Someone reads last rotation's log on the writer's machine (less, tail) while the daemon there appends to today's.
  const viewer = await worker.open(writer.at('/docs/app.log.1'), 'r')
  t.equal((await worker.read(viewer)).toString(), 'last week\n', 'the viewer reads the old log')
  const fd = await worker.open(writer.at('/docs/app.log'), 'a')
  await worker.write(fd, Buffer.from('first\n'), null)
  await worker.sync(fd)
  // Rotated from another machine: today's log replaces last week's.
  succeeded(t, await run('mv', [rotator.at('/docs/app.log'), rotator.at('/docs/app.log.1')]), 'the other mount renames the log onto the old one')
  await worker.write(fd, Buffer.from('after\n'), null)
  await worker.close(fd)
  t.pass('the write and the close after the rename succeed')
  t.equal(fs.readFileSync(path.join(root1, 'docs/app.log.1'), 'utf8'), 'first\nafter\n', 'both lines are in the renamed file')
  t.notOk(fs.existsSync(path.join(root1, 'docs/app.log')), 'and nothing is made again under the old name')
  t.equal((await worker.read(viewer)).toString(), 'last week\n', 'the viewer still reads the file it opened, as from a file removed while open')
  await worker.close(viewer)
  t.equal((await worker.readPath(writer.at('/docs/app.log.1'))).toString(), 'first\nafter\n', 'a new open of the name reads the renamed file')
})

t.test('a file another mount removes while this one appends to it: the next write after the mount finds it gone fails with ESTALE, and so does the close', async (t) => {
  const cluster = await startTestCluster(t, trees)
  const [root1] = cluster.roots
  const writer = await mountCluster(t, cluster)
  const remover = await mountCluster(t, cluster)
  const worker = await FileWorker.start(t)
  // A daemon's log, held open for appending.
  const fd = await worker.open(writer.at('/docs/daemon.log'), 'a')
  await worker.write(fd, Buffer.from('first\n'), null)
  await waitFor('the first line on the server (sent after the writes pause)', async () => fs.existsSync(path.join(root1, 'docs/daemon.log')) &&
    fs.readFileSync(path.join(root1, 'docs/daemon.log'), 'utf8') === 'first\n', 10_000, 50)
  const removed = await run('rm', [remover.at('/docs/daemon.log')])
  succeeded(t, removed, 'the other mount removes the log')
  // The writer learns it when its next lines are sent (a pause of a second): from then on its
  // writes are refused instead of held in memory for as long as it writes.
  const refused = await waitFor('a write refused', async () => {
    try {
      await worker.write(fd, Buffer.from('more\n'), null)
      return false
    } catch (err) {
      return err as WorkerError
    }
  }, 15_000, 200)
  t.equal(refused.code, 'ESTALE', `the write fails with ESTALE: ${refused.message}`)
  await t.rejects(worker.close(fd), { code: 'ESTALE' }, 'and so does the close, whose lines had nowhere to go')
  t.notOk(fs.existsSync(path.join(root1, 'docs/daemon.log')), 'nothing is made again under the removed name')
})
