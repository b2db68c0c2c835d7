import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { cleanEnv, runNode, startNode, stopNode } from './helpers/processes'
import type { Finished } from './helpers/processes'
import { rawGet } from './helpers/wire'

/** Runs `dfs ARGS` against the test cluster with a cache folder of its own. */
async function dfs (cluster: TestCluster, args: string[], input?: string): Promise<Finished> {
  return await runNode(['bin/dfs', ...args,
    '--directory', cluster.directory.url,
    '--lock', cluster.lock.url,
    '--cache-dir', path.join(cluster.workDir, 'cli-cache'),
    '--timeout-ms', '2000',
    '--lock-timeout-ms', '2000'
  ], { input, timeoutMs: 15_000, env: { ...cleanEnv(), DFS_TOKEN: cluster.credentials.write } })
}

t.test('dfs cat, append and ls against a running cluster', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'first\n' }, { 'logs/app.log': 'boot\n' }])

  // Independent commands run side by side (sharing one cache folder, as a user's shells do).
  const [cat, missing, folder, traversal, ls] = await Promise.all([
    dfs(cluster, ['cat', '/notes/todo.txt']),
    dfs(cluster, ['cat', '/x']),
    dfs(cluster, ['cat', '/notes']),
    dfs(cluster, ['cat', '/notes/../../etc/passwd']),
    dfs(cluster, ['ls', '/'])
  ])
  t.same(cat, { code: 0, signal: null, stdout: 'first\n', stderr: '' }, 'cat prints the file and nothing else')

  t.equal(missing.stderr, 'dfs: no such file: /x\n', 'an unknown path is one plain line')
  t.not(missing.code, 0, 'and a failure exit')
  t.equal(missing.stdout, '')
  t.not(folder.code, 0)
  t.equal(folder.stderr, 'dfs: is a folder: /notes\n')
  t.not(traversal.code, 0)
  t.match(traversal.stderr, /^dfs: path may not contain '\.\.'[^\n]*\n$/, 'a bad path is one line, no stack trace')
  t.equal(traversal.stdout, '')

  t.equal(ls.code, 0, ls.stderr)
  const lines = ls.stdout.trimEnd().split('\n')
  t.equal(lines.length, 2, 'one line per folder')
  t.match(lines[0], /^d .* logs\/$/)
  t.match(lines[1], /^d .* notes\/$/)

  const appended = await dfs(cluster, ['append', '/notes/todo.txt', 'second line'])
  t.equal(appended.code, 0, appended.stderr)
  t.match(appended.stderr, /^\/notes\/todo\.txt: version 2, 18 bytes\n$/)
  const piped = await dfs(cluster, ['append', '/notes/todo.txt'], 'from stdin\nkept as is')
  t.equal(piped.code, 0, piped.stderr)
  t.equal((await cluster.client().readFile('/notes/todo.txt')).toString(), 'first\nsecond line\nfrom stdin\nkept as is',
    'TEXT gets a newline, standard input goes in unchanged')

  const [catAgain, lsNotes] = await Promise.all([dfs(cluster, ['cat', '/notes/todo.txt']), dfs(cluster, ['ls', '/notes'])])
  t.equal(catAgain.stdout, 'first\nsecond line\nfrom stdin\nkept as is', 'cat sees both appends')
  t.match(lsNotes.stdout, /^- +39 +v3 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d todo\.txt\n$/, 'a file shows size, version and time')
})

t.test('dfs write, mv, truncate, rm, mkdir, rmdir and df change the cluster as the client proxy does', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'first\n' }, { 'logs/app.log': 'boot\n' }])
  const reader = cluster.client()
  const ok = async (args: string[], input?: string): Promise<Finished> => {
    const done = await dfs(cluster, args, input)
    t.equal(done.code, 0, `dfs ${args.join(' ')}: ${done.stderr}`)
    return done
  }
  await ok(['write', '/notes/new.txt', 'brand new'])
  t.equal((await reader.readFile('/notes/new.txt')).toString(), 'brand new\n', 'write creates a file')
  await ok(['write', '/notes/new.txt'], 'replaced')
  t.equal((await reader.readFile('/notes/new.txt')).toString(), 'replaced', 'write replaces it whole from standard input')
  await ok(['mv', '/notes/new.txt', '/logs/new.txt'])
  t.equal((await reader.lookup('/logs/new.txt')).server?.machineId, cluster.fileServers[1].machineId, 'mv moved it to the other file server')
  await ok(['truncate', '/logs/new.txt', '3'])
  t.equal((await reader.readFile('/logs/new.txt')).toString(), 'rep')
  const badSize = await dfs(cluster, ['truncate', '/logs/new.txt', 'abc'])
  t.not(badSize.code, 0)
  t.equal(badSize.stderr, 'dfs: size must be a whole number of bytes, 0 or more, not abc\n', 'a bad size is named as typed')
  await ok(['rm', '/logs/new.txt'])
  await t.rejects(reader.statFresh('/logs/new.txt'), { name: 'NotFoundError' })
  const again = await dfs(cluster, ['rm', '/logs/new.txt'])
  t.not(again.code, 0)
  t.equal(again.stderr, 'dfs: no such file: /logs/new.txt\n')
  await ok(['mkdir', '/empty'])
  t.equal((await reader.statFresh('/empty')).kind, 'dir')
  await ok(['rmdir', '/empty'])
  const notEmpty = await dfs(cluster, ['rmdir', '/notes'])
  t.not(notEmpty.code, 0)
  t.equal(notEmpty.stderr, 'dfs: /notes is not empty\n')
  const df = await ok(['df'])
  t.match(df.stdout, /^[\d.]+ GiB total, [\d.]+ GiB free on 2 file servers\n$/)
})

t.test('dfs with no command asks read or write, the file and the text', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/todo.txt': 'first\n' }])
  // Answers piped in all at once: each prompt must still get its own line.
  const read = await dfs(cluster, [], 'r\n/notes/todo.txt\n')
  t.equal(read.code, 0, read.stderr)
  t.equal(read.stdout, 'read or write? [r/w] file name (e.g. /notes/todo.txt): first\n')
  const write = await dfs(cluster, [], 'w\n/notes/todo.txt\nfrom the prompt\n')
  t.equal(write.code, 0, write.stderr)
  t.match(write.stdout, /appended to \/notes\/todo\.txt: now version 2, 22 bytes\n$/)
  t.equal((await cluster.client().readFile('/notes/todo.txt')).toString(), 'first\nfrom the prompt\n')
  const missing = await dfs(cluster, [], 'r\n/nope\n')
  t.not(missing.code, 0)
  t.equal(missing.stderr, 'dfs: no such file: /nope\n')
  const unanswered = await dfs(cluster, [], 'r\n')
  t.not(unanswered.code, 0, 'input that ends before the answers is an error, not a silent success')
  t.equal(unanswered.stderr, 'dfs: no answer given\n')
})

t.test('dfs-serve directory --port 0 picks a port and says which', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-cli-directory-'))
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }))
  const served = await startNode(['bin/dfs-serve', 'directory', '--port', '0', '--state-dir', stateDir, '--cluster-key', path.join(stateDir, 'cluster.key')], /listening on /)
  t.teardown(async () => { await stopNode(served, 'SIGKILL') })
  t.match(served.line, /directory server listening on http:\/\/127\.0\.0\.1:\d+ \(port 0: picked a free one\)/)
  const url = /listening on (http:\/\/\S+)/.exec(served.line)?.[1] as string
  t.not(new URL(url).port, '0')
  const health = await rawGet(url, '/health')
  t.equal(health.status, 200)
  t.equal(health.body.service, 'directory', 'a directory server answers on the logged port')
  t.same(await stopNode(served, 'SIGTERM'), { code: 0, signal: null }, 'SIGTERM shuts it down cleanly')
})
