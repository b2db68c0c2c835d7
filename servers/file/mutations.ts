import type { Express, Request } from 'express'
import { IsDirectoryError, LockedError, PayloadTooLargeError } from '../../src/shared/errors'
import type { FileMeta, RemovedAnswer, RenameRequest, StatfsAnswer } from '../../src/shared/protocol'
import { FileRoutes, Headers } from '../../src/shared/protocol'
import { bodyOf, changeIdOf, queryOf } from '../common/input'
import type { MutationContext } from './context'
import { renameOnServer } from './rename'
import { crashPoint } from '../common/crashPoints'
import { changerOf, writerOf } from './callerClient'

/** The largest body of one range write: it is held in memory (a client sends more as a whole store). */
export const MAX_RANGE_WRITE_BYTES = 256 * 1024 * 1024

/**
 * A whole store (PUT /content) up to this size (Content-Length) is made in place behind a
 * redo intent that holds its bytes (FileStore.overwriteInPlace); a larger one through an
 * upload renamed over the file, which writes its bytes once.
 */
export const IN_PLACE_OVERWRITE_BYTES = 1024 * 1024

/** A range write body up to this size (Content-Length) is read before its lease is checked, once, in the write lock. */
const RANGE_WRITE_READ_BEFORE_LEASE_BYTES = 1024 * 1024

/** A request's whole body, refused (413) past `maxBytes`. */
async function bodyBytes (req: Request, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of req) {
    bytes += (chunk as Buffer).length
    if (bytes > maxBytes) throw new PayloadTooLargeError(`a range write of more than ${maxBytes} bytes`, { bytes, maxBytes })
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

/**
 * Creating, replacing, truncating, removing and renaming. Each answers only once the change
 * is on disk, and tells the directory and lock servers what they must know: this server is
 * the one that reports its entries. A step that fails undoes the ones before it where it
 * can, so a path is left as it was or as asked, and the caller gets the typed error.
 */
export function mountMutationRoutes (app: Express, ctx: MutationContext): void {
  const { store, lock, leases, stats, log } = ctx

  /**
   * Every client holding a callback on the path (but the one that made the change) hears of
   * it before the change is acknowledged: so once the answer is out, nobody trusts the old
   * version. `version` null: the file left the path (`renamedTo`: by a rename, to there).
   */
  const changed = async (req: Request, path: string, version: number | null, renamedTo?: string): Promise<void> => {
    await ctx.callbacks.breakAll(path, { path, version, ...(renamedTo === undefined ? {} : { renamedTo }) }, writerOf(ctx.callbacks, req))
  }

  /** Runs a clean-up step whose failure must not hide the error that made it necessary; says whether it succeeded. */
  const tryTo = async (what: string, step: () => Promise<unknown>): Promise<boolean> => {
    try {
      await step()
      return true
    } catch (err) {
      log(`could not ${what}: ${err instanceof Error ? err.message : String(err)}`)
      return false
    }
  }

  app.get(FileRoutes.statfs, async (_req, res) => {
    const answer: StatfsAnswer = await store.statfs()
    res.json(answer)
  })

  // The file on disk (O_EXCL), then the directory: a path is visible only once its file
  // exists, and a claim the directory refuses takes the file away again. Its lock key is
  // implicit (the lock server makes it at the first acquire): no request for it here.
  app.post(FileRoutes.create, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const kind = query.metaKind('kind', 'file')
    const mode = query.optionalInt('mode', { min: 0, max: 0o7777 })
    const target = kind === 'symlink' ? query.string('target', 4096) : undefined
    const { machineId } = ctx.self()
    const made = await store.create(path, kind, { mode, target })
    try {
      // The directory maps a link as a file: a name this one server holds.
      await ctx.directory().claim(machineId, path, kind === 'dir' ? 'dir' : 'file')
    } catch (err) {
      await tryTo(`remove ${path} again`, async () => kind === 'dir' ? await store.removeFolder(path) : await store.remove(path))
      throw err
    }
    ctx.keyRemovals.keep(path)
    log(`created ${kind === 'dir' ? 'folder' : kind === 'symlink' ? 'symbolic link' : 'file'} ${path}`)
    res.json(made)
  })

  app.put(FileRoutes.content, async (req, res) => {
    const path = queryOf(req).path()
    // Before the body is read (a writer without the lease uploads nothing), and again when it is placed.
    await leases.require(req, path)
    const guard = async (): Promise<unknown> => await leases.require(req, path)
    // A small body (an editor's save, `echo > file`) replaces the file in place behind a redo
    // intent, answered after one round of fsyncs; a larger one goes through an upload renamed
    // over the file (FileStore.overwriteInPlace, FileStore.overwrite).
    const declared = Number(req.get('content-length'))
    const meta: FileMeta = declared <= IN_PLACE_OVERWRITE_BYTES
      ? await store.overwriteInPlace(path, await bodyBytes(req, IN_PLACE_OVERWRITE_BYTES), guard, changeIdOf(req))
      : await store.overwrite(path, req, guard, changeIdOf(req))
    stats.overwrites++
    await changed(req, path, meta.version)
    // A test's crash once this answer has left (test/crash-consistency.test.ts).
    res.once('finish', () => crashPoint('overwrite:answered'))
    res.json(meta)
  })

  // A range write (rangeFrames.ts): only the bytes a writer changed, under its lease, as one version.
  app.patch(FileRoutes.content, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const size = query.int('size', { min: 0 })
    const fromVersion = query.int('fromVersion', { min: 0 })
    // The lease is checked inside the file's write lock (the fence); a body that may be large
    // is refused before it is read as well. A small one (a database's changed pages) is read
    // first: one question to the lock server per range write instead of two.
    const declared = Number(req.get('content-length'))
    if (!(declared <= RANGE_WRITE_READ_BEFORE_LEASE_BYTES)) await leases.require(req, path)
    const body = await bodyBytes(req, MAX_RANGE_WRITE_BYTES)
    const meta = await store.writeRanges(path, body, size, fromVersion, async () => await leases.require(req, path), changeIdOf(req))
    stats.rangeWrites++
    stats.rangeBytes += body.length
    await changed(req, path, meta.version)
    // A test's crash once this answer has left, perhaps before the write's fsyncs are done
    // (FileStore.writeRanges answers first): test/crash-consistency.test.ts.
    res.once('finish', () => crashPoint('range:answered'))
    res.json(meta)
  })

  app.post(FileRoutes.truncate, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const size = query.int('size', { min: 0 })
    const meta = await store.truncate(path, size, async () => await leases.require(req, path))
    await changed(req, path, meta.version)
    res.json(meta)
  })

  // The directory's drop beside the disk's removal: if the directory refuses, the file goes
  // back to its name, so nothing changed (FileStore.remove).
  app.post(FileRoutes.unlink, async (req, res) => {
    const path = queryOf(req).path()
    // Under the path's lease, as any change; or with none (an rm of a file nobody writes:
    // no acquire and no check), if no lease holds the key, which then goes. Keys are
    // implicit, so one removed before its file is made again by the next acquire, and a
    // writer that takes it meanwhile finds the file gone, as after the unlink.
    const withLease = req.get(Headers.lockToken) !== undefined
    if (withLease) await leases.require(req, path)
    // The caller keeps its lease for the path's next file (Headers.keepLease): the key stays until it ends.
    const keepLease = withLease && req.get(Headers.keepLease) === '1'
    const { machineId } = ctx.self()
    // A name that is not a file here is refused before anything is asked or broken.
    if ((await store.stat(path)).kind === 'dir') throw new IsDirectoryError(`is a folder: ${path}`, { path })
    const keyFreed = async (): Promise<void> => {
      if (withLease) return
      const { deleted } = await lock.deleteKey(path, { ifFree: true })
      if (!deleted) throw new LockedError(`${path} is locked by another writer: remove it under its lock`, { path, retryAfterMs: 0 })
    }
    const undoDrop = async (): Promise<void> => { await tryTo(`give ${path} back to the directory`, async () => await ctx.directory().claim(machineId, path, 'file')) }
    // The directory's drop, and without a lease the lock server's removal of a free key, run
    // beside the folder's fsync, the file moved aside meanwhile; if any of them fails, the
    // file and its name are put back (FileStore.remove). Asked of the lock server first, the
    // key was a round trip of its own before the removal began (POST /unlink's mean went from
    // 1.15-1.26 to 1.03-1.05 ms without it); a file whose key a writer holds is rarely removed,
    // and its name is back once the refusal is answered. The client's own copy of the folder
    // drops the name from the answer (changerOf).
    const drop = {
      run: async () => {
        const [dropped, freed] = await Promise.allSettled([ctx.directory().drop(machineId, path, changerOf(req)), keyFreed()])
        if (dropped.status === 'rejected') throw dropped.reason
        if (freed.status === 'rejected') {
          await undoDrop()
          throw freed.reason
        }
      },
      undo: undoDrop
    }
    // Side by side: the removal, the key's removal from the lock server (keys are implicit:
    // one removed early is made again by the next acquire) and the other holders' breaks need
    // not wait for each other. The key of a lease its holder keeps goes later, unless the path
    // is made again first (KeyRemovals).
    let keyRemoved = !withLease
    const [removed, , broken] = await Promise.allSettled([
      store.remove(path, drop),
      withLease && !keepLease ? tryTo(`remove the lock key of ${path}`, async () => { keyRemoved = (await lock.deleteKey(path)).deleted }) : undefined,
      changed(req, path, null)
    ])
    if (removed.status === 'rejected') throw removed.reason
    if (broken.status === 'rejected') throw broken.reason
    if (keepLease) ctx.keyRemovals.later(path)
    // A kept lease is known still: the path's next create under it needs no question to the lock server.
    if (!keepLease || keyRemoved) leases.forget(path)
    // keyRemoved: the lease the unlink came under went with its key, so its holder need not give it back.
    const answer: RemovedAnswer = { path, removed: true, keyRemoved }
    res.json(answer)
  })

  // Disk first here: rmdir(2) is the check that nothing is left in the folder on this server.
  app.post(FileRoutes.rmdir, async (req, res) => {
    const path = queryOf(req).path()
    const { machineId } = ctx.self()
    await store.removeFolder(path)
    try {
      await ctx.directory().drop(machineId, path)
    } catch (err) {
      await tryTo(`make ${path} again`, async () => await store.create(path, 'dir'))
      throw err
    }
    const answer: RemovedAnswer = { path, removed: true }
    res.json(answer)
  })

  app.post(FileRoutes.utimes, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const mtimeMs = query.int('mtimeMs', { min: 0 })
    const atimeMs = query.optionalInt('atimeMs', { min: 0 })
    const meta = await store.setTimes(path, mtimeMs, atimeMs)
    await changed(req, path, meta.version)
    res.json(meta)
  })

  app.post(FileRoutes.chmod, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    // Permission bits only: the kind of entry is not the caller's to change.
    const mode = query.int('mode', { min: 0, max: 0o7777 })
    const meta = await store.chmod(path, mode)
    await changed(req, path, meta.version)
    res.json(meta)
  })

  app.post(FileRoutes.rename, async (req, res) => {
    const body = bodyOf(req)
    const request: RenameRequest = { from: body.path('from'), to: body.path('to'), toToken: body.has('toToken') ? body.string('toToken', 128) : undefined }
    const answer = await renameOnServer(ctx, request, req.get(Headers.lockToken))
    // The holders learn where the file went: a mount with it open follows it there.
    if (answer.kind === 'dir') await ctx.callbacks.breakUnder(answer.from, writerOf(ctx.callbacks, req), answer.to)
    else if (answer.from !== answer.to) await changed(req, answer.from, null, answer.to)
    // A file renamed onto this server's own path: its callbacks are broken here; on another
    // server, the receiving server broke them (PUT /incoming).
    if (answer.kind === 'file' && answer.server.machineId === ctx.self().machineId) await changed(req, answer.to, answer.meta?.version ?? null)
    res.json(answer)
  })

  // The target side of a rename across servers: the bytes arrive under the lease of the
  // file they come from (or of the destination it replaces), and the path is not claimed:
  // the sending server switches the directory once this answer says they are on disk.
  app.put(FileRoutes.incoming, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    await leases.require(req, query.path('lockPath'))
    const meta = await store.receive(path, req, {
      fromVersion: query.int('fromVersion', { min: 0 }),
      mtimeMs: query.int('mtimeMs', { min: 0 }),
      mode: query.optionalInt('mode', { min: 0, max: 0o7777 }),
      target: query.has('target') ? query.string('target', 4096) : undefined,
      replace: query.flag('replace'),
      keepVersion: query.flag('keepVersion')
    })
    stats.incoming++
    stats.incomingBytes += meta.size
    await changed(req, path, meta.version)
    res.json(meta)
  })

  // The sender could not switch the directory: the unclaimed copy goes again.
  app.post(FileRoutes.incomingAbort, async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    await leases.require(req, query.path('lockPath'))
    const found = await store.statOrNull(path)
    if (found) await store.remove(path)
    const answer: RemovedAnswer = { path, removed: found !== null }
    res.json(answer)
  })
}
