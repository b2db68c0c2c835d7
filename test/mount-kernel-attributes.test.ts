import fsp from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'
import type { TestMount } from './helpers/mount'
import { operationLines, readUntilCallbackGranted } from './helpers/mountOps'

/*
 * The kernel keeps a file's attributes while the mount holds the file's callback (operations.ts,
 * kernelKeepsFor): a stat run again makes no FUSE round trip. Another mount's change breaks
 * the callback before it completes, and the mount has the kernel drop what it kept first, so
 * what that change did shows at once. Python runs the programs (child processes: the test
 * process never touches a mount).
 */

/** A mount whose log has a line per file system operation (debug), to count them. */
async function tracedMount (t: Test, cluster: TestCluster): Promise<{ mount: TestMount, log: string }> {
  const dir = await fsp.mkdtemp(path.join(cluster.roots[0], '..', 'log-'))
  const log = path.join(dir, 'mount.log')
  const mount = await mountCluster(t, cluster, ['--log', log, '--log-level', 'debug'])
  return { mount, log }
}

/** The operations the mount's log names for `op` on `file` so far. */
async function operationsOn (log: string, op: string, file: string): Promise<number> {
  return (await operationLines(log, op, file)).length
}

/** Runs a python3 program; its output, the test failing with what it printed otherwise. */
async function python (t: Test, program: string, what: string): Promise<string> {
  const result = await run('python3', ['-c', program], { timeoutMs: 60_000 })
  t.equal(result.code, 0, `${what} (${outcome(result)})`)
  return result.stdout.trim()
}

t.test('stat again of a file this mount holds a callback on is answered by the kernel', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/a.txt': 'alpha\n' }])
  const { mount, log } = await tracedMount(t, cluster)
  await readUntilCallbackGranted(mount.at('/notes/a.txt'), cluster.fileServers[0], 'alpha\n')
  const before = await operationsOn(log, 'getattr', '/notes/a.txt')
  await python(t, `import os
for i in range(20): os.stat(${JSON.stringify(mount.at('/notes/a.txt'))})
`, 'twenty stats in a row')
  const asked = await operationsOn(log, 'getattr', '/notes/a.txt') - before
  t.ok(asked <= 2, `the mount was asked ${asked} times for the attributes of twenty stats`)
})

t.test('another mount\'s change shows at once in a stat here, though the kernel kept the attributes', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/a.txt': 'alpha\n', 'notes/b.txt': 'beta\n', 'notes/c.txt': 'gamma\n' }])
  const here = await mountCluster(t, cluster)
  const there = await mountCluster(t, cluster)
  await readUntilCallbackGranted(here.at('/notes/a.txt'), cluster.fileServers[0], 'alpha\n')
  const a = JSON.stringify(here.at('/notes/a.txt'))
  const said = await python(t, `import os
a, b = ${a}, ${JSON.stringify(there.at('/notes/a.txt'))}
stale = []
for i in range(100):
    size = os.stat(a).st_size
    os.stat(a)
    with open(b, 'a') as f: f.write('x')
    now = os.stat(a).st_size
    if now != size + 1: stale.append((i, size, now))
    with open(a) as f:
        if len(f.read()) != size + 1: stale.append((i, 'read'))
os.stat(${JSON.stringify(here.at('/notes/b.txt'))}); os.stat(${JSON.stringify(here.at('/notes/c.txt'))})
os.chmod(${JSON.stringify(there.at('/notes/b.txt'))}, 0o600)
print(oct(os.stat(${JSON.stringify(here.at('/notes/b.txt'))}).st_mode & 0o777))
os.unlink(${JSON.stringify(there.at('/notes/c.txt'))})
print(os.path.exists(${JSON.stringify(here.at('/notes/c.txt'))}))
print(stale)
`, 'a hundred appends on the other mount, each stat here after it, then a chmod and a removal there')
  t.equal(said, '0o600\nFalse\n[]', 'every size, the mode and the removal show at once')
})

t.test('fusermount -u while the kernel keeps attributes, then changes from another mount: the mount exits cleanly', async (t) => {
  // A callback that ends once the FUSE loop has ended (another mount's change breaks it, in
  // the up to 2 s before the mount notices it was unmounted) asks for an invalidation: one
  // that wrote through the channel the loop had freed crashed the daemon (SIGSEGV).
  const files = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`many/f${i}.txt`, `${i}\n`]))
  const cluster = await startTestCluster(t, [files])
  const mount = await mountCluster(t, cluster)
  const other = await mountCluster(t, cluster)
  await readUntilCallbackGranted(mount.at('/many/f0.txt'), cluster.fileServers[0], '0\n')
  await python(t, `import os, subprocess
for i in range(50): os.stat(os.path.join(${JSON.stringify(mount.at('/many'))}, f"f{i}.txt"))
subprocess.run(["fusermount", "-u", ${JSON.stringify(mount.mountpoint)}], check=True)
for i in range(50):
    with open(os.path.join(${JSON.stringify(other.at('/many'))}, f"f{i}.txt"), "a") as f: f.write("more\\n")
`, 'a stat of each file here, fusermount -u, an append to each on the other mount')
  await mount.exited
  t.equal(mount.daemon.signalCode, null, `the daemon was not killed by a signal: ${mount.output().slice(-2000)}`)
  t.equal(mount.daemon.exitCode, 0, 'and exited with 0')
})
