import type { Express, Request, Response } from 'express'
import { DirectoryRoutes, Headers } from '../../src/shared/protocol'
import { parentOf } from '../../src/shared/paths'
import { jsonBody } from '../common/http'
import { bodyOf } from '../common/input'
import type { Fields } from '../common/input'
import { CallbackTable } from '../file/callbacks'
import { mountCallbackRoutes } from '../file/callbackRoutes'
import { grantCaller } from '../file/callerClient'

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
    if (req.get(Headers.callback) === 'want' && grantCaller(this.table, req, folder)) res.set(Headers.callback, 'granted')
  }

  /**
   * The client a file server names as the maker of a change (changerClient and
   * changerSubject, see Changer in protocol.ts), if that client id is live here under that
   * subject: its callback on the folder is spared, and it applies the change to its copy
   * itself. Anyone else (an id of another subject, an unknown one) is nobody: broken as usual.
   */
  changerOf (fields: Fields): string | undefined {
    if (!fields.has('changerClient')) return undefined
    const subject = fields.has('changerSubject') ? fields.string('changerSubject', 1024) : undefined
    return this.table.own(fields.string('changerClient', 128), subject)
  }

  /**
   * The names of these paths' folders changed (each path's parent), and with `tree` the
   * folders at and under the paths themselves (a folder renamed or dropped): breaks them,
   * all but `changer`'s own callbacks (see changerOf).
   */
  async changed (paths: string[], tree = false, changer?: string): Promise<void> {
    const folders = new Set(paths.map(parentOf))
    const breaks = [...folders].map(async (folder) => await this.table.breakAll(folder, { path: folder, version: null }, changer))
    if (tree) {
      for (const path of paths) {
        breaks.push(this.table.breakAll(path, { path, version: null }, changer))
        breaks.push(this.table.breakUnder(path, changer))
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
