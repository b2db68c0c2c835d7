import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { LockApi } from '../src/shared/api'
import { Transport } from '../src/shared/transport'
import { credentialsWithKeyFile } from './helpers/credentials'
import type { TestCredentials } from './helpers/credentials'
import { startNode, stopNode } from './helpers/processes'
import { waitFor } from './helpers/waitFor'

/*
 * Running a server for real: SIGTERM shuts it down gracefully (requests in flight get their
 * answer, then it exits 0), SIGHUP reopens its --log file for logrotate, and that file holds
 * JSON lines.
 */

interface LogEntry { level: number, time: string, msg: string, name: string, pid: number, reqId?: string }

function entriesOf (file: string): LogEntry[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as LogEntry)
}

async function startLockServer (t: Test, extra: string[] = []): Promise<{ url: string, logFile: string, metricsUrl: string, credentials: TestCredentials, server: Awaited<ReturnType<typeof startNode>> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-shutdown-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const logFile = path.join(dir, 'logs', 'lock.log')
  const credentials = credentialsWithKeyFile(path.join(dir, 'secrets'))
  const server = await startNode(['bin/dfs-serve', 'lock', '--port', '0', '--state-dir', path.join(dir, 'state'), '--log', logFile, '--metrics', '127.0.0.1:0', '--cluster-key', credentials.keyFile, ...extra], /listening on /)
  t.teardown(async () => { await stopNode(server, 'SIGKILL') })
  const url = /listening on (http:\/\/\S+)/.exec(server.line)?.[1] as string
  const metricsUrl = entriesOf(logFile).map((e) => /metrics for Prometheus at (\S+)/.exec(e.msg)?.[1]).find((u) => u !== undefined) as string
  return { url, logFile, metricsUrl, credentials, server }
}

t.test('SIGTERM: a request waiting on the lock server gets its answer, then the server exits 0', async (t) => {
  const { url, logFile, metricsUrl, credentials, server } = await startLockServer(t)
  // Keys are a file server's to make: the test acts as one, then as a client.
  await new LockApi(new Transport('lock server', url, 5000, { credential: () => credentials.server })).createKeys(['/a.txt'])
  const lock = new LockApi(new Transport('lock server', url, 5000, credentials.caller))
  await lock.acquire({ path: '/a.txt', owner: 'first', ttlMs: 60_000 })
  // Waits on the server for up to 20 s: in flight when SIGTERM comes.
  const waiting = lock.acquire({ path: '/a.txt', owner: 'second', ttlMs: 60_000, waitMs: 20_000 })
  const settled = waiting.then(() => 'granted', (err: Error) => err.name)
  await waitFor('the acquire to wait on the server', async () => /^dfs_lock_waiters 1$/m.test(await (await fetch(metricsUrl)).text()))
  server.child.kill('SIGTERM')
  t.equal(await settled, 'LockedError', 'the waiter is told "locked" (and may retry elsewhere), not cut off')
  t.same(await server.exited, { code: 0, signal: null }, 'then the server exits 0')
  const messages = entriesOf(logFile).map((e) => e.msg)
  t.ok(messages.includes('SIGTERM: shutting down (requests in flight get up to 10 s)'), 'it logged the shutdown')
  t.equal(messages.at(-1), 'shut down', 'and its end')
})

t.test('--log writes JSON lines; SIGHUP reopens the file after logrotate moved it', async (t) => {
  const { url, logFile, credentials, server } = await startLockServer(t, ['--log-level', 'debug'])
  const first = entriesOf(logFile)
  const listening = first.find((e) => e.msg.includes('listening on'))
  t.ok(listening, 'the file has the lines standard output shows')
  t.equal(listening?.name, 'lock')
  t.equal(listening?.pid, server.child.pid)
  t.match(listening?.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  t.equal(listening?.level, 30, 'pino\'s info level')
  fs.renameSync(logFile, `${logFile}.1`)
  server.child.kill('SIGHUP')
  // Not only created (empty) but with its first line: an empty list would end the wait too soon.
  const reopened = await waitFor('the log file to be created again', async () => { const entries = fs.existsSync(logFile) ? entriesOf(logFile) : []; return entries.length > 0 && entries })
  t.equal(reopened[0].msg, 'SIGHUP: log file reopened', 'the new file starts with the reopen')
  t.notOk(entriesOf(`${logFile}.1`).some((e) => e.msg.includes('SIGHUP')), 'nothing more goes to the moved file')
  // At debug level each request is a line, with the request id the caller sent.
  const res = await fetch(`${url}/locks/release`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dfs-request-id': 'trace-7', authorization: `Bearer ${credentials.write}` }, body: '{"path":"/nope","credential":"1.AAAAAAAAAAAAAAAAAAAAAA"}' })
  t.equal(res.status, 404)
  const traced = await waitFor('the request\'s line', async () => entriesOf(logFile).find((e) => e.reqId === 'trace-7'))
  t.match(traced, { msg: 'POST /locks/release 404 ' + String(traced.msg.split(' ')[3]) + ' ms', route: '/locks/release', status: 404, level: 20 }, 'route, status and time, never the path')
  t.notMatch(JSON.stringify(entriesOf(logFile)), /\/nope/, 'the path asked for is not logged')
  t.same(await stopNode(server, 'SIGTERM'), { code: 0, signal: null }, 'the server is still up after SIGHUP, and ends on SIGTERM')
})
