import type { Express, Request, Response } from 'express'
import { DirectoryRoutes, Headers } from '../../src/shared/protocol'
import { parentOf } from '../../src/shared/paths'
import { jsonBody } from '../common/http'
import { bodyOf } from '../common/input'
import { CallbackTable } from '../file/callbacks'
import { mountCallbackRoutes } from '../file/callbackRoutes'
import { subjectOf } from '../file/callerClient'

/**
 * Folder callbacks, as AFS has them, on the directory server: a client that listed a folder
 * with X-Dfs-Callback: want is promised to hear, over its event channel, before any of the
 * folder's names change (an entry created, removed or renamed, a file server's report,
 * a server that leaves, is forgotten, goes down or comes back). While the promise holds,
 * the client answers readdir and lookups of names in that folder from its copy.
 *
 * The leases, channel, breaks and their acknowledgements are the file servers' own
 * (servers/file/callbacks.ts) with a folder's path as the key. A change breaks the
 * callbacks before the route that made it answers (`changed` is awaited), so once a create,
 * unlink or rename has returned, no client still trusts the old names; a client that does
 * not acknowledge delays it by at most its lease.
 */
export class FolderCallbacks {
  readonly table: CallbackTable

  constructor (leaseMs: number) {
    this.table = new CallbackTable(leaseMs)
  }

  /** The event channel, lease renewal and break acknowledgement routes (as the file servers have them), and POST /folders/changed. */
  mount (app: Express): void {
    const { table } = this
    mountCallbackRoutes(app, table, DirectoryRoutes)
    // A client changed a folder's own attributes on its file servers (chmod, utimes), which
    // the directory does not see: held copies of it and of its parent show them.
    app.post(DirectoryRoutes.folderChanged, jsonBody, async (req, res) => {
      const path = bodyOf(req).path()
      await Promise.all([path, parentOf(path)].map(async (folder) => await table.breakAll(folder, { path: folder, version: null }, undefined)))
      res.json({})
    })
  }

  /**
   * Promises the caller a callback on the folder if it asked for one (called before the
   * folder is read for the answer, so a change in between breaks it), and says so.
   */
  grant (req: Request, res: Response, folder: string): void {
    const client = req.get(Headers.clientId)
    if (req.get(Headers.callback) !== 'want' || client === undefined) return
    if (this.table.grant(client, folder, subjectOf(req))) res.set(Headers.callback, 'granted')
  }

  /**
   * The names of these paths' folders changed (each path's parent), and with `tree` the
   * folders at and under the paths themselves (a folder renamed or dropped): breaks them.
   */
  async changed (paths: string[], tree = false): Promise<void> {
    const folders = new Set(paths.map(parentOf))
    const breaks = [...folders].map(async (folder) => await this.table.breakAll(folder, { path: folder, version: null }, undefined))
    if (tree) {
      for (const path of paths) {
        breaks.push(this.table.breakAll(path, { path, version: null }, undefined))
        breaks.push(this.table.breakUnder(path, undefined))
      }
    }
    await Promise.all(breaks)
  }

  /** Every folder may have changed (a server's report, a server forgotten, left, down or back). */
  async changedEverywhere (): Promise<void> {
    await this.table.breakUnder('/', undefined)
  }

  closeAll (): void {
    this.table.closeAll()
  }
}
