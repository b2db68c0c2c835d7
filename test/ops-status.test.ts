import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import type { Browser, Page } from 'playwright-core'
import { LockApi } from '../src/shared/api'
import { Transport } from '../src/shared/transport'
import { startProcessCluster } from './helpers/processCluster'
import type { ProcessCluster, ServerProcess } from './helpers/processCluster'
import { cleanEnv, runNode } from './helpers/processes'
import type { Finished } from './helpers/processes'
import { waitFor } from './helpers/waitFor'
import { leaseCredentialOf } from '../src/shared/leaseCredential'

/*
 * The operator's view of a cluster: `dfs status` and the directory server's status page
 * (in Debian's chromium, driven by playwright-core), healthy and with a file server stopped.
 */

const CHROMIUM_CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter((p): p is string => p !== undefined && p !== '')
const chromiumPath = CHROMIUM_CANDIDATES.find((p) => fs.existsSync(p))
const NO_CHROMIUM = chromiumPath === undefined
  ? `no chromium at ${CHROMIUM_CANDIDATES.join(' or ')}: install Debian's (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH`
  : false

async function dfsStatus (cluster: ProcessCluster, extra: string[] = []): Promise<Finished> {
  return await runNode(['bin/dfs', 'status', '--directory', cluster.directory.url, '--timeout-ms', '3000', ...extra], { timeoutMs: 15_000, env: { ...cleanEnv(), DFS_TOKEN: cluster.credentials.read } })
}

/** The status page as an operator sees it: it asks for a token once (the cluster is secure), then shows the data. */
async function openPage (t: Test, url: string, token: string): Promise<Page> {
  const { chromium } = await import('playwright-core')
  const browser: Browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] })
  t.teardown(async () => await browser.close())
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } })
  await page.goto(url)
  await page.waitForSelector('#token-form', { state: 'visible' })
  await page.fill('#token', token)
  await page.press('#token', 'Enter')
  return page
}

t.test('the operator\'s view of a cluster, healthy and with a file server stopped', async (t) => {
  const cluster = await startProcessCluster(t, { trees: [{ 'notes/todo.txt': 'first\n' }, { 'logs/app.log': 'boot\n', 'logs/old.log': 'x\n' }] })
  const [first, second] = cluster.files as [ServerProcess, ServerProcess]
  await Promise.all(cluster.files.map(async (f) => await f.waitHealthy()))
  const lock = new LockApi(new Transport('lock server', cluster.lock.url, undefined, cluster.credentials.caller))
  const lease = await lock.acquire({ path: '/notes/todo.txt', owner: 'status-test', ttlMs: 120_000 })
  t.teardown(async () => { await lock.release('/notes/todo.txt', leaseCredentialOf(lease)).catch(() => {}) })
  const machineIdOf = async (server: ServerProcess): Promise<number> => Number((await server.waitHealthy()).machineId)
  const secondId = await machineIdOf(second)
  const firstId = await machineIdOf(first)

  await t.test('dfs status: a healthy cluster', async (t) => {
    const status = await dfsStatus(cluster)
    t.equal(status.code, 0, status.stderr)
    t.equal(status.stderr, '')
    const lines = status.stdout.split('\n')
    t.equal(lines[0], 'file servers (2 of 2 up)')
    t.match(lines[1], /^ {2}ID +STATE +ADDRESS +FREE +SIZE +FILES +CLIENTS +LAST HEARTBEAT$/)
    t.match(status.stdout, new RegExp(`\\n  ${firstId} +up +${first.url} +[\\d.]+ [KMGT]iB +[\\d.]+ [KMGT]iB +1 +0 +\\d+\\.\\d s ago\\n`), 'the first server: up, its space, its one file')
    t.match(status.stdout, new RegExp(`\\n  ${secondId} +up +${second.url} +[\\d.]+ [KMGT]iB +[\\d.]+ [KMGT]iB +2 +0 +\\d+\\.\\d s ago\\n`), 'the second: its two files')
    t.match(status.stdout, /\nlocks held \(1\)\n {2}PATH +HOLDER +AGE +EXPIRES IN\n {2}\/notes\/todo\.txt +tester \(status-test\) +\d+\.\d s +\d+(\.\d s| min)\n/, 'the lock the test holds, with its holder and age')
    const json = await dfsStatus(cluster, ['--json'])
    t.equal(json.code, 0)
    const parsed = JSON.parse(json.stdout) as { servers: Array<{ state: string }>, locks: Array<{ path: string, holder: string }> }
    t.same(parsed.servers.map((s) => s.state), ['up', 'up'])
    t.same(parsed.locks.map((l) => [l.path, l.holder]), [['/notes/todo.txt', 'tester (status-test)']], '--json gives the same facts to scripts')
  })

  await t.test('the status page lists the servers and the lock held', { skip: NO_CHROMIUM }, async (t) => {
    const page = await openPage(t, `${cluster.directory.url}/status`, cluster.credentials.read)
    await page.waitForSelector(`#servers tr[data-machine-id="${secondId}"] td.state-up`)
    const rows = await page.$$eval('#servers tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)))
    t.same(rows.map((r) => [r[0], r[1], r[2], r[5]]), [[String(firstId), 'up', first.url, '1'], [String(secondId), 'up', second.url, '2']], 'both servers, up, with their files')
    await page.waitForSelector('#locks tr[data-path="/notes/todo.txt"]')
    const lockRow = await page.$$eval('#locks tr[data-path="/notes/todo.txt"] td', (tds) => tds.map((td) => td.textContent))
    t.same(lockRow.slice(0, 2), ['/notes/todo.txt', 'tester (status-test)'], 'the lock the test holds, with its holder: the token\'s subject and the owner it named')
    t.equal(await page.textContent('#banner'), 'All 2 file servers are up.')
  })

  // A hang, not a clean exit: the server stops answering and its heartbeats stop.
  await second.stop()
  await waitFor('the directory server to mark the stopped server down', async () => {
    const res = await fetch(`${cluster.directory.url}/servers`, { headers: { authorization: `Bearer ${cluster.credentials.read}` } })
    const { servers } = await res.json() as { servers: Array<{ machineId: number, state: string }> }
    return servers.find((s) => s.machineId === secondId)?.state === 'down'
  }, 20_000, 100)

  await t.test('dfs status: a server down is shown, and exits 2', async (t) => {
    const status = await dfsStatus(cluster)
    t.equal(status.code, 2, 'exit status 2: the cluster answered, a server is down')
    t.equal(status.stderr, `dfs: file server ${secondId} at ${second.url} is down\n`, 'one line says what is wrong')
    t.match(status.stdout, /^file servers \(1 of 2 up\)\n/)
    t.match(status.stdout, new RegExp(`\\n  ${secondId} +down +${second.url} +- +- +2 +- +\\d+\\.\\d s ago\\n`), 'its row: down, no space known, its files still mapped')
    t.match(status.stdout, new RegExp(`\\nlatest problems\\n.*file server ${secondId} at ${second.url.replace(/\./g, '\\.')} is down`), 'the problem is listed')
  })

  await t.test('the status page shows the stopped server as down', { skip: NO_CHROMIUM }, async (t) => {
    const page = await openPage(t, `${cluster.directory.url}/status`, cluster.credentials.read)
    await page.waitForSelector(`#servers tr[data-machine-id="${secondId}"] td.state-down`, { timeout: 20_000 })
    t.equal(await page.textContent(`#servers tr[data-machine-id="${firstId}"] td.state`), 'up', 'the other is still up')
    t.equal(await page.textContent('#banner'), `file server ${secondId} is down.`)
    t.match(await page.textContent('#problems tbody'), new RegExp(`file server ${secondId} at .* is down`), 'the latest problems name it')
    // For the README: DFS_STATUS_SCREENSHOT=docs/status.png npx tap dist/test/ops-status.test.js
    const shot = process.env.DFS_STATUS_SCREENSHOT
    if (shot !== undefined && shot !== '') await page.screenshot({ path: path.resolve(shot), fullPage: true })
  })
  await second.cont()
})

t.test('dfs status without a directory server: one line and exit 1', async (t) => {
  const status = await runNode(['bin/dfs', 'status', '--directory', 'http://127.0.0.1:1', '--timeout-ms', '2000'], { timeoutMs: 15_000 })
  t.equal(status.code, 1, 'exit 1: the cluster could not be asked (2 is for a cluster that answered with a server down)')
  t.match(status.stderr, /^dfs: directory server at 127\.0\.0\.1:1 is not answering[^\n]*\n$/)
  t.equal(status.stdout, '')
})
