import type { Express, Response } from 'express'
import { ConflictError, ForbiddenError } from '../../src/shared/errors'
import { DrainRoutes } from '../../src/shared/drainProtocol'
import type { DrainMarkAnswer, LeaveAnswer } from '../../src/shared/drainProtocol'
import { allow, callerOf } from '../common/auth'
import type { Logger } from '../common/http'
import { bodyOf } from '../common/input'
import type { Namespace } from './namespace'
import type { FolderCallbacks } from './folderCallbacks'
import type { ServerRegistry } from './registry'

export interface DrainRouteSources {
  registry: ServerRegistry
  namespace: Namespace
  /** Broken as the server's folder holds change (another takes a folder over, the server leaves). */
  folders: FolderCallbacks
  log: Logger
  machineIdParam: (value: string | string[] | undefined) => number
  /** 403 unless the caller is the file server bound to this machine id. */
  requireBoundServer: (res: Response, machineId: number) => void
}

/**
 * The directory's part in draining a file server (src/shared/drainProtocol.ts): an operator
 * marks it draining (placement then skips it) or back in service; other servers take its
 * folders over; once it holds no file it leaves, with its folder holds.
 */
export function mountDrainRoutes (app: Express, { registry, namespace, folders, log, machineIdParam, requireBoundServer }: DrainRouteSources): void {
  /** An operator's call (dfs-serve drain, with the cluster key): not a client's, nor one file server's on another. */
  const requireOperator = (res: Response, machineId: number): void => {
    if (callerOf(res).serverId !== null) throw new ForbiddenError('a file server may not drain another', { machineId })
  }

  app.post(DrainRoutes.mark(':machineId'), allow('server'), async (req, res) => {
    const machineId = machineIdParam(req.params.machineId)
    requireOperator(res, machineId)
    const server = registry.info(machineId)
    if (server.state === 'down') throw new ConflictError(`file server ${machineId} at ${server.url} is down: its files cannot move (dfs-serve forget-server drops a dead one)`, { machineId })
    const others = registry.up().filter((s) => s.machineId !== machineId && s.state === 'up')
    if (others.length === 0) {
      throw new ConflictError(`file server ${machineId} is the only file server in service: its files have nowhere to go (start another one first)`, { machineId })
    }
    if (!registry.isDraining(machineId)) log(`file server ${machineId} at ${server.url} is draining: no new files go there`)
    await registry.setDraining(machineId, true)
    const answer: DrainMarkAnswer = { server: registry.info(machineId), draining: true }
    res.json(answer)
  })

  app.delete(DrainRoutes.mark(':machineId'), allow('server'), async (req, res) => {
    const machineId = machineIdParam(req.params.machineId)
    requireOperator(res, machineId)
    if (registry.isDraining(machineId)) log(`file server ${machineId} is back in service`)
    await registry.setDraining(machineId, false)
    const answer: DrainMarkAnswer = { server: registry.info(machineId), draining: false }
    res.json(answer)
  })

  app.post(DrainRoutes.holdFolder(':machineId'), allow('server'), async (req, res) => {
    const machineId = machineIdParam(req.params.machineId)
    requireBoundServer(res, machineId)
    if (registry.stateOf(machineId) !== 'up') throw new ConflictError(`file server ${machineId} is not in service: it takes no folder over`, { machineId })
    const path = bodyOf(req).path()
    namespace.holdFolder(machineId, path)
    await folders.changed([path])
    log(`file server ${machineId} holds ${path} too`)
    res.json({})
  })

  app.post(DrainRoutes.leave(':machineId'), allow('server'), async (req, res) => {
    const machineId = machineIdParam(req.params.machineId)
    requireBoundServer(res, machineId)
    const files = namespace.filesPerServer().get(machineId) ?? 0
    if (files > 0) throw new ConflictError(`file server ${machineId} still holds ${files} files: it leaves once they have moved`, { machineId, files })
    const { url } = registry.info(machineId)
    await registry.leave(machineId)
    const entries = namespace.dropServer(machineId)
    await folders.changedEverywhere()
    log(`file server ${machineId} at ${url} was drained and left (${entries} folder holds dropped)`)
    const answer: LeaveAnswer = { machineId, left: true, entries }
    res.json(answer)
  })
}
