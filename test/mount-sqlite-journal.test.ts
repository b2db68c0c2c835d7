import { spawn } from 'node:child_process'
import t from 'tap'
import type { Test } from 'tap'
import { startTestCluster } from './helpers/cluster'
import type { TestCluster } from './helpers/cluster'
import { mountCluster, outcome, run } from './helpers/mount'
import type { TestMount } from './helpers/mount'
import { Requests, show } from './helpers/requests'
import type { SeenRequest } from './helpers/requests'

/*
 * sqlite's rollback journal stays on the mount that writes it (src/client/heldJournals.ts):
 * a commit sends one range write, and the journal reaches the servers only when one of them
 * may need it: before the database is stored halfway through a transaction, or before
 * another mount may write the database.
 */

async function sql (t: Test, db: string, script: string): Promise<string> {
  const result = await run('sqlite3', ['-batch', '-cmd', '.timeout 60000', db, script], { timeoutMs: 120_000 })
  t.equal(result.code, 0, `sqlite3 ran: ${outcome(result)}`)
  return result.stdout.trim()
}

/** A database of 200 rows made through the mount, in rollback (DELETE) mode. */
async function makeDatabase (t: Test, mount: TestMount, name: string): Promise<string> {
  const db = mount.at(name)
  await sql(t, db, "create table items (id integer primary key, data text);\nwith recursive n(i) as (select 1 union all select i + 1 from n where i < 200) insert into items (data) select hex(randomblob(100)) from n;\n")
  return db
}

const journalRequests = (seen: SeenRequest[]): SeenRequest[] => seen.filter((r) => r.path?.endsWith('-journal') === true)

/**
 * A python program on the mount that commits `committed` rows, then opens a transaction that
 * writes far more pages than sqlite's cache holds (cache_size 20 pages): sqlite syncs the
 * journal and writes pages into the database before any commit. It says 'open' then, and
 * waits for its stdin.
 */
function openTransaction (db: string, committed: number): string {
  return [
    'import sqlite3, sys',
    `db = sqlite3.connect(${JSON.stringify(db)}, timeout=60, isolation_level=None)`,
    'db.execute("pragma cache_size=20")',
    'db.execute("begin")',
    `for i in range(${committed}): db.execute("insert into items (data) values ('committed')")`,
    'db.execute("commit")',
    'db.execute("begin")',
    'for i in range(3000): db.execute("insert into items (data) values (hex(randomblob(500)))")',
    'db.execute("update items set data = \'changed\' where id <= 200")',
    "print('open', flush=True)",
    'sys.stdin.readline()'
  ].join('\n')
}

async function startOpenTransaction (t: Test, db: string, committed: number): Promise<ReturnType<typeof spawn>> {
  const program = spawn('python3', ['-c', openTransaction(db, committed)], { stdio: ['pipe', 'pipe', 'pipe'] })
  t.teardown(() => { program.kill('SIGKILL') })
  let said = ''
  program.stdout?.setEncoding('utf8').on('data', (chunk: string) => { said += chunk })
  program.stderr?.setEncoding('utf8').on('data', (chunk: string) => { said += chunk })
  for (const startedAt = Date.now(); !said.includes('open');) {
    if (program.exitCode !== null || Date.now() - startedAt > 60_000) throw new Error(`the program did not open its transaction: ${said}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return program
}

async function killed (program: ReturnType<typeof spawn>): Promise<void> {
  const exited = new Promise((resolve) => program.once('exit', resolve))
  program.kill('SIGKILL')
  await exited
}

async function journalStored (cluster: TestCluster, path: string): Promise<boolean> {
  return await cluster.client().stat(path).then(() => true, () => false)
}

t.test('a commit in rollback mode sends the database\'s range write alone: the journal stays on the mount', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const mount = await mountCluster(t, cluster)
  const db = await makeDatabase(t, mount, '/db/one.db')
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const from = requests.mark()
  const transactions = 30
  await sql(t, db, Array.from({ length: transactions }, (_, i) => `insert into items (data) values ('row ${i}');`).join('\n'))
  const counts = requests.since(from, true)
  t.same(journalRequests(requests.listSince(from, true)), [], `no request names the journal: ${show(counts)}`)
  t.same(journalRequests(requests.listSince(from, false)), [], 'nor does one among the servers')
  t.equal(counts.get('PATCH /content'), transactions, `one range write a transaction: ${show(counts)}`)
  t.notOk(await journalStored(cluster, '/db/one.db-journal'), 'no journal on the file server')
  t.equal(await sql(t, db, 'pragma integrity_check;'), 'ok')
  t.equal(await sql(t, db, 'select count(*) from items;'), String(200 + transactions))
})

t.test('a program killed in a transaction that wrote into its database: the journal reaches the server before those pages, and another mount rolls it back', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const db = await makeDatabase(t, a, '/db/killed.db')
  const requests = new Requests()
  t.teardown(() => requests.stop())
  const from = requests.mark()
  const program = await startOpenTransaction(t, db, 5)
  await killed(program)
  // The program's close of the database stores the pages it wrote (or write-behind did, a
  // second after its last write): the journal went first.
  const deadline = Date.now() + 20_000
  while (!(await journalStored(cluster, '/db/killed.db-journal'))) {
    if (Date.now() > deadline) throw new Error('the journal never reached the file server')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const seen = requests.listSince(from, true)
  const journalCreated = seen.findIndex((r) => r.route === 'PUT /create' && r.path === '/db/killed.db-journal')
  const databaseStores = seen.flatMap((r, i) => r.path === '/db/killed.db' && (r.route === 'PATCH /content' || r.route === 'PUT /content') ? [i] : [])
  t.ok(journalCreated >= 0, `the journal was created: ${JSON.stringify(seen)}`)
  t.ok(databaseStores.length >= 2, `the database was stored at the commit, and again in the open transaction: ${JSON.stringify(seen)}`)
  t.same(databaseStores.filter((i) => i < journalCreated).length, 1, `only the commit stored the database before the journal went: ${JSON.stringify(seen)}`)
  t.equal(await sql(t, b.at('/db/killed.db'), 'pragma integrity_check;'), 'ok', 'the database is whole through the other mount')
  t.equal(await sql(t, b.at('/db/killed.db'), "select count(*), sum(data = 'changed') from items;"), '205|0', 'with the commit and without the open transaction')
  t.notOk(await journalStored(cluster, '/db/killed.db-journal'), 'the other mount rolled the journal back and removed it')
})

t.test('a mount killed in a transaction: its held journal goes with it, and the database is as its last commit left it', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/.keep': '' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  const db = await makeDatabase(t, a, '/db/lost.db')
  const program = await startOpenTransaction(t, db, 7)
  a.daemon.kill('SIGKILL')
  await a.exited
  await killed(program)
  // The journal may have reached the file server if write-behind stored the database's
  // pages (a second after the program's last write): the other mount then rolls it back.
  t.equal(await sql(t, b.at('/db/lost.db'), 'pragma integrity_check;'), 'ok', 'the database is whole through the other mount')
  t.equal(await sql(t, b.at('/db/lost.db'), "select count(*), sum(data = 'changed') from items;"), '207|0', 'with the commit and without the open transaction')
})

/*
 * A program killed after its commit stored the database but before it unlinked the journal
 * (a crash at sqlite's commit point): on a local disk the next opener finds the journal and
 * rolls the transaction back. Here the journal must reach the servers before any other
 * mount can take the database's lock, or that mount could commit on top, and a journal sent
 * later would roll its commit back with older pages. A python program plays sqlite's steps
 * (its locks are fcntl locks as sqlite's are).
 */
t.test('a journal held for a database reaches the servers before the database\'s lock can go to another mount', async (t) => {
  const cluster = await startTestCluster(t, [{ 'db/app.db': 'old page' }])
  const a = await mountCluster(t, cluster)
  const b = await mountCluster(t, cluster)
  // A journal header as sqlite writes it before its first sync: zeros, a nonce, the
  // database's pages, sector 512, page 4096; then zeros to the sector's end and one record.
  const steps = [
    'import fcntl, os, signal, struct',
    `db = os.open(${JSON.stringify(a.at('/db/app.db'))}, os.O_RDWR)`,
    'fcntl.lockf(db, fcntl.LOCK_EX)',
    `journal = os.open(${JSON.stringify(a.at('/db/app.db-journal'))}, os.O_RDWR | os.O_CREAT, 0o644)`,
    "header = bytes(12) + struct.pack('>IIII', 12345, 1, 512, 4096)",
    "os.write(journal, header + bytes(512 - len(header)) + struct.pack('>I', 1) + b'old page'.ljust(4096, b'\\0') + bytes(4))",
    'os.fsync(journal)',
    "os.pwrite(db, b'new page', 0)",
    'os.fsync(db)',
    'os.close(journal)',
    'os.kill(os.getpid(), signal.SIGKILL)'
  ].join('\n')
  const killed = await run('python3', ['-c', steps], { timeoutMs: 30_000 })
  t.equal(killed.signal, 'SIGKILL', `the program stopped at its commit point: ${outcome(killed)}`)
  const locker = [
    'import fcntl, os',
    `db = os.open(${JSON.stringify(b.at('/db/app.db'))}, os.O_RDWR)`,
    'fcntl.lockf(db, fcntl.LOCK_EX)',
    "print('locked', flush=True)"
  ].join('\n')
  const locked = await run('python3', ['-c', locker], { timeoutMs: 60_000 })
  t.equal(locked.code, 0, `the other mount takes the database's lock: ${outcome(locked)}`)
  t.ok(await journalStored(cluster, '/db/app.db-journal'), 'by then the journal is on the file server')
  t.equal((await cluster.client().readFile('/db/app.db')).toString(), 'new page', 'beside the database the commit stored')
})
