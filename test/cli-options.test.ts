import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { findFusermount } from '../src/fuse/loadFuse'
import { dfsMountBin, dfsUmountBin, mountPlace, outcome, run, runCli } from './helpers/mount'
import { cleanEnv, runNode, startNode, stopNode } from './helpers/processes'
import type { Finished } from './helpers/processes'
import { closedPort } from './helpers/ports'
import { credentialsWithKeyFile } from './helpers/credentials'

/** A cluster key in `work` for the servers (DFS_CLUSTER_KEY), and a file with a client token of it (DFS_TOKEN_FILE). */
function secrets (work: string): { keyFile: string, tokenFile: string } {
  const { keyFile, write } = credentialsWithKeyFile(path.join(work, 'secrets'))
  const tokenFile = path.join(work, 'secrets', 'token')
  fs.writeFileSync(tokenFile, write + '\n', { mode: 0o600 })
  return { keyFile, tokenFile }
}

/*
 * Each CLI reads the DFS_* variables of its own options and no others: a variable exported
 * for one command (DFS_DIRECTORY for dfs, as the README suggests) must not break another
 * (dfs-serve directory has no --directory and used to fail with "Unknown argument").
 */


async function tempDir (t: Test, prefix: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix))
  t.teardown(async () => await fsp.rm(dir, { recursive: true, force: true }))
  return dir
}

/** The variables a user sets up for dfs and dfs-mount, all of them. */
function clientVariables (directoryUrl: string, lockUrl: string, cacheDir: string): NodeJS.ProcessEnv {
  return { DFS_DIRECTORY: directoryUrl, DFS_LOCK: lockUrl, DFS_CACHE_DIR: cacheDir, DFS_TIMEOUT_MS: '2000', DFS_LOCK_TIMEOUT_MS: '2000', DFS_LOG: '/nonexistent/dfs.log' }
}

/** The variables of dfs-serve's servers, set to values that would break a client reading them. */
function serverVariables (root: string): NodeJS.ProcessEnv {
  return { DFS_PORT: '1', DFS_HOST: '203.0.113.1', DFS_ROOT: root, DFS_LEASE_MS: 'not a number', DFS_PUBLIC_URL: 'http://127.0.0.1:1', DFS_DATA_DIR: '/nonexistent' }
}

/** A CLI failure as a user should see it: one line naming the command, no stack, non-zero exit. */
function assertOneLineError (t: Test, result: Finished, command: string, says: RegExp): void {
  t.not(result.code, 0, `${command} exits non-zero (${outcome(result)})`)
  t.match(result.stderr, new RegExp(`^${command}: [^\\n]*\\n$`), `one line naming ${command}`)
  t.match(result.stderr, says)
}

t.test('dfs-serve servers start with the variables of dfs and dfs-mount set; dfs reads only its own', async (t) => {
  const work = await tempDir(t, 'dfs-cli-options-')
  const root = path.join(work, 'root')
  await fsp.mkdir(path.join(root, 'notes'), { recursive: true })
  await fsp.writeFile(path.join(root, 'notes', 'todo.txt'), 'first\n')
  const refusing = `http://127.0.0.1:${await closedPort()}`
  // Nothing listens at these: a server that read them as its own options would fail to start or to register.
  const strayClient = clientVariables(refusing, refusing, path.join(work, 'stray-cache'))
  const { keyFile, tokenFile } = secrets(work)
  const key = { DFS_CLUSTER_KEY: keyFile }

  const directory = await startNode(['bin/dfs-serve', 'directory', '--port', '0', '--state-dir', path.join(work, 'directory-state')], /listening on (http:\S+)/, 15_000, { ...cleanEnv(), ...strayClient, ...key })
  t.teardown(async () => { await stopNode(directory) })
  t.pass('dfs-serve directory listens with DFS_DIRECTORY, DFS_LOCK and DFS_CACHE_DIR set')
  // Its own variable, DFS_STATE_DIR, it does read: the state stays in this test's folder.
  const lockStateDir = path.join(work, 'lock-state')
  const lock = await startNode(['bin/dfs-serve', 'lock', '--port', '0'], /listening on (http:\S+)/, 15_000, { ...cleanEnv(), ...strayClient, ...key, DFS_STATE_DIR: lockStateDir })
  t.teardown(async () => { await stopNode(lock) })
  t.pass('so does dfs-serve lock')
  t.ok(fs.existsSync(path.join(lockStateDir, 'locks.journal')), 'which keeps its journal in DFS_STATE_DIR')
  const directoryUrl = (/listening on (http:\S+)/.exec(directory.line) as RegExpExecArray)[1]
  const lockUrl = (/listening on (http:\S+)/.exec(lock.line) as RegExpExecArray)[1]

  // The file server does take --directory, --lock and --root: from the same variables dfs reads.
  const client = { ...clientVariables(directoryUrl, lockUrl, path.join(work, 'cache')), DFS_TOKEN_FILE: tokenFile }
  const file = await startNode(['bin/dfs-serve', 'file', '--port', '0'], /listening on/, 15_000, { ...cleanEnv(), ...client, ...key, DFS_ROOT: root })
  t.teardown(async () => { await stopNode(file) })
  t.pass('dfs-serve file listens with DFS_CACHE_DIR set, and takes its root from DFS_ROOT')

  const ls = await runNode(['bin/dfs', 'ls', '/notes'], { env: { ...cleanEnv(), ...client, ...serverVariables(root) } })
  t.equal(ls.code, 0, `dfs ls finds the cluster through DFS_DIRECTORY, whatever the server variables say (${outcome(ls)})`)
  t.match(ls.stdout, /todo\.txt\n$/)

  const misdirected = await runNode(['bin/dfs', 'ls', '/'], { env: { ...cleanEnv(), ...client, DFS_DIRECTORY: refusing } })
  assertOneLineError(t, misdirected, 'dfs', new RegExp(`directory server at ${refusing.slice('http://'.length)} is not answering`))
  const overridden = await runNode(['bin/dfs', 'ls', '/notes', '--directory', directoryUrl], { env: { ...cleanEnv(), ...client, DFS_DIRECTORY: refusing } })
  t.equal(overridden.code, 0, `the command line wins over DFS_DIRECTORY (${outcome(overridden)})`)

  const badNumber = await runNode(['bin/dfs', 'ls', '/'], { env: { ...cleanEnv(), ...client, DFS_TIMEOUT_MS: 'soon' } })
  assertOneLineError(t, badNumber, 'dfs', /DFS_TIMEOUT_MS must be a number, not "soon"/)
})

t.test('--help names the variables each command reads, and only those', async (t) => {
  const env = { ...cleanEnv(), DFS_DIRECTORY: 'http://example.invalid:7070' }
  const helps = await Promise.all([
    runNode(['bin/dfs', '--help'], { env }),
    runNode([dfsMountBin, '--help'], { env }),
    runNode(['bin/dfs-serve', 'directory', '--help'], { env }),
    runNode(['bin/dfs-serve', 'lock', '--help'], { env }),
    runNode(['bin/dfs-serve', 'file', '--help'], { env }),
    runNode(['bin/dfs-serve', 'demo', '--help'], { env })
  ])
  for (const help of helps) t.equal(help.code, 0, outcome(help))
  const [dfs, mount, directory, lock, file, demo] = helps.map((help) => help.stdout)
  for (const [command, text] of [['dfs', dfs], ['dfs-mount', mount]]) {
    for (const variable of ['DFS_DIRECTORY', 'DFS_LOCK', 'DFS_CACHE_DIR', 'DFS_TIMEOUT_MS', 'DFS_LOCK_TIMEOUT_MS']) t.match(text, variable, `${command} --help names ${variable}`)
    t.match(text, 'http://example.invalid:7070 (from DFS_DIRECTORY)', `${command} --help shows the value DFS_DIRECTORY gives`)
    t.notMatch(text, /DFS_PORT|DFS_ROOT/, `${command} --help names no server variable`)
  }
  t.match(mount, 'DFS_LOG')
  t.match(mount, 'DFS_READ_WAIT_MS')
  t.notMatch(mount, 'DFS_FOREGROUND', 'a switch comes from the command line only')
  for (const [command, text] of [['directory', directory], ['lock', lock]]) {
    t.match(text, /DFS_PORT[\s\S]*DFS_HOST/, `dfs-serve ${command} --help names DFS_PORT and DFS_HOST`)
    t.notMatch(text, /DFS_DIRECTORY|DFS_CACHE_DIR/, `dfs-serve ${command} --help names no client variable`)
  }
  t.match(lock, 'DFS_LEASE_MS')
  t.match(lock, 'DFS_STATE_DIR')
  for (const variable of ['DFS_ROOT', 'DFS_PORT', 'DFS_HOST', 'DFS_DIRECTORY', 'DFS_LOCK', 'DFS_PUBLIC_URL']) t.match(file, variable, `dfs-serve file --help names ${variable}`)
  t.notMatch(file, 'DFS_CACHE_DIR')
  for (const variable of ['DFS_DATA_DIR', 'DFS_DIRECTORY_PORT', 'DFS_LOCK_PORT', 'DFS_FILE_PORT', 'DFS_LEASE_MS']) t.match(demo, variable, `dfs-serve demo --help names ${variable}`)
  t.notMatch(demo, /DFS_DIRECTORY\b|DFS_PORT|DFS_STOP|DFS_DETACH/)
})

const fuseMissing = !fs.existsSync('/dev/fuse') || !findFusermount()

t.test('dfs-mount refuses a read wait that is no number of milliseconds, in one line, before it mounts', async (t) => {
  const work = await tempDir(t, 'dfs-cli-readwait-')
  for (const given of [['--read-wait-ms', 'soon'], ['--read-wait-ms', '-1']]) {
    const refused = await runNode([dfsMountBin, ...given, path.join(work, 'mnt')], { env: cleanEnv() })
    assertOneLineError(t, refused, 'dfs-mount', /--read-wait-ms must be a number of milliseconds/)
  }
  const fromEnv = await runNode([dfsMountBin, path.join(work, 'mnt')], { env: { ...cleanEnv(), DFS_READ_WAIT_MS: 'later' } })
  assertOneLineError(t, fromEnv, 'dfs-mount', /DFS_READ_WAIT_MS must be a number, not "later"/)
  for (const size of ['lots', '0', '2X', '-1M']) {
    const refused = await runNode([dfsMountBin, path.join(work, 'mnt'), `--cache-max-size=${size}`], { env: cleanEnv() })
    assertOneLineError(t, refused, 'dfs-mount', new RegExp(`--cache-max-size must be a size such as 500M, 2G or a number of bytes, more than 0, not ${size}`))
  }
  const cli = await runNode([path.join(path.dirname(dfsMountBin), 'dfs'), 'ls', '/', '--cache-max-size', '1.5Q'], { env: cleanEnv() })
  assertOneLineError(t, cli, 'dfs', /--cache-max-size must be a size/)
})

t.test('an option that takes one value, given twice, is refused in one line by every CLI; -o may be given often', async (t) => {
  const work = await tempDir(t, 'dfs-cli-twice-')
  const bins = path.dirname(dfsMountBin)
  const twice: Array<[string, string[], RegExp]> = [
    ['dfs-mount', [dfsMountBin, path.join(work, 'mnt'), '--cache-dir', 'a', '--cache-dir', 'b'], /--cache-dir was given 2 times \(a, b\): give it once/],
    ['dfs', [path.join(bins, 'dfs'), 'ls', '/', '--timeout-ms', '1', '--timeout-ms', '2'], /--timeout-ms was given 2 times \(1, 2\): give it once/],
    ['dfs-serve', [path.join(bins, 'dfs-serve'), 'lock', '--port', '0', '--insecure', '--state-dir', path.join(work, 'a'), '--state-dir', path.join(work, 'b')], /--state-dir was given 2 times \(.*\/a, .*\/b\): give it once/]
  ]
  for (const [name, args, message] of twice) {
    assertOneLineError(t, await runNode(args, { env: cleanEnv() }), name, message)
  }
  // A list option: both -o go through to the mount's own checks (here: no such mount point).
  const flags = await runNode([dfsMountBin, path.join(work, 'missing'), '-o', 'ro', '-o', 'noatime'], { env: cleanEnv() })
  assertOneLineError(t, flags, 'dfs-mount', /mount point .* does not exist/)
})

t.test('dfs-mount finds the cluster through DFS_DIRECTORY, whatever the server variables say', { skip: fuseMissing && 'no FUSE here' }, async (t) => {
  const work = await tempDir(t, 'dfs-cli-options-mount-')
  const root = path.join(work, 'root')
  await fsp.mkdir(path.join(root, 'notes'), { recursive: true })
  await fsp.writeFile(path.join(root, 'notes', 'todo.txt'), 'first\n')
  const refusing = `http://127.0.0.1:${await closedPort()}`
  const { keyFile, tokenFile } = secrets(work)
  const directory = await startNode(['bin/dfs-serve', 'directory', '--port', '0', '--state-dir', path.join(work, 'directory-state'), '--cluster-key', keyFile], /listening on (http:\S+)/)
  t.teardown(async () => { await stopNode(directory) })
  const lock = await startNode(['bin/dfs-serve', 'lock', '--port', '0', '--state-dir', path.join(work, 'lock-state'), '--cluster-key', keyFile], /listening on (http:\S+)/)
  t.teardown(async () => { await stopNode(lock) })
  const directoryUrl = (/listening on (http:\S+)/.exec(directory.line) as RegExpExecArray)[1]
  const lockUrl = (/listening on (http:\S+)/.exec(lock.line) as RegExpExecArray)[1]
  const file = await startNode(['bin/dfs-serve', 'file', '--port', '0', '--root', root, '--directory', directoryUrl, '--lock', lockUrl, '--cluster-key', keyFile], /listening on/)
  t.teardown(async () => { await stopNode(file) })

  // mountPlace unmounts (fusermount -u -z) whatever is still mounted at teardown.
  const place = await mountPlace(t)
  const client = { DFS_DIRECTORY: directoryUrl, DFS_LOCK: lockUrl, DFS_CACHE_DIR: place.cacheDir, DFS_TOKEN_FILE: tokenFile }

  const misdirected = await runCli(dfsMountBin, [place.mountpoint], { env: { ...place.env, ...client, DFS_DIRECTORY: refusing } })
  assertOneLineError(t, misdirected, 'dfs-mount', new RegExp(`directory server at ${refusing.slice('http://'.length)} is not answering`))

  const mounted = await runCli(dfsMountBin, [place.mountpoint], { env: { ...place.env, ...client, ...serverVariables(root) } })
  t.equal(mounted.code, 0, `dfs-mount mounts with the server variables set (${outcome(mounted)})`)
  const listed = await run('ls', [path.join(place.mountpoint, 'notes')], { env: place.env })
  t.equal(listed.stdout, 'todo.txt\n', `the mount shows the cluster DFS_DIRECTORY names (${outcome(listed)})`)
  const unmounted = await runCli(dfsUmountBin, [place.mountpoint], { env: place.env })
  t.equal(unmounted.code, 0, outcome(unmounted))
})
