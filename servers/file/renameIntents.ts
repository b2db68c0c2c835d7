import crypto from 'node:crypto'
import fsp from 'node:fs/promises'
import path from 'node:path'
import type { DirectoryApi, FileApi, LockApi } from '../../src/shared/api'
import { NotFoundError } from '../../src/shared/errors'
import type { LookupAnswer, ServerInfo } from '../../src/shared/protocol'
import { leaseCredentialOf } from '../../src/shared/leaseCredential'
import { writeFileDurably } from '../common/durable'
import type { Logger } from '../common/http'
import type { FileStore } from './fileStore'

/** The folder of intents inside the root's state folder (ROOT/.dfs/renames). */
export const RENAMES_DIR_NAME = 'renames'

/** A file rename under way on this server, written before its first step and removed after its last. */
export interface RenameIntent {
  from: string
  to: string
  /** The server the bytes go to (this one for a rename within it). */
  target: ServerInfo
  /** `to` existed and is overwritten: its old bytes cannot be had back once the copy is there. */
  replace: boolean
  /** Set once the copy is at `to`: a replace is then finished, not undone. */
  staged?: boolean
}

/**
 * The intents of the file renames this server runs, one small file each, written durably
 * before the rename's first step (the copy at `to`) and removed after its last (`from`
 * gone), so that a crash between the steps is finished or undone at the next start
 * (recoverRenames) instead of leaving the file under both names.
 */
export class RenameIntents {
  constructor (private readonly dir: string) {}

  static in (stateDir: string): RenameIntents {
    return new RenameIntents(path.join(stateDir, RENAMES_DIR_NAME))
  }

  /** Records an intent durably; answers its id, for end(). */
  async begin (intent: RenameIntent): Promise<string> {
    const id = crypto.randomBytes(8).toString('hex')
    await writeFileDurably(path.join(this.dir, `${id}.json`), JSON.stringify(intent) + '\n')
    return id
  }

  /** The copy is at `to` (written durably: a replace cut short after it is finished). */
  async staged (id: string, intent: RenameIntent): Promise<void> {
    await writeFileDurably(path.join(this.dir, `${id}.json`), JSON.stringify({ ...intent, staged: true }) + '\n')
  }

  /** The rename is over (done or undone): its intent goes. */
  async end (id: string): Promise<void> {
    await fsp.rm(path.join(this.dir, `${id}.json`), { force: true })
  }

  async pending (): Promise<Array<{ id: string, intent: RenameIntent | null }>> {
    let names: string[]
    try {
      names = await fsp.readdir(this.dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
    const found: Array<{ id: string, intent: RenameIntent | null }> = []
    for (const name of names) {
      if (!name.endsWith('.json')) continue // a .tmp a crash left: its intent was never complete, nor acted on
      const text = await fsp.readFile(path.join(this.dir, name), 'utf8')
      let intent: RenameIntent | null = null
      try {
        intent = JSON.parse(text) as RenameIntent
      } catch {
        intent = null // cut short: the rename's first step never ran
      }
      found.push({ id: name.slice(0, -'.json'.length), intent })
    }
    return found
  }
}

export interface RecoveryContext {
  store: FileStore
  directory: DirectoryApi
  lock: LockApi
  peer: (server: ServerInfo) => FileApi
  machineId: number
  /** Who takes the lock of `from` to take a copy back from another server. */
  owner: string
  log: Logger
}

async function lookupOrNull (directory: DirectoryApi, path: string): Promise<LookupAnswer | null> {
  try {
    return await directory.lookup(path)
  } catch (err) {
    if (err instanceof NotFoundError) return null
    throw err
  }
}

/**
 * Ends each rename a crash interrupted, by what the directory says (its switch is the
 * commit point): `to` on the target server means the switch happened, so `from` goes from
 * this disk; `from` still this server's means it did not, so a new copy at `to` goes
 * (a replaced `to` keeps the new bytes: the rename then ends as done, `from` going too).
 * Either way one name is left. If the directory knows neither (it lost its state) or a
 * server does not answer, the intent stays for the next start: a stray copy is better than
 * a lost file. Runs before the server reports its files, so a name it removes is never
 * reported.
 */
export async function recoverRenames (intents: RenameIntents, cutShort: Array<{ id: string, intent: RenameIntent | null }>, ctx: RecoveryContext): Promise<void> {
  for (const { id, intent } of cutShort) {
    if (intent === null) {
      ctx.log(`rename intent ${id} cannot be read; removed`)
      await intents.end(id)
      continue
    }
    const { from, to, target, replace } = intent
    try {
      await ctx.store.adoptRenameLinks([from, to])
      const atTo = await lookupOrNull(ctx.directory, to)
      const atFrom = await lookupOrNull(ctx.directory, from)
      const fromHere = atFrom?.server?.machineId === ctx.machineId
      if (!fromHere && atTo?.server?.machineId === target.machineId) {
        // The switch happened: `from` goes (a drain's move, to the same path, keeps the key).
        await finish(ctx, from, from !== to)
        ctx.log(`rename of ${from} to ${to} cut short by a crash: finished`)
      } else if (fromHere && replace && intent.staged === true) {
        // The replaced `to` has the new bytes already, and its old ones are gone: finish it.
        await ctx.directory.switchRename({ kind: 'file', from, to, fromMachineId: ctx.machineId, toMachineId: target.machineId, replaces: target.machineId })
        await finish(ctx, from)
        ctx.log(`rename of ${from} to ${to} cut short by a crash: finished`)
      } else if (fromHere) {
        // It did not: a new copy at `to` goes (a replace not yet staged left `to` as it was).
        if (!replace) await unstage(ctx, intent)
        ctx.log(`rename of ${from} to ${to} cut short by a crash: undone`)
      } else {
        ctx.log(`rename of ${from} to ${to} cut short by a crash: the directory knows neither name yet; kept for the next start`)
        continue
      }
      await intents.end(id)
    } catch (err) {
      ctx.log(`rename of ${from} to ${to} cut short by a crash: cannot end it now (${(err as Error).message}); kept for the next start`)
    }
  }
}

/** `from` leaves this disk and, unless the file goes on using its key elsewhere, the lock server. */
async function finish (ctx: RecoveryContext, from: string, dropKey = true): Promise<void> {
  if (await ctx.store.statOrNull(from)) await ctx.store.remove(from)
  if (dropKey) await ctx.lock.deleteKey(from).catch(() => {})
}

/** The copy at `to` that was never switched to goes, from this disk or the target's (under the lock of `from`). */
async function unstage (ctx: RecoveryContext, { from, to, target }: RenameIntent): Promise<void> {
  if (target.machineId === ctx.machineId) {
    if (await ctx.store.statOrNull(to)) await ctx.store.remove(to)
    return
  }
  const lease = await ctx.lock.acquire({ path: from, owner: ctx.owner, waitMs: 5000 })
  try {
    await ctx.peer(target).incomingAbort(to, from, leaseCredentialOf(lease))
  } finally {
    await ctx.lock.release(from, leaseCredentialOf(lease)).catch(() => {})
  }
}
