import os from 'node:os'
import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'

/*
 * mmap(MAP_SHARED) of files opened for reading and writing (numpy.memmap, LMDB and bbolt,
 * sqlite's mmap_size). Such handles bypass the page cache (direct_io), whose shared mappings
 * the kernel refuses (ENODEV) unless the file system allows them at INIT; the patched binding
 * does. A lock taken after another mount changed the file drops the pages mapped before.
 * Python runs each program (a child process: the test process never touches the mount).
 */

/**
 * Whether this kernel lets a file system allow shared mappings of direct_io handles
 * (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6); older ones refuse them with ENODEV, as the README says.
 */
function kernelAllowsDirectIoMmap (): boolean {
  const [major, minor] = os.release().split('.').map((part) => parseInt(part, 10))
  return major > 6 || (major === 6 && minor >= 6)
}
const NEEDS_KERNEL_6_6 = kernelAllowsDirectIoMmap() ? {} : { skip: `Linux ${os.release()} refuses shared mappings of direct_io handles (6.6 allows them)` }

/** Runs a python3 program; its output, the test failing with what it printed otherwise. */
async function python (t: Test, program: string, what: string): Promise<string> {
  const result = await run('python3', ['-c', program], { timeoutMs: 60_000 })
  t.equal(result.code, 0, `${what} (${outcome(result)})`)
  return result.stdout.trim()
}

t.test('a shared mapping of a file opened for reading and writing: its writes are stored, and it agrees with read and write', NEEDS_KERNEL_6_6, async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/.keep': '' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const file = a.at('/data/map.bin')
  // As numpy.memmap(mode='r+') does: open read-write, map shared, close the file, write
  // through the mapping, unmap later.
  const said = await python(t, `import mmap, os
p = ${JSON.stringify(file)}
with open(p, 'wb') as f: f.write(b'.' * 100000)
f = open(p, 'r+b')
m = mmap.mmap(f.fileno(), 0)
f.close()
m[0:5] = b'first'
m[70000:70004] = b'deep'
m.close()
fd = os.open(p, os.O_RDWR)
m = mmap.mmap(fd, 0)
os.pwrite(fd, b'PWRITE', 10)
print(m[10:16].decode())
m[20:23] = b'MAP'
print(os.pread(fd, 3, 20).decode())
m.close()
ro = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
print(ro[0:5].decode())
ro.close()
os.close(fd)
`, 'the program maps the file shared, writes through the mapping and through the file')
  t.equal(said, 'PWRITE\nMAP\nfirst', 'the mapping sees write(), read() sees the mapping, a read-only shared mapping works')
  const stored = await cluster.client().readFile('/data/map.bin')
  t.equal(stored.length, 100000)
  t.equal(stored.subarray(0, 23).toString('latin1'), 'first.....PWRITE....MAP', 'the servers hold what went through the mapping')
  t.equal(stored.subarray(70000, 70004).toString('latin1'), 'deep', 'including a page written after the file was closed')
  const other = await python(t, `import mmap
with open(${JSON.stringify(b.at('/data/map.bin'))}, 'r+b') as f:
    m = mmap.mmap(f.fileno(), 0)
    print(m[0:5].decode(), m[70000:70004].decode())
    m.close()
`, 'the other mount maps the file too')
  t.equal(other, 'first deep')
})

t.test('a mapping made before another mount changed the file reads the change once this mount takes a lock', NEEDS_KERNEL_6_6, async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/shared.bin': 'A'.repeat(8192) }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  // The other mount's change, made under its own lock of the given kind.
  const change = (lock: 'fcntl' | 'flock', bytes: string): string => `import os, fcntl
fd = os.open(${JSON.stringify(b.at('/data/shared.bin'))}, os.O_RDWR)
${lock === 'fcntl' ? 'fcntl.lockf(fd, fcntl.LOCK_EX)' : 'fcntl.flock(fd, fcntl.LOCK_EX)'}
os.pwrite(fd, b'${bytes}', 0)
os.pwrite(fd, b'${bytes}', 6000)
os.fsync(fd)
os.close(fd)
`
  const said = await python(t, `import mmap, os, fcntl, subprocess
fd = os.open(${JSON.stringify(a.at('/data/shared.bin'))}, os.O_RDWR)
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
print(m[0:4].decode(), m[6000:6004].decode())
subprocess.run(['python3', '-c', ${JSON.stringify(change('fcntl', 'BBBB'))}], check=True)
fcntl.lockf(fd, fcntl.LOCK_SH)
print(m[0:4].decode(), m[6000:6004].decode())
fcntl.lockf(fd, fcntl.LOCK_UN)
subprocess.run(['python3', '-c', ${JSON.stringify(change('flock', 'CCCC'))}], check=True)
fcntl.flock(fd, fcntl.LOCK_SH)
print(m[0:4].decode(), m[6000:6004].decode())
fcntl.flock(fd, fcntl.LOCK_UN)
m.close()
os.close(fd)
`, 'the program maps the file, and locks it after each change of the other mount')
  t.equal(said, 'AAAA AAAA\nBBBB BBBB\nCCCC CCCC', 'after an fcntl lock and after a flock, the mapping reads what the other mount stored')
})

t.test('a handle opened read-only reads another mount\'s change from the page cache once its program takes a lock', async (t) => {
  const cluster = await startTestCluster(t, [{ 'data/notes.txt': 'old '.repeat(2048) }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const change = `import os, fcntl
fd = os.open(${JSON.stringify(b.at('/data/notes.txt'))}, os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, b'new ', 0)
os.pwrite(fd, b'NEW ', 4096)
os.close(fd)
`
  // A read-only handle keeps the kernel's page cache: its first reads cache the pages.
  const said = await python(t, `import os, fcntl, subprocess
fd = os.open(${JSON.stringify(a.at('/data/notes.txt'))}, os.O_RDONLY)
print(os.pread(fd, 4, 0).decode(), os.pread(fd, 4, 4096).decode())
subprocess.run(['python3', '-c', ${JSON.stringify(change)}], check=True)
print(os.pread(fd, 4, 0).decode(), os.pread(fd, 4, 4096).decode())
fcntl.flock(fd, fcntl.LOCK_SH)
print(os.pread(fd, 4, 0).decode(), os.pread(fd, 4, 4096).decode())
os.close(fd)
`, 'the program reads, the other mount changes the file, the program locks and reads again')
  t.equal(said, 'old  old \nold  old \nnew  NEW', 'without a lock the open handle reads what it opened; after the lock, the change')
})

t.test('sqlite with memory-mapped I/O on two mounts: long-lived connections commit in turn and lose no increment', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const rounds = 30
  // sqlite reads its pages through a shared mapping of the database (mmap_size); it used to
  // fall back to read() when the mapping was refused. Each row fills a page of its own; each
  // transaction reads every row and then adds one to a single row, which the other mount
  // changed meanwhile: read from a page mapped before that change, the other mount's
  // increment would be lost. (sqlite maps the file again when it sees another connection's
  // change, and the kernel drops a direct_io file's pages at each mmap; this guards that the
  // two together keep it correct.) The pause after each commit makes the connections take turns.
  const incrementer = (db: string): string => `import sqlite3, time
db = sqlite3.connect(${JSON.stringify(db)}, timeout=60, isolation_level=None)
db.execute('pragma mmap_size=268435456')
for i in range(${rounds}):
    db.execute('begin immediate')
    db.execute('select sum(n) from counter').fetchone()
    db.execute('update counter set n = n + 1 where id = ?', (i % 10 + 1,))
    db.execute('commit')
    time.sleep(0.05)
db.close()
`
  await python(t, `import sqlite3
db = sqlite3.connect(${JSON.stringify(a.at('/db/counter.db'))})
db.executescript('create table counter (id integer primary key, n integer, pad blob)')
db.executemany('insert into counter values (?, 0, randomblob(3000))', [(i,) for i in range(1, 11)])
db.commit()
db.close()
`, 'the database is made')
  const [ra, rb] = await Promise.all([
    run('python3', ['-c', incrementer(a.at('/db/counter.db'))], { timeoutMs: 120_000 }),
    run('python3', ['-c', incrementer(b.at('/db/counter.db'))], { timeoutMs: 120_000 })
  ])
  t.equal(ra.code, 0, `the connection on A commits every time (${outcome(ra)})`)
  t.equal(rb.code, 0, `the connection on B commits every time (${outcome(rb)})`)
  const check = await python(t, `import sqlite3
db = sqlite3.connect(${JSON.stringify(b.at('/db/counter.db'))})
print(db.execute('select sum(n) from counter').fetchone()[0])
print(db.execute('pragma integrity_check').fetchone()[0])
`, 'the result is read')
  t.equal(check, `${2 * rounds}\nok`, 'every increment of both is counted, and the database is whole')
})
