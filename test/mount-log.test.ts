import fsp from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import { clusterArgs, dfsMountBin, dfsUmountBin, mountPlace, outcome, run, runCli } from './helpers/mount'
import { waitFor } from './helpers/waitFor'

/*
 * The mount's log (src/cli/mountLog.ts): the background daemon writes JSON lines to its log
 * file, each file system operation under a request id of its own, and a name with a control
 * character in it cannot make a line of its own.
 */

interface LogEntry {
  level: number
  msg: string
  name: string
  reqId?: string
  op?: string
}

t.test('the background mount logs JSON lines, an operation with its request id', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/a.txt': 'hello\n' }])
  const place = await mountPlace(t)
  const logFile = path.join(place.base, 'mount.log')
  const mounted = await runCli(dfsMountBin, [place.mountpoint, ...clusterArgs(cluster, place), '--log', logFile, '--log-level', 'debug'], { env: place.env })
  t.equal(mounted.code, 0, outcome(mounted))
  t.teardown(async () => { await runCli(dfsUmountBin, [place.mountpoint], { env: place.env }) })

  const cat = await run('cat', [path.join(place.mountpoint, 'notes/a.txt')])
  t.equal(cat.stdout, 'hello\n', outcome(cat))
  const odd = await run('cat', [path.join(place.mountpoint, 'notes/odd\nname.txt')])
  t.not(odd.code, 0, 'no such file')
  const unmounted = await runCli(dfsUmountBin, [place.mountpoint], { env: place.env })
  t.equal(unmounted.code, 0, outcome(unmounted))

  const text = await fsp.readFile(logFile, 'utf8')
  const lines = text.split('\n').filter((line) => line !== '')
  const entries = lines.map((line) => {
    try {
      return JSON.parse(line) as LogEntry
    } catch {
      t.fail(`not a JSON line: ${line}`)
      return null
    }
  }).filter((entry): entry is LogEntry => entry !== null)
  t.ok(entries.length > 0 && entries.length === lines.length, 'every line of the log file is JSON')
  t.ok(entries.every((e) => e.name === 'dfs-mount'), 'each names the mount')
  t.ok(entries.some((e) => /^mounted .* at /.test(e.msg)), 'the mount line is there')
  const open = entries.find((e) => e.op === 'open' && e.msg === 'open /notes/a.txt 0')
  t.ok(open, `the open is logged at debug; lines: ${text.slice(0, 2000)}`)
  t.match(open?.reqId, /^[0-9a-f]{16}$/, 'with its request id')
  const reqIds = entries.filter((e) => e.reqId !== undefined).map((e) => e.reqId)
  t.equal(new Set(reqIds).size, reqIds.length, 'one request id per operation')
  t.ok(entries.some((e) => e.msg.includes('/notes/odd\nname.txt ENOENT')), 'the odd name is in a line of its own, escaped by JSON')
  t.notOk(lines.some((line) => line.startsWith('name.txt')), 'its newline made no line')
})

t.test('SIGHUP makes the background mount reopen its log file, as logrotate needs', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/a.txt': 'hello\n', 'notes/b.txt': 'later\n' }])
  const place = await mountPlace(t)
  const logFile = path.join(place.base, 'mount.log')
  const mounted = await runCli(dfsMountBin, [place.mountpoint, ...clusterArgs(cluster, place), '--log', logFile, '--log-level', 'debug'], { env: place.env })
  t.equal(mounted.code, 0, outcome(mounted))
  t.teardown(async () => { await runCli(dfsUmountBin, [place.mountpoint], { env: place.env }) })
  const pid = Number(/daemon pid (\d+)/.exec(mounted.stdout)?.[1])
  t.ok(pid > 0, `the daemon's pid is said: ${mounted.stdout}`)

  t.equal((await run('cat', [path.join(place.mountpoint, 'notes/a.txt')])).stdout, 'hello\n')
  const rotated = logFile + '.1'
  await fsp.rename(logFile, rotated)
  process.kill(pid, 'SIGHUP')
  await waitFor('a new log file at the old name', async () => (await fsp.readFile(logFile, 'utf8').catch(() => '')).includes('SIGHUP: log file reopened'), 30_000, 50)
  const cat = await run('cat', [path.join(place.mountpoint, 'notes/b.txt')])
  t.equal(cat.stdout, 'later\n', `the mount still serves: ${outcome(cat)}`)
  const unmounted = await runCli(dfsUmountBin, [place.mountpoint], { env: place.env })
  t.equal(unmounted.code, 0, outcome(unmounted))

  const messages = async (file: string): Promise<string[]> =>
    (await fsp.readFile(file, 'utf8')).split('\n').filter((line) => line !== '').map((line) => (JSON.parse(line) as LogEntry).msg)
  const before = await messages(rotated)
  const after = await messages(logFile)
  t.ok(before.includes('open /notes/a.txt 0'), 'the first open is in the renamed file')
  t.notOk(before.includes('open /notes/b.txt 0'), 'nothing after the SIGHUP went to the renamed file')
  t.ok(after.includes('open /notes/b.txt 0'), `the open after it is in the new file: ${after.join(' | ')}`)
  t.notOk(after.includes('open /notes/a.txt 0'), 'which has only what came after')
  t.ok(after.some((msg) => msg.startsWith('SIGTERM: unmounting')), 'so is the unmount')
})
