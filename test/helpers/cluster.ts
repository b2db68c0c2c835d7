import fs from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { DfsClient } from '../../src/client/dfsClient'
import type { DfsClientOptions } from '../../src/client/dfsClient'
import { startCluster } from '../../servers/cluster'
import type { ClusterOptions, RunningCluster } from '../../servers/cluster'
import { newCredentials, noteCaller } from './credentials'
import { waitFor } from './waitFor'
import type { TestCredentials } from './credentials'

export interface TestCluster extends RunningCluster {
  /** Folder holding this test's roots and cache folders; removed at teardown. */
  workDir: string
  roots: string[]
  /** The cluster key and tokens of it; clients of client() send `credentials.write`. */
  credentials: TestCredentials
  /** A client with a cache folder of its own. */
  client: (opts?: DfsClientOptions) => DfsClient
}

/** Writes a tree given as { 'folder/file.txt': 'content' } under root. */
export function writeTree (root: string, tree: Record<string, string>): void {
  for (const [file, content] of Object.entries(tree)) {
    fs.mkdirSync(path.join(root, path.dirname(file)), { recursive: true })
    fs.writeFileSync(path.join(root, file), content)
  }
}

/**
 * Starts a real cluster on 127.0.0.1 with free ports, one file server per tree, and stops
 * it and removes its files when the test ends, failed or not. Secure, with a fresh cluster
 * key: its clients carry a write token (see TestCluster.credentials). `rootsIn`: a folder to
 * make the roots in (a small disk of the test's), instead of the test's work folder.
 */
export async function startTestCluster (t: Test, trees: Array<Record<string, string>>, opts: Partial<ClusterOptions> = {}, where: { rootsIn?: string } = {}): Promise<TestCluster> {
  const workDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-test-'))
  const roots = trees.map((tree, i) => {
    const root = path.join(where.rootsIn ?? workDir, `root-${i + 1}`)
    fs.mkdirSync(root, { recursive: true })
    writeTree(root, tree)
    return root
  })
  const credentials = newCredentials(opts.auth?.key)
  const cluster = await startCluster({ roots, directoryPort: 0, lockPort: 0, firstFilePort: 0, auth: { key: credentials.key }, ...opts })
  for (const server of cluster.fileServers) noteCaller(server, credentials.caller)
  let clients = 0
  t.teardown(async () => {
    await cluster.close()
    // A client a test left open may still write its cache's index there for a moment (ENOTEMPTY): asked again.
    await fsp.rm(workDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
  })
  return {
    ...cluster,
    workDir,
    roots,
    credentials,
    client: (clientOpts = {}) => new DfsClient({
      directoryUrl: cluster.directory.url,
      lockUrl: cluster.lock.url,
      cacheDir: path.join(workDir, `cache-${++clients}`),
      timeoutMs: 2000,
      caller: credentials.caller,
      ...clientOpts
    })
  }
}

/**
 * A client holding callbacks, as a mount's, closed at the end of the test, once its event
 * channel is up: reads `warmPath` until a callback is promised (the channel opens in the
 * background at the first request).
 */
export async function callbackClient (t: Test, cluster: TestCluster, warmPath: string): Promise<DfsClient> {
  const client = cluster.client({ callbacks: true })
  t.teardown(() => client.close())
  await waitFor('a callback', async () => {
    await client.readFile(warmPath)
    return client.callbackCount > 0
  }, 5000, 20)
  return client
}
