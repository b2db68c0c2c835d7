import type { Response } from 'express'
import t from 'tap'
import { CallbackTable } from '../servers/file/callbacks'

/*
 * Callbacks granted in bulk after the metadata was read (a folder's listing): a path whose
 * change may have slipped in between the read and the grant is left out, so its holder
 * cannot keep trusting a meta older than the change.
 */

/** An event channel that keeps what is sent down it (the table writes server-sent events to it). */
function channel (): Response & { sent: string[] } {
  const sent: string[] = []
  return { sent, write: (chunk: string) => { sent.push(chunk); return true }, end: () => {} } as unknown as Response & { sent: string[] }
}

function tableWithClient (): CallbackTable {
  const table = new CallbackTable(3000)
  table.renew('c1', undefined)
  table.attach('c1', channel())
  return table
}

t.test('a listing grants every file that did not change since its mark', async (t) => {
  const table = tableWithClient()
  const mark = table.mark()
  t.same(table.grantUnchanged('c1', ['/d/a', '/d/b'], undefined, mark), ['/d/a', '/d/b'])
  t.equal(table.count, 2)
})

t.test('a file changed after the mark is left out; one changed before it is granted', async (t) => {
  const table = tableWithClient()
  await table.breakAll('/d/old', { path: '/d/old', version: 2 }, undefined)
  const mark = table.mark()
  await table.breakAll('/d/a', { path: '/d/a', version: 5 }, undefined)
  t.same(table.grantUnchanged('c1', ['/d/a', '/d/b', '/d/old'], undefined, mark), ['/d/b', '/d/old'])
})

t.test('a folder renamed after the mark leaves out every file under it', async (t) => {
  const table = tableWithClient()
  const mark = table.mark()
  await table.breakUnder('/d', undefined)
  t.same(table.grantUnchanged('c1', ['/d/a', '/d/e/f', '/other/x'], undefined, mark), ['/other/x'])
})

t.test('a client without a channel is granted nothing', async (t) => {
  const table = new CallbackTable(3000)
  table.renew('c2', undefined)
  t.same(table.grantUnchanged('c2', ['/d/a'], undefined, table.mark()), [])
})
