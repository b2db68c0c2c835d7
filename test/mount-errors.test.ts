import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startFileServer } from '../servers/file/server'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run, sh, SOFT } from './helpers/mount'

// Long enough that only a hang hits it; the mount's own network timeouts are 5 s.
const NO_HANG_MS = 20_000

t.test('mutations the mount does not support fail with a fitting error, and the daemon keeps serving', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }])
  const root = cluster.roots[0]
  const mount = await mountCluster(t, cluster)
  const file = mount.at('/docs/a.txt')

  // Hard links and special files stay refused (symbolic links work: mount-posix-files.test.ts).
  const refusals: Array<{ what: string, argv: [string, ...string[]], error: RegExp }> = [
    { what: 'a hard link', argv: ['ln', file, mount.at('/docs/hard')], error: /Operation not supported/ },
    { what: 'a FIFO', argv: ['mkfifo', mount.at('/docs/pipe')], error: /Operation not permitted/ }
  ]
  for (const { what, argv, error } of refusals) {
    const result = await run(argv[0], argv.slice(1))
    t.not(result.code, 0, `${what} fails`)
    t.equal(result.signal, null, `${what} did not hang`)
    t.match(result.stderr, error, `${what}: ${result.stderr.trim()}`)
    t.ok(mount.alive(), `the daemon survived ${what}`)
  }
  t.same(fs.readdirSync(path.join(root, 'docs')), ['a.txt'], 'nothing was created on the server')

  const cat = await run('cat', [file])
  t.equal(cat.stdout, 'alpha\n', 'reads still work')
  const append = await sh(`echo beta >> '${file}'`)
  t.equal(append.code, 0, outcome(append))
  t.equal(fs.readFileSync(path.join(root, 'docs', 'a.txt'), 'utf8'), 'alpha\nbeta\n', 'appends still work')
})

t.test('on a soft mount, a file server that goes down gives EIO on its files without a hang; once it is back, the mount recovers by itself', async (t) => {
  const cluster = await startTestCluster(t, [{ 'docs/a.txt': 'alpha\n' }, { 'logs/b.log': 'bravo\n' }])
  const [down, other] = cluster.fileServers
  // A soft mount: writes give up with EIO (a hard one waits for the server: mount-faults.test.ts).
  const mount = await mountCluster(t, cluster, SOFT)
  const file = mount.at('/docs/a.txt')
  t.equal((await run('cat', [file])).stdout, 'alpha\n', 'a cached copy exists before the server goes down')

  await down.close()
  const failed = await run('cat', [file], { timeoutMs: NO_HANG_MS })
  t.equal(failed.signal, null, 'cat ended by itself: no hang')
  t.not(failed.code, 0, 'cat fails')
  t.match(failed.stderr, /Input\/output error/, `EIO: ${failed.stderr.trim()}`)
  // dd checks what fsync says (a shell's echo >> ignores the error of its close).
  const failedAppend = await sh(`printf 'lost\\n' | dd of='${file}' oflag=append conv=notrunc,fsync status=none`, { timeoutMs: NO_HANG_MS })
  t.equal(failedAppend.signal, null, 'an append ended by itself: no hang')
  t.not(failedAppend.code, 0, 'an append to the missing server fails')
  t.match(failedAppend.stderr, /Input\/output error/, `EIO: ${failedAppend.stderr.trim()}`)
  t.ok(mount.alive(), 'the daemon stays up')
  t.equal((await run('cat', [mount.at('/logs/b.log')])).stdout, 'bravo\n', 'files of the other server still read')

  const restarted = await startFileServer({ root: cluster.roots[0], port: down.port, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key } })
  t.teardown(async () => await restarted.close())
  t.equal(restarted.machineId, down.machineId, 'the restarted server kept its machine id')
  t.not(restarted.machineId, other.machineId)

  const recovered = await run('cat', [file], { timeoutMs: NO_HANG_MS })
  t.equal(recovered.code, 0, outcome(recovered))
  t.equal(recovered.stdout, 'alpha\n', 'cat works again, with no remount')
  const append = await sh(`echo back >> '${file}'`, { timeoutMs: NO_HANG_MS })
  t.equal(append.code, 0, outcome(append))
  t.equal(fs.readFileSync(path.join(cluster.roots[0], 'docs', 'a.txt'), 'utf8'), 'alpha\nback\n', 'appends work again, and the failed one left nothing behind')
  t.equal((await run('cat', [file])).stdout, 'alpha\nback\n')
})
