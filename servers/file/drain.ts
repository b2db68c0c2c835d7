import os from 'node:os'
import type { Express } from 'express'
import { DrainApi, DrainRoutes } from '../../src/shared/drainProtocol'
import type { DrainProgress } from '../../src/shared/drainProtocol'
import { ConflictError, LockedError, NotDirectoryError, NotFoundError, ServerUnavailableError } from '../../src/shared/errors'
import { parentOf } from '../../src/shared/paths'
import { leaseCredentialOf } from '../../src/shared/leaseCredential'
import type { LockLease, LookupAnswer, ServerInfo } from '../../src/shared/protocol'
import { allow } from '../common/auth'
import { queryOf } from '../common/input'
import type { MutationContext } from './context'
import { moveFileTo } from './rename'

/** How long one try waits for a file's lock before the drain goes on with the others and comes back to it. */
const LOCK_WAIT_MS = 2_000
/** A file whose lock stays held this long stops the drain (it stays draining; run it again to go on). */
const GIVE_UP_ON_LOCKS_AFTER_MS = 10 * 60_000
/** Free space of the other servers is asked again after this many moves. */
const FREE_SPACE_REFRESH_EVERY = 32
/** Whether the operator put the server back in service is looked at after this many moves. */
const MARK_CHECK_EVERY = 16

type Outcome = 'moved' | 'locked' | 'gone'

/** What leaving the cluster means for the process that runs this file server (startFileServer sets it). */
export interface LeaveHooks {
  /** Just before the directory is asked to let it go: heartbeats stop, so none makes it join again. */
  leaving: () => void
  /** The directory refused: heartbeats go on. */
  stayed: () => void
  /** It left: the process may end. */
  left: () => void
}

/**
 * A file server's own drain (src/shared/drainProtocol.ts), run once the directory has marked
 * it draining: its folders are taken over by servers in service, then each file moves to
 * one of them at the same path, under the file's lock (a held lock is waited for and tried
 * again, never broken) and by the steps of a rename across servers, so a crash leaves it
 * here or there, never both. Readers whose lookup is stale get "not found" here and look
 * again (src/client/locator.ts). When no file is left, the server leaves the directory.
 */
export class FileServerDrain {
  hooks: LeaveHooks = { leaving: () => {}, stayed: () => {}, left: () => {} }
  private progress: DrainProgress | null = null
  private running = false
  private readonly free = new Map<number, number>()
  private movesSinceFreeSpace = 0

  constructor (private readonly ctx: MutationContext) {}

  status (): DrainProgress {
    return this.progress ?? { machineId: this.ctx.self().machineId, state: 'idle', moved: 0, remaining: 0, waitingForLocks: [] }
  }

  /** Starts the drain, or answers the one under way; CONFLICT unless the directory has marked this server draining. */
  async start (): Promise<DrainProgress> {
    if (this.running) return this.status()
    this.running = true
    const me = this.ctx.self()
    let progress: DrainProgress
    try {
      if (await this.stateAtDirectory(me) !== 'draining') {
        throw new ConflictError(`file server ${me.machineId} is not marked draining at the directory server: dfs-serve drain marks it first`, { machineId: me.machineId })
      }
      progress = { machineId: me.machineId, state: 'moving', moved: 0, remaining: (await this.filesHere()).length, waitingForLocks: [] }
    } catch (err) {
      this.running = false
      throw err
    }
    this.progress = progress
    this.ctx.log(`draining: moving this server's files to the others`)
    void this.run(me, progress).then(() => {
      progress.state = 'left'
      this.ctx.log(`drained: ${progress.moved} files moved; this server left the cluster`)
      this.hooks.left()
    }, (err: unknown) => {
      progress.state = 'failed'
      progress.message = err instanceof Error ? err.message : String(err)
      this.ctx.log(`error: the drain stopped: ${progress.message}`)
    }).finally(() => { this.running = false })
    return this.status()
  }

  private async run (me: ServerInfo, progress: DrainProgress): Promise<void> {
    await this.adoptFolders(me)
    // Files made here after the scan (a create that was placed before the mark) are found by the next one.
    for (let round = 1; ; round++) {
      const files = await this.filesHere()
      if (files.length === 0) break
      if (round > 3) throw new ConflictError(`files keep appearing on file server ${me.machineId} while it drains (${files.length} now)`)
      await this.moveAll(me, files, progress)
    }
    this.hooks.leaving()
    try {
      await new DrainApi(this.ctx.directory().transport).leave(me.machineId)
    } catch (err) {
      this.hooks.stayed()
      throw err
    }
    await this.removeEmptyFolders()
  }

  /**
   * Every folder this server holds alone gets a holder in service first (parents before
   * children): the moved files need their folder there, and so do files created meanwhile.
   */
  private async adoptFolders (me: ServerInfo): Promise<void> {
    const folders = (await this.ctx.store.scan()).filter((f) => f.kind === 'dir')
    folders.sort((a, b) => depth(a.path) - depth(b.path))
    for (const folder of folders) {
      const found = await this.lookupOrNull(folder.path)
      if (found?.kind !== 'dir') continue
      if ((found.holders ?? []).some((h) => h.machineId !== me.machineId && h.state === 'up')) continue
      const target = await this.targetFor(folder.path, me)
      await new DrainApi(this.ctx.peer(target).transport).adoptFolder(folder.path, folder.mode)
      this.ctx.log(`folder ${folder.path} is held by file server ${target.machineId} too`)
    }
  }

  /** Moves the files, coming back to those whose lock was held until they moved or too long has passed. */
  private async moveAll (me: ServerInfo, files: string[], progress: DrainProgress): Promise<void> {
    const giveUpAt = Date.now() + GIVE_UP_ON_LOCKS_AFTER_MS
    let pending = files
    progress.remaining = pending.length
    let sinceMarkCheck = 0
    const stillDraining = async (): Promise<void> => {
      sinceMarkCheck = 0
      if (await this.stateAtDirectory(me) !== 'draining') throw new ConflictError(`file server ${me.machineId} was put back in service; the drain stopped`)
    }
    while (pending.length > 0) {
      const locked: string[] = []
      // Each round after the first goes back to files whose lock was held: asked first too.
      if (pending !== files) await stillDraining()
      for (const path of pending) {
        if (++sinceMarkCheck >= MARK_CHECK_EVERY) await stillDraining()
        const outcome = await this.moveOne(me, path)
        if (outcome === 'locked') {
          locked.push(path)
          continue
        }
        progress.remaining--
        if (outcome === 'moved') progress.moved++
      }
      progress.waitingForLocks = locked
      pending = locked
      if (pending.length > 0 && Date.now() >= giveUpAt) {
        throw new LockedError(`${pending.length} files could not move: their locks stayed held for ${GIVE_UP_ON_LOCKS_AFTER_MS / 60_000} min (${pending.slice(0, 3).join(', ')}${pending.length > 3 ? ', ...' : ''})`)
      }
    }
  }

  /** One file, under its lock: moved, or its lock is held (tried again later), or it went meanwhile. */
  private async moveOne (me: ServerInfo, path: string): Promise<Outcome> {
    const { lock, store, log } = this.ctx
    let lease: LockLease
    try {
      lease = await lock.acquire({ path, owner: `${os.hostname()}:${process.pid}:drain`, waitMs: LOCK_WAIT_MS })
    } catch (err) {
      if (err instanceof LockedError) return 'locked'
      // No key: the file went (its key with it) while this drain waited.
      if (err instanceof NotFoundError && await store.statOrNull(path) === null) return 'gone'
      throw err
    }
    // A big file may take longer to send than a lease lasts.
    const renewal = setInterval(() => { void lock.renew(path, leaseCredentialOf(lease)).catch(() => {}) }, Math.max(100, Math.floor(lease.ttlMs / 3)))
    renewal.unref()
    try {
      if (await store.statOrNull(path) === null) return 'gone'
      const found = await this.lookupOrNull(path)
      // Renamed or removed while this drain waited for its lock: not this server's to move.
      if (found?.server?.machineId !== me.machineId) return 'gone'
      const target = await this.targetFor(path, me)
      const moved = await moveFileTo(this.ctx, path, target, leaseCredentialOf(lease))
      // Clients that were promised this server's copy hear it left; they find it anew.
      await this.ctx.callbacks.breakAll(path, { path, version: null }, undefined)
      this.free.set(target.machineId, (this.free.get(target.machineId) ?? 0) - (moved.meta?.size ?? 0))
      return 'moved'
    } catch (err) {
      log(`could not move ${path}: ${(err as Error).message}`)
      throw err
    } finally {
      clearInterval(renewal)
      await lock.release(path, leaseCredentialOf(lease)).catch(() => {})
    }
  }

  /** A server in service that holds the path's folder (any of them for the root), the one with the most free space. */
  private async targetFor (path: string, me: ServerInfo): Promise<ServerInfo> {
    const parent = parentOf(path)
    const holders = parent === '/' ? (await this.ctx.directory().servers()).servers : (await this.ctx.directory().lookup(parent)).holders ?? []
    const candidates = holders.filter((h) => h.machineId !== me.machineId && h.state === 'up')
    if (candidates.length === 0) throw new ServerUnavailableError(`no file server in service holds ${parent}: ${path} has nowhere to go`, { path })
    if (this.movesSinceFreeSpace++ % FREE_SPACE_REFRESH_EVERY === 0 || candidates.some((c) => !this.free.has(c.machineId))) await this.askFreeSpace(candidates)
    return candidates.reduce((best, c) => ((this.free.get(c.machineId) ?? -1) > (this.free.get(best.machineId) ?? -1) ? c : best))
  }

  private async askFreeSpace (servers: ServerInfo[]): Promise<void> {
    await Promise.all(servers.map(async (server) => {
      const free = await this.ctx.peer(server).statfs().then((s) => s.freeBytes, () => -1)
      this.free.set(server.machineId, free)
    }))
  }

  private async filesHere (): Promise<string[]> {
    return (await this.ctx.store.scan()).filter((f) => f.kind !== 'dir').map((f) => f.path)
  }

  private async stateAtDirectory (me: ServerInfo): Promise<string | undefined> {
    const { servers } = await this.ctx.directory().servers()
    return servers.find((s) => s.machineId === me.machineId)?.state
  }

  private async lookupOrNull (path: string): Promise<LookupAnswer | null> {
    try {
      return await this.ctx.directory().lookup(path)
    } catch (err) {
      if (err instanceof NotFoundError) return null
      throw err
    }
  }

  /** What is left on disk once the server left: empty folders (their holds went with it). The state folder stays. */
  private async removeEmptyFolders (): Promise<void> {
    const folders = (await this.ctx.store.scan()).filter((f) => f.kind === 'dir').map((f) => f.path)
    folders.sort((a, b) => depth(b) - depth(a))
    for (const folder of folders) {
      await this.ctx.store.removeFolder(folder).catch((err: Error) => this.ctx.log(`left ${folder} on disk: ${err.message}`))
    }
  }
}

function depth (path: string): number {
  return path.split('/').length
}

/** The drain's routes on a file server: start it and follow it (an operator's), and take a draining server's folder over (a peer's). */
export function mountDrainRoutes (app: Express, ctx: MutationContext, drain: FileServerDrain): void {
  app.post(DrainRoutes.drain, allow('server'), async (_req, res) => {
    res.json(await drain.start())
  })

  app.get(DrainRoutes.drain, allow('server'), (_req, res) => {
    res.json(drain.status())
  })

  app.post(DrainRoutes.adoptFolder, allow('server'), async (req, res) => {
    const query = queryOf(req)
    const path = query.path()
    const mode = query.optionalInt('mode', { min: 0, max: 0o7777 })
    const existing = await ctx.store.statOrNull(path)
    if (existing !== null && existing.kind !== 'dir') throw new NotDirectoryError(`${path} is a file on file server ${ctx.self().machineId}`, { path })
    const meta = existing ?? await ctx.store.create(path, 'dir', { mode })
    await new DrainApi(ctx.directory().transport).holdFolder(ctx.self().machineId, path)
    res.json(meta)
  })
}
