import fsp from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { BadRequestError } from '../src/shared/errors'
import { FileRoutes } from '../src/shared/protocol'
import { startTestCluster } from './helpers/cluster'
import { rawAs } from './helpers/wire'

/*
 * The protocol of issue #12's file metadata against real servers: POST /create carries the
 * mode and makes symbolic links; links rename across file servers as links (PUT /incoming
 * with target); bad input is a 400 with a JSON body.
 */

t.test('POST /create keeps the mode asked for, 0 included, and makes symbolic links the directory maps as files', async (t) => {
  const cluster = await startTestCluster(t, [{ 'one/a.txt': 'alpha\n' }])
  const { rawGet, rawPost } = rawAs(cluster.credentials.write)
  const client = cluster.client()
  const server = cluster.fileServers[0]

  t.equal((await client.create('/one/zero.txt', 0)).mode, 0, 'a file of mode 0')
  t.equal((await rawGet(server.url, FileRoutes.stat, { path: '/one/zero.txt' })).body.mode, 0, 'GET /stat says 0')
  t.equal((await client.mkdir('/one/private', 0o700)).mode, 0o700, 'a folder of mode 0700')
  t.equal((await client.create('/one/plain.txt')).mode, 0o644 & ~process.umask(), 'without a mode: the server\'s default')

  const link = await client.symlink('../one/a.txt', '/one/link')
  t.match(link, { kind: 'symlink', target: '../one/a.txt', size: 12, mode: 0o777 }, 'a link: kind, target, size and mode')
  t.equal((await client.lookup('/one/link')).kind, 'file', 'the directory maps it as a file (one holder)')
  t.equal(await client.readlink('/one/link'), '../one/a.txt', 'readlink')
  await t.rejects(client.readlink('/one/a.txt'), BadRequestError, 'readlink of a file is EINVAL')
  t.equal(await fsp.readlink(path.join(cluster.roots[0], 'one/link')), '../one/a.txt', 'a real link on the server\'s disk')
  const listed = (await client.list('/one')).find((e) => e.name === 'link')
  t.match(listed, { kind: 'symlink', target: '../one/a.txt' }, 'listed as a link')

  const noTarget = await rawPost(server.url, `${FileRoutes.create}?path=/one/x&kind=symlink`, {})
  t.equal(noTarget.status, 400, 'a link without a target: 400')
  t.equal(noTarget.body.error.code, 'BAD_REQUEST', 'BAD_REQUEST')
  const badMode = await rawPost(server.url, `${FileRoutes.create}?path=/one/y&mode=4096`, {})
  t.equal(badMode.status, 400, 'a mode above 0o7777: 400')
  t.match(badMode.body.error.message, /mode must be a whole number from 0 to 4095/, 'naming the field')
  const badKind = await rawPost(server.url, `${FileRoutes.create}?path=/one/y&kind=fifo`, {})
  t.equal(badKind.status, 400, 'an unknown kind: 400')

  await client.unlink('/one/link')
  await t.rejects(fsp.lstat(path.join(cluster.roots[0], 'one/link')), { code: 'ENOENT' }, 'unlink removes the link')
  t.equal((await client.readFile('/one/a.txt')).toString(), 'alpha\n', 'and not its target')
})

t.test('a link and a mode-0 file renamed to another file server arrive as they were', async (t) => {
  const cluster = await startTestCluster(t, [{ 'one/a.txt': 'alpha\n' }, { 'two/b.txt': 'beta\n' }])
  const client = cluster.client()
  await client.symlink('/etc/passwd', '/one/link')
  await client.create('/one/zero.txt', 0)
  await client.append('/one/zero.txt', 'secret\n')

  const moved = await client.rename('/one/link', '/two/link')
  t.match(moved, { kind: 'symlink', target: '/etc/passwd' }, 'the link moved as a link')
  t.equal(await fsp.readlink(path.join(cluster.roots[1], 'two/link')), '/etc/passwd', 'onto the second server\'s disk')
  await t.rejects(fsp.lstat(path.join(cluster.roots[0], 'one/link')), { code: 'ENOENT' }, 'and off the first')
  t.equal(await client.readlink('/two/link'), '/etc/passwd', 'readlink at its new path')

  t.equal((await client.rename('/one/zero.txt', '/two/zero.txt')).mode, 0, 'a mode-0 file keeps its mode on another server')
  t.equal((await client.readFile('/two/zero.txt')).toString(), 'secret\n', 'and its bytes')
  t.equal((await client.rename('/two/link', '/two/b.txt')).kind, 'symlink', 'a link replaces a file on its server')
  t.equal(await client.readlink('/two/b.txt'), '/etc/passwd', 'readlink of the replaced path')
})
