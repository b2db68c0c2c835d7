import type { Express, Request } from 'express'
import { BadRequestError, IsDirectoryError, ServerUnavailableError } from '../../src/shared/errors'
import type { EntryKind, FileMeta, FileServerStats, RemovedAnswer, ServerInfo, StatfsAnswer } from '../../src/shared/protocol'
import { DirectoryRoutes, FileRoutes, LockRoutes } from '../../src/shared/protocol'
import type { ServiceClient } from '../../src/shared/transport'
import { integerParam, pathParam } from '../common/http'
import type { Logger } from '../common/http'
import type { FileStore } from './fileStore'
import type { LeaseGuard } from './leaseGuard'
import { renameOnServer } from './rename'

/** What the routes that change the namespace or a file's bytes need of their file server. */
export interface MutationContext {
  store: FileStore
  lock: ServiceClient
  leases: LeaseGuard
  stats: FileServerStats
  log: Logger
  /** The directory server, and who this server is there, once it has joined. */
  directory: () => ServiceClient
  self: () => ServerInfo
  /** A client for another file server (a rename across servers). */
  peer: (server: ServerInfo) => ServiceClient
}

/** The context's directory and identity, or 503 before the server has joined a cluster. */
export function joined (directory: ServiceClient | null, self: () => ServerInfo | null): Pick<MutationContext, 'directory' | 'self'> {
  const notJoined = (): never => { throw new ServerUnavailableError('this file server has not joined a directory server yet') }
  return {
    directory: () => directory ?? notJoined(),
    self: () => self() ?? notJoined()
  }
}

/**
 * Creating, replacing, truncating, removing and renaming. Each answers only once the change
 * is on disk, and tells the directory and lock servers what they must know: this server is
 * the one that reports its entries. A step that fails undoes the ones before it where it
 * can, so a path is left as it was or as asked, and the caller gets the typed error.
 */
export function mountMutationRoutes (app: Express, ctx: MutationContext): void {
  const { store, lock, leases, stats, log } = ctx

  /** Runs a clean-up step whose failure must not hide the error that made it necessary. */
  const tryTo = async (what: string, step: () => Promise<unknown>): Promise<void> => {
    try {
      await step()
    } catch (err) {
      log(`could not ${what}: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  app.get(FileRoutes.statfs, async (_req, res) => {
    const answer: StatfsAnswer = await store.statfs()
    res.json(answer)
  })

  // Disk first (O_EXCL), then the directory, then the lock key: a path is visible only
  // once its file exists, and a claim the directory refuses takes the file away again.
  app.post(FileRoutes.create, async (req, res) => {
    const path = pathParam(req)
    const kind = kindParam(req)
    const { machineId } = ctx.self()
    const meta = await store.create(path, kind)
    const undoCreate = async (): Promise<void> => {
      await tryTo(`remove ${path} again`, async () => kind === 'file' ? await store.remove(path) : await store.removeFolder(path))
    }
    try {
      await ctx.directory().post(DirectoryRoutes.entries(machineId), { path, kind })
    } catch (err) {
      await undoCreate()
      throw err
    }
    if (kind === 'file') {
      try {
        await lock.post(LockRoutes.keys, { paths: [path] })
      } catch (err) {
        await tryTo(`drop ${path} from the directory`, async () => await ctx.directory().delete(DirectoryRoutes.entries(machineId), { path }))
        await undoCreate()
        throw err
      }
    }
    log(`created ${kind === 'dir' ? 'folder' : 'file'} ${path}`)
    res.json(meta)
  })

  app.put(FileRoutes.content, async (req, res) => {
    const path = pathParam(req)
    const meta: FileMeta = await store.overwrite(path, req, async () => await leases.require(req, path))
    stats.overwrites++
    res.json(meta)
  })

  app.post(FileRoutes.truncate, async (req, res) => {
    const path = pathParam(req)
    const size = integerParam(req, 'size', { min: 0 })
    res.json(await store.truncate(path, size, async () => await leases.require(req, path)))
  })

  // The directory first: once it has forgotten the path no reader finds it, so what
  // happens on disk after that is invisible; if the directory refuses, nothing changed.
  app.post(FileRoutes.unlink, async (req, res) => {
    const path = pathParam(req)
    await leases.require(req, path)
    const { machineId } = ctx.self()
    const current = await store.stat(path)
    if (current.kind !== 'file') throw new IsDirectoryError(`is a folder: ${path}`, { path })
    await ctx.directory().delete(DirectoryRoutes.entries(machineId), { path })
    try {
      await store.remove(path)
    } catch (err) {
      await tryTo(`give ${path} back to the directory`, async () => await ctx.directory().post(DirectoryRoutes.entries(machineId), { path, kind: 'file' }))
      throw err
    }
    leases.forget(path)
    await tryTo(`remove the lock key of ${path}`, async () => await lock.delete(LockRoutes.keys, { path }))
    const answer: RemovedAnswer = { path, removed: true }
    res.json(answer)
  })

  // Disk first here: rmdir(2) is the check that nothing is left in the folder on this server.
  app.post(FileRoutes.rmdir, async (req, res) => {
    const path = pathParam(req)
    const { machineId } = ctx.self()
    await store.removeFolder(path)
    try {
      await ctx.directory().delete(DirectoryRoutes.entries(machineId), { path })
    } catch (err) {
      await tryTo(`make ${path} again`, async () => await store.create(path, 'dir'))
      throw err
    }
    const answer: RemovedAnswer = { path, removed: true }
    res.json(answer)
  })

  app.post(FileRoutes.utimes, async (req, res) => {
    const path = pathParam(req)
    const mtimeMs = integerParam(req, 'mtimeMs', { min: 0 })
    const atimeMs = integerParam(req, 'atimeMs', { min: 0, optional: true })
    res.json(await store.setTimes(path, mtimeMs, atimeMs))
  })

  app.post(FileRoutes.chmod, async (req, res) => {
    const path = pathParam(req)
    const mode = integerParam(req, 'mode', { min: 0 })
    if (mode > 0o7777) throw new BadRequestError('mode holds permission bits only (at most 0o7777)', { mode })
    res.json(await store.chmod(path, mode))
  })

  app.post(FileRoutes.rename, async (req, res) => {
    res.json(await renameOnServer(ctx, req))
  })

  // The target side of a rename across servers: the bytes arrive under the lease of the
  // file they come from (or of the destination it replaces), and the path is not claimed:
  // the sending server switches the directory once this answer says they are on disk.
  app.put(FileRoutes.incoming, async (req, res) => {
    const path = pathParam(req)
    await leases.require(req, pathParam(req, 'lockPath'))
    const meta = await store.receive(path, req, {
      fromVersion: integerParam(req, 'fromVersion', { min: 0 }),
      mtimeMs: integerParam(req, 'mtimeMs', { min: 0 }),
      mode: integerParam(req, 'mode', { min: 0, optional: true }),
      replace: req.query.replace === 'true'
    })
    stats.incoming++
    stats.incomingBytes += meta.size
    res.json(meta)
  })

  // The sender could not switch the directory: the unclaimed copy goes again.
  app.post(FileRoutes.incomingAbort, async (req, res) => {
    const path = pathParam(req)
    await leases.require(req, pathParam(req, 'lockPath'))
    const found = await store.statOrNull(path)
    if (found) await store.remove(path)
    const answer: RemovedAnswer = { path, removed: found !== null }
    res.json(answer)
  })
}

function kindParam (req: Request): EntryKind {
  const kind = req.query.kind ?? 'file'
  if (kind !== 'file' && kind !== 'dir') throw new BadRequestError(`kind must be 'file' or 'dir', not ${String(kind)}`)
  return kind
}
