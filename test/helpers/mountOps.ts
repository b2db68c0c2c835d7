import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { startFileServer } from '../../servers/file/server'
import { noteCaller } from './credentials'
import type { RunningFileServer } from '../../servers/file/server'
import type { TestCluster } from './cluster'
import { outcome, run } from './mount'
import type { Finished } from './processes'
import { waitFor } from './waitFor'
import { statsOf } from './wire'

/**
 * The lines a mount's log (--log FILE --log-level debug) has so far for operation `op` on
 * `file` (a dfs path), one per operation; each message ends with the operation's result.
 */
export async function operationLines (log: string, op: string, file: string): Promise<string[]> {
  const text = await fsp.readFile(log, 'utf8').catch(() => '')
  return text.split('\n').filter((line) => line.includes(`"op":"${op}"`) && line.includes(`"msg":"${op} ${file} `))
}

/** Quotes a path for sh -c. */
export const quoted = (file: string): string => `'${file.replace(/'/g, `'\\''`)}'`

/** A fresh local (not mounted) temp folder, removed when the test ends. */
export async function localTempDir (t: Test): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-local-'))
  t.teardown(async () => await fsp.rm(dir, { recursive: true, force: true }))
  return dir
}

/** sha256 of a local file (never one on a mount: the test process does no I/O there), streamed. */
export async function sha256OfFile (file: string): Promise<string> {
  const hash = crypto.createHash('sha256')
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Asserts that a command exited 0, showing what it printed otherwise. */
export function succeeded (t: Test, result: Finished, what: string): boolean {
  return t.equal(result.code, 0, `${what}: ${result.code === 0 ? 'ok' : outcome(result)}`)
}

/**
 * Starts file server `index` of a test cluster again on its old root and port, after the
 * test closed it; stopped when the test ends.
 */
export async function restartFileServer (t: Test, cluster: TestCluster, index: number): Promise<RunningFileServer> {
  const down = cluster.fileServers[index]
  const restarted = await startFileServer({ root: cluster.roots[index], port: down.port, directoryUrl: cluster.directory.url, lockUrl: cluster.lock.url, auth: { key: cluster.credentials.key } })
  noteCaller(restarted, cluster.credentials.caller)
  t.teardown(async () => await restarted.close())
  return restarted
}

/**
 * Reads `file` (through a mount) until it holds `expected` and the file server has promised
 * a callback: the mount's event channel opens at its first request, so the first reads may
 * come before it. The mount must be the first to read anything on that server.
 */
export async function readUntilCallbackGranted (file: string, server: { url: string }, expected: string): Promise<void> {
  await waitFor('a callback promised to the mount', async () => {
    const cat = await run('cat', [file])
    if (cat.stdout !== expected) throw new Error(outcome(cat))
    return (await statsOf(server)).callbacksGranted > 0
  }, 10_000, 100)
}
