import fs from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { DEFAULT_SERVER_DOWN_AFTER_MS } from '../src/shared/defaults'
import { LockRoutes } from '../src/shared/protocol'
import { outcome, sh } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import type { ProcessCluster, ServerProcess } from './helpers/processCluster'
import { waitFor, within } from './helpers/waitFor'
import { FileWorker } from './helpers/fileWorkerClient'
import { rawAs } from './helpers/wire'

/*
 * A hard mount (the default) never drops what a program wrote: an `echo >>` whose server
 * is down, stopped or restarting waits and then succeeds, and its line is there exactly
 * once. Each server is its own process here, killed or stopped for real.
 */

/** Long enough that only a hang hits it. */
const DONE_MS = 30_000
/** A soft read of a stopped server ends by its own timeout (about 2.7 s: 2 s, then a 700 ms probe), before the server is marked down. */
const SOFT_READ_BOUND_MS = DEFAULT_SERVER_DOWN_AFTER_MS
/**
 * `ls` of the root while a file server is stopped: about 1 s (a 300 ms wait, then a 700 ms
 * /health probe) where a listing that waited for the server took its 12 s list deadline.
 */
const UNRELATED_BOUND_MS = 6000

async function onDisk (server: ServerProcess, file: string): Promise<string> {
  return await fs.readFile(path.join(server.root as string, file), 'utf8')
}

/**
 * A shell that opens FILE for appending, waits for `go` to appear (the test breaks a server
 * meanwhile), writes LINE and closes with `exec 3>&-`: a shell ignores errors of that close,
 * which is where a network file system can lose data without anyone noticing.
 */
function appendAfter (mountedFile: string, go: string, line: string): ReturnType<typeof sh> {
  return sh(`exec 3>>'${mountedFile}' && while [ ! -e '${go}' ]; do sleep 0.02; done; echo ${line} >&3; exec 3>&-; echo closed`, { timeoutMs: DONE_MS })
}

/** Starts `echo LINE >> FILE` through the mount and gives back how it ended, once it has. */
function appendLine (mountedFile: string, line: string): Promise<{ code: number | null, stderr: string, stdout: string, signal: NodeJS.Signals | null }> {
  return sh(`echo ${line} >> '${mountedFile}'`, { timeoutMs: DONE_MS })
}

async function cluster (t: Test): Promise<ProcessCluster> {
  return await startProcessCluster(t, { trees: [{ 'logs/app.log': 'start\n' }] })
}

t.test('with the lock server killed, echo >> still works at once: appends need no lock', async (t) => {
  const c = await cluster(t)
  const mount = await c.mount()
  const file = mount.at('/logs/app.log')
  await c.lock.kill()
  for (const line of ['one', 'two', 'three']) {
    const done = await appendLine(file, line)
    t.equal(done.code, 0, outcome(done))
  }
  t.equal(await onDisk(c.files[0], 'logs/app.log'), 'start\none\ntwo\nthree\n', 'every line on the server, in order')
})

/**
 * A shell holds the log open for appending while `breakServer` runs, then writes a line and
 * closes; `heal` brings the server back while that close waits. The close must not fail
 * (a shell would ignore it), and the line must land exactly once.
 */
async function appendAcrossFault (t: Test, c: ProcessCluster, breakServer: () => Promise<void>, heal: () => Promise<void>): Promise<string> {
  const mount = await c.mount()
  const file = mount.at('/logs/app.log')
  t.equal((await appendLine(file, 'before')).code, 0)
  const go = path.join(c.workDir, 'go')
  const pending = appendAfter(file, go, 'during')
  await new Promise((resolve) => setTimeout(resolve, 300))
  await breakServer()
  await fs.writeFile(go, '')
  // Still waiting well after the write: a hard mount does not give up.
  t.notOk(await within(pending, 1500), 'close waits for the server instead of failing')
  await heal()
  const done = await pending
  t.equal(done.code, 0, `the append succeeded: ${outcome(done)}`)
  t.equal(done.stdout, 'closed\n', 'the shell went past its close')
  t.equal(await onDisk(c.files[0], 'logs/app.log'), 'start\nbefore\nduring\n', 'the line is there exactly once')
  return file
}

t.test('echo >> to a file server that is stopped waits, and succeeds once it runs again; the line is there once', async (t) => {
  const c = await cluster(t)
  await appendAcrossFault(t, c, async () => await c.files[0].stop(), async () => await c.files[0].cont())
})

t.test('echo >> while the file server is killed and restarted waits for it and lands once', async (t) => {
  const c = await cluster(t)
  const file = await appendAcrossFault(t, c, async () => await c.files[0].kill(), async () => {
    await c.files[0].restart()
    await c.files[0].waitHealthy()
  })
  const after = await appendLine(file, 'after')
  t.equal(after.code, 0, outcome(after))
  await waitFor('the last line', async () => (await onDisk(c.files[0], 'logs/app.log')).endsWith('after\n') || undefined, 5000, 50)
})

t.test('files written just before the lock server restarts are written again at once after it: the mount gives back the leases it kept', async (t) => {
  // Leases outlast the mount's wait for a lock (10 s) by far: a kept lease the mount gave
  // up on would still hold its file on the restarted lock server, against the mount's own
  // next write (ENOLCK, as sqlite's fsync of its journal got, when the journal still went to
  // the servers: now it stays on the mount, and the database's lease is the one kept).
  const c = await startProcessCluster(t, { trees: [{ 'logs/.keep': '' }], lockArgs: ['--lease-ms', '120000'] })
  const mount = await c.mount()
  const { rawGet } = rawAs(c.credentials.write)
  const held = async (dfsPath: string): Promise<boolean> => (await rawGet(c.lock.url, LockRoutes.status, { path: dfsPath })).body.held === true
  const state = mount.at('/logs/state.txt')
  const db = mount.at('/logs/app.db')
  const overwrite = (tag: string): string => `echo ${tag} > '${state}'`
  // sqlite3 stores the database at each commit (its journal stays on the mount).
  const insert = (tag: string): string => `sqlite3 -batch '${db}' "create table if not exists t (v text); insert into t values ('${tag}');"`
  await waitFor('writes that leave the leases kept', async () => {
    const written = await sh(`${insert('first')} && ${overwrite('first')}`)
    if (written.code !== 0) throw new Error(outcome(written))
    return (await held('/logs/state.txt')) && (await held('/logs/app.db'))
  }, 20_000, 50)
  await c.lock.restart()
  const inserted = await sh(insert('second'), { timeoutMs: DONE_MS })
  t.equal(inserted.code, 0, `sqlite3 commits again after the restart: ${outcome(inserted)}`)
  const again = await sh(overwrite('second'), { timeoutMs: DONE_MS })
  t.equal(again.code, 0, `the overwrite after the restart succeeds: ${outcome(again)}`)
  const rows = await sh(`sqlite3 -batch '${db}' 'select v from t;'`)
  // The wait above may have committed 'first' more than once.
  t.match(rows.stdout, /^(first\n)+second\n$/, `the database holds every row: ${outcome(rows)}`)
  t.equal(await onDisk(c.files[0], 'logs/state.txt'), 'second\n', 'and is on the server')
})

t.test('sqlite3 goes on committing while each server is killed and restarted: a hard mount waits for it, and the database is whole', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'db/.keep': '' }] })
  // At debug level the mount logs each operation and its errno: a failed commit's tail says which step sqlite3 met.
  const mount = await c.mount(['--log-level', 'debug'])
  const db = mount.at('/db/app.db')
  const made = await sh(`sqlite3 -batch '${db}' 'create table t (v text);'`)
  t.equal(made.code, 0, outcome(made))
  // Enough one-row transactions (about 10 ms each) to outlast the three restarts below.
  const transactions = 1200
  const script = path.join(c.workDir, 'commits.sql')
  await fs.writeFile(script, Array.from({ length: transactions }, (_, i) => `begin; insert into t values ('row ${i}'); commit;`).join('\n') + '\n')
  const committing = sh(`sqlite3 -batch -bail '${db}' < '${script}'`, { timeoutMs: 240_000 })
  // Every step of a commit meets a dead server: its lock and lease (the lock server), the
  // pages' range writes (the file server); the directory's restart is met by the folder's
  // callbacks (the journal stays on the mount and asks nothing of it).
  for (const server of [c.lock, c.directory, c.files[0]]) {
    await new Promise((resolve) => setTimeout(resolve, 300))
    await server.restart()
  }
  t.notOk(await within(committing, 0), 'sqlite3 was still committing after the last restart')
  const done = await committing
  t.equal(done.code, 0, `every commit succeeded: ${outcome(done)}`, done.code === 0 ? {} : { mountLog: mount.output().split('\n').slice(-150).join('\n') })
  const check = await sh(`sqlite3 -batch '${db}' 'pragma integrity_check; select count(*) from t;'`)
  t.equal(check.stdout, `ok\n${transactions}\n`, `the database is whole, with every row: ${outcome(check)}`)
})

t.test('a mkdir waits for a file server that is down instead of failing, and the mv, chmod, truncate, rm and rmdir after it succeed', async (t) => {
  const c = await cluster(t)
  const mount = await c.mount()
  const logs = mount.at('/logs')
  await c.files[0].kill()
  const changes = sh(`cd '${logs}' && mkdir old && mv app.log old/app.log.1 && chmod 600 old/app.log.1 && truncate -s 3 old/app.log.1 && ` +
    'cat old/app.log.1 > kept && rm old/app.log.1 && rmdir old && ls', { timeoutMs: DONE_MS })
  t.notOk(await within(changes, 1000), 'the mkdir waits for the file server instead of failing')
  await c.files[0].restart()
  const done = await changes
  t.equal(done.code, 0, `every change succeeded: ${outcome(done)}`)
  t.equal(done.stdout, 'kept\n', 'and the folder holds what they left')
  t.equal(await onDisk(c.files[0], 'logs/kept'), 'sta', 'which is on the server')
})

t.test('SIGTERM to a hard mount whose file server is down waits to store what a program wrote; a second SIGTERM gives that up and unmounts', async (t) => {
  const c = await cluster(t)
  const mount = await c.mount()
  const worker = await FileWorker.start(t)
  const fd = await worker.open(mount.at('/logs/app.log'), 'a')
  await c.files[0].kill()
  await worker.write(fd, Buffer.from('unsent\n'), null)
  process.kill(mount.pid, 'SIGTERM')
  await waitFor('the first SIGTERM said', async () => mount.output().includes('SIGTERM: unmounting'), 10_000, 50)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.ok(mount.alive(), 'the mount waits for the server to store the line')
  process.kill(mount.pid, 'SIGTERM')
  await waitFor('the mount gone', async () => !mount.alive(), 10_000, 50)
  t.match(mount.output(), /SIGTERM again: unmounting .* now; what was written and not yet stored is lost/, 'and says what the second one cost')
})

t.test('a soft mount gives EIO instead of waiting, to a program that checks fsync', async (t) => {
  const c = await cluster(t)
  const mount = await c.mount(['--soft', '--soft-timeout-ms', '300'])
  const file = mount.at('/logs/app.log')
  t.equal((await appendLine(file, 'before')).code, 0)
  await c.files[0].kill()
  // A shell's echo >> would ignore the error of its close: that is what a soft mount risks,
  // and why hard is the default. dd's fsync reports it.
  const failed = await sh(`printf 'lost\\n' | dd of='${file}' oflag=append conv=notrunc,fsync status=none`, { timeoutMs: DONE_MS })
  t.equal(failed.signal, null, 'no hang')
  t.not(failed.code, 0, 'the append fails')
  t.match(failed.stderr, /Input\/output error/, outcome(failed))
  await waitFor('the failure in the mount\'s log', async () => mount.output().includes(': EIO'), 5000, 50)
  t.match(mount.output(), /error: \w+ \/logs\/app\.log: EIO \(file server 1 at \S+ is not answering/, 'the mount logs the EIO with why')
})

/*
 * Reads of a file whose server is stopped (SIGSTOP: it accepts connections and answers
 * nothing; the directory still counts it up for 5 s). A hard mount's read tries again for
 * its read wait (--read-wait-ms, 2 s), then gives EIO: a reader does not hang on it, and
 * loses nothing; with a longer read wait it waits and succeeds once the server answers. A
 * soft mount gives EIO after its read timeout (2 s). None makes `ls` of the root wait for
 * the stopped server.
 */
async function stoppedServerCluster (t: Test): Promise<ProcessCluster> {
  return await startProcessCluster(t, { trees: [{ 'logs/app.log': 'start\n' }, { 'other/b.log': 'b\n' }] })
}

/** Changes the file through another client, so the mount's cached copy is stale and the read must ask the server. */
async function changeBehindTheMount (c: ProcessCluster): Promise<void> {
  const client = c.client()
  await client.append('/logs/app.log', 'more\n')
  client.close()
}

/** With the first file server stopped, a cat of `file` (one of its files) fails with EIO within SOFT_READ_BOUND_MS. */
async function readFailsWhileStopped (t: Test, c: ProcessCluster, file: string, when: string): Promise<void> {
  await c.files[0].stop()
  try {
    const started = Date.now()
    const failed = await sh(`cat '${file}'`, { timeoutMs: DONE_MS })
    const tookMs = Date.now() - started
    t.not(failed.code, 0, 'the read fails')
    t.match(failed.stderr, /Input\/output error/, outcome(failed))
    t.ok(tookMs < SOFT_READ_BOUND_MS, `${when}: ${tookMs} ms`)
  } finally {
    await c.files[0].cont()
  }
}

t.test('a hard mount: a read of a stopped server\'s file fails with EIO after the read wait, before the server is marked down, and reads the current content once it runs again', async (t) => {
  const c = await stoppedServerCluster(t)
  const mount = await c.mount()
  t.equal((await sh(`cat '${mount.at('/logs/app.log')}'`)).stdout, 'start\n')
  await changeBehindTheMount(c)
  await readFailsWhileStopped(t, c, mount.at('/logs/app.log'), 'after the read wait, before the server would be marked down')
  const done = await sh(`cat '${mount.at('/logs/app.log')}'`, { timeoutMs: DONE_MS })
  t.equal(done.code, 0, outcome(done))
  t.equal(done.stdout, 'start\nmore\n', 'the current content, once the server answers')
})

t.test('a hard mount with a long --read-wait-ms: a read of a stopped server\'s file waits and succeeds once it runs again; ls of the root does not wait', async (t) => {
  const c = await stoppedServerCluster(t)
  const mount = await c.mount(['--read-wait-ms', '60000'])
  t.equal((await sh(`cat '${mount.at('/logs/app.log')}'`)).stdout, 'start\n')
  await changeBehindTheMount(c)
  await c.files[0].stop()
  const pending = sh(`cat '${mount.at('/logs/app.log')}'`, { timeoutMs: DONE_MS })
  const listing = sh(`ls '${mount.mountpoint}' && cat '${mount.at('/other/b.log')}'`, { timeoutMs: DONE_MS })
  t.notOk(await within(pending, 1500), 'the read waits for the server')
  t.ok(await within(listing, UNRELATED_BOUND_MS), 'ls of the root and a read of the other server\'s file end while it is stopped')
  t.equal((await listing).stdout, 'logs\nother\nb\n', outcome(await listing))
  await c.files[0].cont()
  const done = await pending
  t.equal(done.code, 0, outcome(done))
  t.equal(done.stdout, 'start\nmore\n', 'the current content, once the server answers')
})

t.test('a soft mount: a read of a stopped server\'s file fails with EIO while it is still stopped', async (t) => {
  const c = await stoppedServerCluster(t)
  const mount = await c.mount(['--soft'])
  t.equal((await sh(`cat '${mount.at('/logs/app.log')}'`)).stdout, 'start\n')
  await changeBehindTheMount(c)
  // Well before the directory marks the server down (5 s): the read's own timeout ends it.
  await readFailsWhileStopped(t, c, mount.at('/logs/app.log'), 'by its own timeout, before the server would be marked down')
})
