import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'

/*
 * sqlite3 (the CLI, in child processes) on the mount: its fsyncs store only the pages it
 * changed, as range writes (PATCH /content), and the database stays whole.
 */

/** Runs SQL with the sqlite3 CLI on a database file; its output, or a failure naming what it printed. */
async function sql (t: Test, db: string, script: string): Promise<string> {
  const result = await run('sqlite3', ['-batch', db, script], { timeoutMs: 120_000 })
  t.equal(result.code, 0, `sqlite3 ran: ${outcome(result)}`)
  return result.stdout.trim()
}

/** The one file server's counters of whole stores and range writes. */
function storeCounts (cluster: TestCluster): { overwrites: number, rangeWrites: number, rangeBytes: number } {
  const { overwrites, rangeWrites, rangeBytes } = cluster.fileServers[0].app.locals.stats
  return { overwrites, rangeWrites, rangeBytes }
}

t.test('sqlite3 on the mount: 500 inserts in one transaction, then WAL mode, and the database is whole', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const db = mount.at('/db/test.db')
  const inserts = Array.from({ length: 500 }, (_, i) => `insert into items (name) values ('item ${i}');`).join('\n')
  await sql(t, db, `create table items (id integer primary key, name text);\nbegin;\n${inserts}\ncommit;\n`)
  t.equal(await sql(t, db, 'pragma integrity_check;'), 'ok')
  t.equal(await sql(t, db, 'select count(*), max(name) from items;'), '500|item 99')
  t.equal(await sql(t, db, 'pragma journal_mode=wal;'), 'wal')
  const more = Array.from({ length: 200 }, (_, i) => `insert into items (name) values ('wal ${i}');`).join('\n')
  await sql(t, db, `begin;\n${more}\ncommit;\ninsert into items (name) values ('last');\n`)
  t.equal(await sql(t, db, 'pragma integrity_check;'), 'ok')
  t.equal(await sql(t, db, 'select count(*) from items; select name from items where id = 701;'), '701\nlast')
  // What a reader on the file server gets, the cached copy aside.
  const stored = await cluster.client().readFile('/db/test.db')
  t.equal(stored.subarray(0, 16).toString('latin1'), 'SQLite format 3\0')
})

t.test('a small change to a large database sends a small range write, not the file', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const db = mount.at('/db/big.db')
  // About 4 MB, made through the mount.
  await sql(t, db, 'create table blobs (id integer primary key, data blob);\nwith recursive n(i) as (select 1 union all select i + 1 from n where i < 4000) insert into blobs (data) select randomblob(1000) from n;\n')
  const size = (await cluster.client().stat('/db/big.db')).size
  t.ok(size > 4_000_000, `the database has ${size} bytes`)
  const before = storeCounts(cluster)
  await sql(t, db, "update blobs set data = x'00' where id = 2000;\n")
  const after = storeCounts(cluster)
  t.equal(after.overwrites, before.overwrites, 'no whole-file store')
  t.ok(after.rangeWrites > before.rangeWrites, 'range writes went')
  const sent = after.rangeBytes - before.rangeBytes
  t.ok(sent < 64 * 1024, `one changed row sent ${sent} bytes of a ${size}-byte database`)
  t.equal(await sql(t, db, 'pragma integrity_check;'), 'ok')
  t.equal(await sql(t, db, 'select count(*), length(data) from blobs where id = 2000;'), '1|1')
})

t.test('two mounts share one database in rollback mode through their locks: in turn, then at once', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const dbA = a.at('/db/shared.db')
  const dbB = b.at('/db/shared.db')
  await sql(t, dbA, 'create table items (id integer primary key, mount text, n integer);')
  // In turn: one sqlite3 process per insert, alternating between the mounts.
  for (let i = 0; i < 50; i++) {
    await sql(t, dbA, `insert into items (mount, n) values ('a', ${i});`)
    await sql(t, dbB, `insert into items (mount, n) values ('b', ${i});`)
  }
  t.equal(await sql(t, dbB, 'pragma integrity_check;'), 'ok')
  t.equal(await sql(t, dbA, "select count(*) from items where mount = 'a'; select count(*) from items where mount = 'b';"), '50\n50')
  // At once: a loop of sqlite3 processes per mount, each waiting for the other's locks.
  const loop = async (db: string, name: string): Promise<void> => {
    for (let i = 0; i < 50; i++) {
      const result = await run('sqlite3', ['-batch', '-cmd', '.timeout 60000', db, `insert into items (mount, n) values ('${name}', ${i});`], { timeoutMs: 120_000 })
      if (result.code !== 0) throw new Error(`insert ${i} through mount ${name}: ${outcome(result)}`)
    }
  }
  await Promise.all([loop(dbA, 'a2'), loop(dbB, 'b2')])
  for (const db of [dbA, dbB]) {
    t.equal(await sql(t, db, 'pragma integrity_check;'), 'ok')
    t.equal(await sql(t, db, 'select mount, count(*), count(distinct n) from items group by mount order by mount;'), 'a|50|50\na2|50|50\nb|50|50\nb2|50|50')
  }
})

/*
 * A mount holds a file's key while a program has it open for writing in place (its working
 * copy). Were it held until the close, a long-lived connection on one machine would keep the
 * other machine's writers out until their lock wait ran out: ENOLCK, sqlite's "disk I/O
 * error". So a recalled key goes back as soon as the copy holds nothing unstored (after each
 * commit's fsync), and the copy starts from the version then current when it next writes or
 * its program next takes an fcntl lock. Short lock waits (3 s) make the old failure quick.
 */
t.test('long-lived connections on two mounts commit in turn, in every rollback journal mode', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const a = await mountCluster(t, cluster, ['--lock-timeout-ms', '3000'])
  const b = await mountCluster(t, cluster, ['--lock-timeout-ms', '3000'])
  // Each connection works for about 5 s (a pause after each commit, as an application's
  // does), longer than the other mount's writes wait for a key.
  const rounds = 20
  const incrementer = (db: string, mode: string): string => `import sqlite3, time\ndb = sqlite3.connect(${JSON.stringify(db)}, timeout=60, isolation_level=None)\ndb.execute('pragma journal_mode=${mode}')\nfor i in range(${rounds}):\n    db.execute('begin immediate')\n    (n,) = db.execute('select n from counter').fetchone()\n    db.execute('update counter set n = ?', (n + 1,))\n    db.execute('commit')\n    time.sleep(0.25)\ndb.close()\n`
  for (const mode of ['delete', 'truncate', 'persist']) {
    const name = `/db/counter-${mode}.db`
    await sql(t, a.at(name), 'create table counter (n integer); insert into counter values (0);')
    const [ra, rb] = await Promise.all([
      run('python3', ['-c', incrementer(a.at(name), mode)], { timeoutMs: 120_000 }),
      run('python3', ['-c', incrementer(b.at(name), mode)], { timeoutMs: 120_000 })
    ])
    t.equal(ra.code, 0, `${mode}: the connection on A commits every time (${outcome(ra)})`)
    t.equal(rb.code, 0, `${mode}: the connection on B commits every time (${outcome(rb)})`)
    t.equal(await sql(t, b.at(name), 'select n from counter;'), String(2 * rounds), `${mode}: every increment of both is counted`)
    t.equal(await sql(t, a.at(name), 'pragma integrity_check;'), 'ok', `${mode}: the database is whole`)
  }
})

t.test('a file held open for writing on one mount does not keep the other mount\'s writes out; its next write builds on them', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/log.txt': 'first\n' }])
  const a = await mountCluster(t, cluster, ['--lock-timeout-ms', '3000'])
  const b = await mountCluster(t, cluster, ['--lock-timeout-ms', '3000'])
  // A program on A keeps the file open read-write: writes a line in place, fsyncs, waits, writes at the end, closes.
  const script = `import os, sys\nfd = os.open(${JSON.stringify(a.at('/db/log.txt'))}, os.O_RDWR)\nos.pwrite(fd, b'FIRST\\n', 0)\nos.fsync(fd)\nprint('stored', flush=True)\nsys.stdin.readline()\nsize = os.fstat(fd).st_size\nos.pwrite(fd, b'third from A\\n', size)\nos.close(fd)\nprint('closed', flush=True)\n`
  const { spawn } = await import('node:child_process')
  const holder = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'] })
  t.teardown(() => { holder.kill('SIGKILL') })
  let said = ''
  holder.stdout.setEncoding('utf8').on('data', (chunk: string) => { said += chunk })
  holder.stderr.setEncoding('utf8').on('data', (chunk: string) => { said += chunk })
  const exited = new Promise<number | null>((resolve) => holder.once('exit', (code) => resolve(code)))
  for (const startedAt = Date.now(); !said.includes('stored');) {
    if (holder.exitCode !== null || Date.now() - startedAt > 20_000) throw new Error(`the holder did not store its first write: ${said}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const append = await run('sh', ['-c', `echo 'second from B' >> ${b.at('/db/log.txt')}`], { timeoutMs: 20_000 })
  t.equal(append.code, 0, `an append through B goes while A holds the file open (${outcome(append)})`)
  holder.stdin.end('\n')
  t.equal(await exited, 0, `A's program writes again and closes (${said})`)
  const seen = await run('cat', [b.at('/db/log.txt')])
  t.equal(seen.stdout, 'FIRST\nsecond from B\nthird from A\n', 'A\'s later write went onto the file with B\'s line in it')
})
