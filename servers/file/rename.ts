import {
  BadPathError, BusyError, ConflictError, CrossServerError, IsDirectoryError, NotDirectoryError, NotEmptyError, NotFoundError
} from '../../src/shared/errors'
import { parentOf } from '../../src/shared/paths'
import type { FileMeta, LookupAnswer, RenameAnswer, RenameRequest, RenameSwitchRequest, ServerInfo } from '../../src/shared/protocol'
import { crashPoint } from '../common/crashPoints'
import type { MutationContext } from './context'
import type { RenameIntent } from './renameIntents'
import type { LeaseCredential } from '../../src/shared/leaseCredential'

/**
 * A rename, run by the server that holds `from`. Readers find files through the directory,
 * so the directory's switch is the one moment the rename happens: before it, `to` is
 * written where it will live without being claimed; after it, `from` is removed. A failure
 * before the switch takes the copy away again; a failure after it is only left-over bytes
 * nobody can reach.
 */
export async function renameOnServer (ctx: MutationContext, request: RenameRequest, fromToken: string | undefined): Promise<RenameAnswer> {
  const { from, to, toToken } = request
  if (from === '/' || to === '/') throw new BadPathError('the root folder cannot be renamed', { path: '/' })
  const found = await ctx.directory().lookup(from)
  if (found.kind === 'dir') return await renameFolder(ctx, from, to, found)
  if (found.server?.machineId !== ctx.self().machineId) throw new NotFoundError(`${from} is not on this file server`, { path: from })
  await ctx.leases.check(fromToken, from)
  return await renameFile(ctx, from, to, fromToken as LeaseCredential, toToken)
}

/** The tokens are the caller's lease credentials (leaseCredential.ts): a peer checks them again for PUT /incoming. */
async function renameFile (ctx: MutationContext, from: string, to: string, fromToken: LeaseCredential, toToken: LeaseCredential | undefined): Promise<RenameAnswer> {
  const { store } = ctx
  const directory = ctx.directory()
  const self = ctx.self()
  if (from === to) {
    const meta = await store.stat(from)
    return { from, to, kind: 'file', server: self, meta, fromVersion: meta.version, files: 0 }
  }
  const dest = await lookupOrNull(ctx, to)
  if (dest?.kind === 'dir') throw new IsDirectoryError(`${to} is a folder`, { path: to })
  let target: ServerInfo
  if (dest?.server) {
    if (toToken === undefined) throw new ConflictError(`${to} exists: its lock is needed to replace it`, { path: to })
    target = dest.server
  } else {
    target = (await directory.placement(to, self.machineId)).server
  }
  const replace = dest !== null
  // Written before the first step and removed after the last: a crash in between is ended
  // at the next start (renameIntents.ts), so the file is never left under both names.
  const intent = { from, to, target, replace }
  const intentId = await ctx.renames.begin(intent)
  try {
    return await renameFileSteps(ctx, intentId, intent, fromToken, toToken)
  } finally {
    await ctx.renames.end(intentId)
  }
}

/**
 * A drain's move: the file at `path` goes to another server at the same path, by the same
 * steps and intent as a rename across servers (crash-consistent: here or there, never
 * both), under the lease `token` the caller holds on it. It keeps its version and its lock
 * key, which the same path goes on using.
 */
export async function moveFileTo (ctx: MutationContext, path: string, target: ServerInfo, token: LeaseCredential): Promise<RenameAnswer> {
  if (target.machineId === ctx.self().machineId) throw new BadPathError(`${path} is on this file server already`, { path })
  await ctx.leases.check(token, path)
  const intent = { from: path, to: path, target, replace: false }
  const intentId = await ctx.renames.begin(intent)
  try {
    return await renameFileSteps(ctx, intentId, intent, token, undefined)
  } finally {
    await ctx.renames.end(intentId)
  }
}

async function renameFileSteps (ctx: MutationContext, intentId: string, intent: RenameIntent, fromToken: LeaseCredential, toToken: LeaseCredential | undefined): Promise<RenameAnswer> {
  const { store, lock, log } = ctx
  const directory = ctx.directory()
  const self = ctx.self()
  const { from, to, target, replace } = intent
  const source = await store.stat(from)

  // 1. The bytes at `to`, on the server that will hold it, not yet in the directory.
  let staged: FileMeta
  let fromVersion: number
  if (target.machineId === self.machineId) {
    if (replace) await ctx.leases.check(toToken, to)
    fromVersion = (await store.stat(from)).version
    staged = await store.linkAs(from, to, replace)
  } else if (source.kind === 'symlink') {
    // A link moves as its target, never as what it points to.
    fromVersion = source.version
    staged = await ctx.peer(target).incoming(
      { path: to, lockPath: replace ? to : from, fromVersion, mtimeMs: source.mtimeMs, target: source.target, replace, keepVersion: from === to },
      Buffer.alloc(0),
      replace ? toToken as LeaseCredential : fromToken)
  } else {
    const opened = await store.openRead(from)
    fromVersion = opened.meta.version
    try {
      staged = await ctx.peer(target).incoming(
        { path: to, lockPath: replace ? to : from, fromVersion, mtimeMs: opened.meta.mtimeMs, mode: opened.meta.mode, replace, keepVersion: from === to },
        opened.stream,
        replace ? toToken as LeaseCredential : fromToken)
    } finally {
      opened.stream.destroy()
    }
  }
  if (replace) await ctx.renames.staged(intentId, intent)
  crashPoint('rename:copied')
  // A replaced `to` cannot be had back; a new one can.
  const unstage = async (): Promise<void> => {
    if (replace) return
    try {
      if (target.machineId === self.machineId) await store.remove(to)
      else await ctx.peer(target).incomingAbort(to, from, fromToken)
    } catch (err) {
      log(`could not remove the copy of ${from} at ${to} on file server ${target.machineId}: ${(err as Error).message}`)
    }
  }

  // 2. The key, so `to` can be locked as soon as anyone sees it; 3. the switch.
  const switchRequest: RenameSwitchRequest = {
    kind: 'file', from, to, fromMachineId: self.machineId, toMachineId: target.machineId, replaces: replace ? target.machineId : null
  }
  try {
    await lock.createKeys([to])
    await directory.switchRename(switchRequest)
  } catch (err) {
    if (!(await switchHappened(ctx, from, self.machineId))) {
      await unstage()
      throw err
    }
  }

  crashPoint('rename:switched')
  // 4. `from` goes from this disk and from the lock server.
  try {
    await store.remove(from)
  } catch (err) {
    log(`renamed ${from} but could not remove its old bytes: ${(err as Error).message}`)
  }
  ctx.leases.forget(from)
  // A move to the same path (a drain) keeps the key: the file goes on using it there.
  if (from !== to) {
    try {
      await lock.deleteKey(from)
    } catch (err) {
      log(`renamed ${from} but could not remove its lock key: ${(err as Error).message}`)
    }
  }
  log(from === to ? `moved ${from} to file server ${target.machineId}` : `renamed ${from} to ${to} on file server ${target.machineId}`)
  return { from, to, kind: 'file', server: target, meta: staged, fromVersion, files: 1 }
}

/**
 * A folder moves only as a whole on one server (rename(2) there): one that spans servers,
 * or a destination on another server, is CROSS_SERVER (EXDEV), and callers such as mv copy
 * instead. The files' lock keys move with them.
 */
async function renameFolder (ctx: MutationContext, from: string, to: string, found: LookupAnswer): Promise<RenameAnswer> {
  const { store, lock, log } = ctx
  const directory = ctx.directory()
  const self = ctx.self()
  if (to === from) return { from, to, kind: 'dir', server: self, files: 0 }
  if (to.startsWith(from + '/')) throw new BadPathError(`cannot move ${from} into itself`, { path: to })
  const holders = found.holders ?? []
  if (!holders.some((h) => h.machineId === self.machineId)) throw new NotFoundError(`${from} is not on this file server`, { path: from })
  if (holders.length > 1) {
    throw new CrossServerError(`${from} spans file servers ${holders.map((h) => h.machineId).join(', ')}: it cannot be renamed in one step`, { path: from })
  }
  const dest = await lookupOrNull(ctx, to)
  if (dest?.kind === 'file') throw new NotDirectoryError(`${to} is a file`, { path: to })
  if (dest) {
    const listing = await directory.list(to)
    if (listing.entries.length > 0) throw new NotEmptyError(`${to} is not empty`, { path: to })
    if ((dest.holders ?? []).some((h) => h.machineId !== self.machineId)) throw new CrossServerError(`${to} is on other file servers`, { path: to })
  }
  const parent = await directory.lookup(parentOf(to))
  if (parent.kind !== 'dir') throw new NotDirectoryError(`not a folder: ${parentOf(to)}`, { path: to })
  if (parentOf(to) !== '/' && !(parent.holders ?? []).some((h) => h.machineId === self.machineId)) {
    throw new CrossServerError(`${parentOf(to)} is not on the file server that holds ${from}`, { path: to })
  }

  // A writer holding a file's lock stores it at close, by its path: moving the folder
  // under it would make that store fail (EBUSY instead, as for a busy mount point).
  const { held } = await lock.heldUnder(from)
  if (held.length > 0) {
    throw new BusyError(`${from} cannot be renamed while writers hold locks on files in it: ${held.slice(0, 3).map((h) => `${h.path} (${h.owner ?? '?'})`).join(', ')}${held.length > 3 ? ', ...' : ''}`,
      { path: from, held: held.map((h) => h.path) })
  }
  const moved = await store.moveFolder(from, to)
  try {
    if (moved.length > 0) await lock.createKeys(moved.map(([, path]) => path))
    const switchRequest: RenameSwitchRequest = { kind: 'dir', from, to, fromMachineId: self.machineId, toMachineId: self.machineId, replaces: null }
    await directory.switchRename(switchRequest)
  } catch (err) {
    if (!(await switchHappened(ctx, from, self.machineId))) {
      try {
        await store.unmoveFolder(from, to)
        if (dest) await store.create(to, 'dir')
      } catch (undoErr) {
        log(`could not move ${to} back to ${from}: ${(undoErr as Error).message}`)
      }
      throw err
    }
  }
  for (const [old] of moved) ctx.leases.forget(old)
  if (moved.length > 0) {
    try {
      await lock.removeKeys(moved.map(([old]) => old))
    } catch (err) {
      log(`renamed ${from} but could not remove its files' old lock keys: ${(err as Error).message}`)
    }
  }
  log(`renamed folder ${from} to ${to} (${moved.length} files)`)
  return { from, to, kind: 'dir', server: self, files: moved.length }
}

async function lookupOrNull (ctx: MutationContext, path: string): Promise<LookupAnswer | null> {
  try {
    return await ctx.directory().lookup(path)
  } catch (err) {
    if (err instanceof NotFoundError) return null
    throw err
  }
}

/**
 * Whether the directory made the switch although its answer did not arrive: then `from` is
 * no longer this server's. If the directory cannot say, the answer is no, which keeps the
 * bytes at `from` (a stray copy is better than a lost file).
 */
async function switchHappened (ctx: MutationContext, from: string, machineId: number): Promise<boolean> {
  try {
    const found = await ctx.directory().lookup(from)
    if (found.kind === 'file') return found.server?.machineId !== machineId
    return !(found.holders ?? []).some((h) => h.machineId === machineId)
  } catch (err) {
    return err instanceof NotFoundError
  }
}
