import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { databaseOfJournal, JOURNAL_HEADER_BYTES, looksLikeRollbackJournal } from '../src/client/heldJournals'
import { run, outcome } from './helpers/mount'

/*
 * What the mount takes for sqlite's rollback journal (src/client/heldJournals.ts): headers
 * of journals sqlite itself writes (python's sqlite3, on a local folder), before and after
 * its first fsync, and files that are not journals.
 */

/** The first bytes of a real journal: while its transaction's first pages are written, then after a sync (a cache spill). */
async function realJournalHeads (t: Test): Promise<{ unsynced: Buffer, synced: Buffer }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-journal-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const db = path.join(dir, 'a.db')
  const script = [
    'import sqlite3, sys',
    `db = sqlite3.connect(${JSON.stringify(db)}, isolation_level=None)`,
    'db.execute("create table t (v)")',
    'db.execute("insert into t values (hex(randomblob(3000)))")',
    'db.execute("begin")',
    'db.execute("update t set v = \'x\'")',
    `sys.stdout.write(open(${JSON.stringify(db + '-journal')}, "rb").read(${JOURNAL_HEADER_BYTES}).hex() + " ")`,
    'db.execute("pragma cache_size=1")',
    'for i in range(200): db.execute("insert into t values (hex(randomblob(3000)))")',
    `sys.stdout.write(open(${JSON.stringify(db + '-journal')}, "rb").read(${JOURNAL_HEADER_BYTES}).hex())`
  ].join('\n')
  const result = await run('python3', ['-c', script], { timeoutMs: 60_000 })
  t.equal(result.code, 0, outcome(result))
  const [unsynced, synced] = result.stdout.trim().split(' ').map((hex) => Buffer.from(hex, 'hex'))
  return { unsynced, synced }
}

t.test('the headers sqlite writes are taken for a journal, before its first sync and after', async (t) => {
  const { unsynced, synced } = await realJournalHeads(t)
  t.ok(unsynced.subarray(0, 8).equals(Buffer.alloc(8)), 'before the sync the magic is zeros')
  t.ok(looksLikeRollbackJournal(unsynced), unsynced.toString('hex'))
  t.equal(synced.readUInt32BE(0), 0xd9d505f9, 'after it, the magic')
  t.ok(looksLikeRollbackJournal(synced), synced.toString('hex'))
})

t.test('other bytes are not taken for a journal', async (t) => {
  const { synced } = await realJournalHeads(t)
  const changed = (offset: number, value: number): Buffer => {
    const copy = Buffer.from(synced)
    copy.writeUInt32BE(value, offset)
    return copy
  }
  t.notOk(looksLikeRollbackJournal(Buffer.from('SQLite format 3\0 and then some more bytes')), 'a database')
  t.notOk(looksLikeRollbackJournal(Buffer.from('journal of a day: nothing happened at all.\n')), 'text')
  t.notOk(looksLikeRollbackJournal(Buffer.alloc(JOURNAL_HEADER_BYTES)), 'zeros')
  t.notOk(looksLikeRollbackJournal(synced.subarray(0, JOURNAL_HEADER_BYTES - 1)), 'a header cut short')
  t.notOk(looksLikeRollbackJournal(changed(0, 0x12345678)), 'another magic')
  t.notOk(looksLikeRollbackJournal(changed(20, 3000)), 'a sector size that is no power of two')
  t.notOk(looksLikeRollbackJournal(changed(24, 256)), 'a page size under 512')
  t.notOk(looksLikeRollbackJournal(changed(24, 131072)), 'a page size over 65536')
})

t.test('a journal\'s name names its database', async (t) => {
  t.equal(databaseOfJournal('/db/app.db-journal'), '/db/app.db')
  t.equal(databaseOfJournal('/app-journal'), '/app')
  t.equal(databaseOfJournal('/db/app.db'), null)
  t.equal(databaseOfJournal('/db/-journal'), null, 'no database name')
  t.equal(databaseOfJournal('/db/app.db-wal'), null)
})
