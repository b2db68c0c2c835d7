import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { FileWorker } from './helpers/fileWorkerClient'
import { mountCluster, run } from './helpers/mount'

/*
 * Two processes on ONE mount using one file at the same time, which a local disk serves as
 * one file. Between mounts the promise is close-to-open; within one mount, these
 * assertions say what a local disk would do: the handles of one path share the mount's
 * working copy, and an open or read sends what other handles gathered first.
 */

t.test('another process on the same mount sees the bytes an open appender has written', async (t) => {
  const cluster = await startTestCluster(t, [{ 'logs/app.log': 'start\n' }])
  const mount = await mountCluster(t, cluster)
  const appender = await FileWorker.start(t)
  const log = mount.at('/logs/app.log')

  const fd = await appender.open(log, 'a')
  await appender.write(fd, Buffer.from('line\n'), null)
  t.equal((await run('stat', ['-c', '%s', log])).stdout.trim(), '11', 'stat counts the appended bytes')
  t.equal((await run('cat', [log])).stdout, 'start\nline\n', 'cat shows them')
  await appender.close(fd)
  t.equal((await run('cat', [log])).stdout, 'start\nline\n', 'after the appender\'s close, cat shows them')
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'logs/app.log'), 'utf8'), 'start\nline\n', 'and so does the server')
})

t.test('two processes on the same mount write into one file at offsets', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'abcdef\n' }])
  // Short, so the second writer's wait for the first one's lock ends soon.
  const mount = await mountCluster(t, cluster, ['--lock-timeout-ms', '1000'])
  const first = await FileWorker.start(t)
  const second = await FileWorker.start(t)
  const file = mount.at('/docs/a.txt')

  const fd1 = await first.open(file, 'r+')
  await first.write(fd1, Buffer.from('X'), 1)
  const fd2 = await second.open(file, 'r+')
  const secondWrite = await second.write(fd2, Buffer.from('Y'), 2).then(() => 'ok', (err: unknown) => String(err))
  t.equal(secondWrite, 'ok', 'the second writer\'s write succeeds: both share the mount\'s working copy')
  t.equal((await run('cat', [file])).stdout, 'aXYdef\n', 'a third process sees both writes before either closes')
  await first.close(fd1)
  await second.close(fd2)
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'docs/a.txt'), 'utf8'), 'aXYdef\n', 'both writers\' bytes are stored')
})
