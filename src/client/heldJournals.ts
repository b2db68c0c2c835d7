/*
 * sqlite's rollback journal, held on the mount that writes it.
 *
 * In its default mode (DELETE) sqlite commits a transaction on a database D so: it creates
 * D-journal with the pages it will change, fsyncs it, writes its header, fsyncs it again,
 * writes the new pages into D, fsyncs D, and unlinks the journal. The journal is there for
 * one case: a crash that leaves D half written, which the next opener repairs from it.
 *
 * On dfs, D's file server never holds a half-written D after an fsync: an fsync of a file
 * written in place stores every range written since the last one in one range write, all
 * or none (see WorkingCopy.store). So a journal that only this mount sees is enough as long
 * as every other store of D (write-behind, a close, a crash of the program that leaves the
 * transaction open) sends the journal first, and the journal reaches the servers before
 * any other mount can write D: before this mount lets go of a lock on D. The mount then
 * keeps the journal (a file made here, not sent: OpenFileTable's unborn files) through its
 * fsyncs and drops it at the unlink, and a commit costs one request (D's range write)
 * instead of four (the journal's create, its header, D's range write, the unlink).
 *
 * If this mount dies, its held journal goes with it, and D's file server has D as its last
 * fsync stored it: a transaction whose commit had not returned is there whole or not at
 * all, never in part, as after a crash during a commit on a local disk.
 */

/** The suffix sqlite gives a database's rollback journal. */
export const JOURNAL_SUFFIX = '-journal'

/** Bytes of a journal's header read to tell it from another file (see looksLikeRollbackJournal). */
export const JOURNAL_HEADER_BYTES = 28

/**
 * A held journal whose program closed it and did not unlink it (sqlite unlinks right after
 * the close) is sent after this long: it is then a file like any other.
 */
export const HELD_JOURNAL_CLOSED_MS = 1000

/** sqlite's journal magic (pager.c aJournalMagic). */
const JOURNAL_MAGIC = Buffer.from([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7])

/** The database a journal's name belongs to (`D` of `D-journal`), or null for any other name. */
export function databaseOfJournal (path: string): string | null {
  if (!path.endsWith(JOURNAL_SUFFIX)) return null
  const database = path.slice(0, -JOURNAL_SUFFIX.length)
  return database.endsWith('/') ? null : database
}

/**
 * Whether a file's first bytes are a rollback journal's header (pager.c writeJournalHdr),
 * big-endian: the magic, or zeros until the first fsync (after which sqlite writes it);
 * the record count; a random nonce; the database's size in pages; the sector size, a power
 * of two from 32 to 65536; the page size, a power of two from 512 to 65536.
 */
export function looksLikeRollbackJournal (head: Buffer): boolean {
  if (head.length < JOURNAL_HEADER_BYTES) return false
  const magic = head.subarray(0, JOURNAL_MAGIC.length)
  if (!magic.equals(JOURNAL_MAGIC) && magic.some((byte) => byte !== 0)) return false
  return isPowerOfTwoWithin(head.readUInt32BE(20), 32, 65536) && isPowerOfTwoWithin(head.readUInt32BE(24), 512, 65536)
}

function isPowerOfTwoWithin (n: number, min: number, max: number): boolean {
  return n >= min && n <= max && (n & (n - 1)) === 0
}
