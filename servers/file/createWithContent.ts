import type { Express } from 'express'
import { FileRoutes, Headers } from '../../src/shared/protocol'
import { changeIdOf, queryOf } from '../common/input'
import type { MutationContext } from './context'
import { changerOf, grantCaller, wantsCallback } from './callerClient'

/**
 * PUT /create: a new file with its bytes (and mode and mtime) in one request, as a mount
 * sends it at the close of a file it created: on this disk exclusively and synced, and
 * claimed with the directory (beside the fsyncs), all before the answer. Its lock key
 * is implicit (the lock server makes it at the first acquire). A path that exists anywhere
 * is a 409 (EEXIST); a claim the directory refuses takes the file away again, so the path
 * is left as it was.
 *
 * The creator may ask for a callback on the new file (its bytes are the creator's copy) and
 * send the path's lease (X-Dfs-Lock-Token), when it goes on writing to the file: the lease is
 * checked here, so from now on appends without it wait, and the creator's next write under it
 * needs no fetch of what it just sent.
 */
export function mountCreateWithContentRoute (app: Express, ctx: MutationContext): void {
  app.put(FileRoutes.create, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const mode = query.optionalInt('mode', { min: 0, max: 0o7777 })
    const mtimeMs = query.optionalInt('mtimeMs', { min: 0 })
    const { machineId } = ctx.self()
    // Checked while the body arrives, and waited for before the file takes its name.
    const leaseChecked = req.get(Headers.lockToken) !== undefined ? ctx.leases.require(req, path) : undefined
    leaseChecked?.catch(() => {}) // thrown where it is awaited (guard), not unhandled meanwhile
    // Promised before the file exists: any change after the create breaks it.
    const granted = wantsCallback(req) && grantCaller(ctx.callbacks, req, path)
    // The claim goes beside the server's rounds of fsyncs (FileStore.createWithContent).
    // The client's own copy of the folder takes the new name from the answer (changerOf).
    const claim = {
      run: async () => await ctx.directory().claim(machineId, path, 'file', changerOf(req)),
      undo: async () => await ctx.directory().drop(machineId, path)
    }
    const guard = async (): Promise<void> => { await leaseChecked }
    const { meta, repeated } = await ctx.store.createWithContent(path, req, { mode, mtimeMs, changeId: changeIdOf(req), guard }, claim)
    // A retry of a create whose first try placed the file: its claim may have gone through too.
    if (repeated && !(await claimedHere(ctx, path, machineId))) {
      try {
        await claim.run()
      } catch (err) {
        await ctx.store.remove(path).catch((undo: unknown) => ctx.log(`could not remove ${path} again: ${undo instanceof Error ? undo.message : String(undo)}`))
        throw err
      }
    }
    ctx.keyRemovals.keep(path)
    ctx.log(`created file ${path} with ${meta.size} bytes`)
    if (granted) res.set(Headers.callback, 'granted')
    res.json(meta)
  })
}

/** Whether the directory maps the path to this server. */
async function claimedHere (ctx: MutationContext, path: string, machineId: number): Promise<boolean> {
  const found = await ctx.directory().lookup(path).catch(() => null)
  return found?.server?.machineId === machineId
}
