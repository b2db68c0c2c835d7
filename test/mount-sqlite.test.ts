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
