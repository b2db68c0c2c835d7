import { LRUCache } from 'lru-cache'
import { upToEntries } from './lruOptions'
import type { DirectoryApi } from '../shared/api'
import { monotonicMs } from '../shared/clock'
import { NotFoundError } from '../shared/errors'
import { parentOf } from '../shared/paths'
import type { DirectoryEntry, DirectoryListAnswer, FileMeta, LookupAnswer, ServerInfo } from '../shared/protocol'
import type { CallbackRegistry } from './callbacks'

/** Folders whose names are held at most (the least recently used go first). */
const HELD_FOLDERS = 10_000
/**
 * A lookup the directory answers in a folder of at most this many names lists the folder
 * (one request, once) to hold its names: later lookups there (sqlite's journal, editors'
 * swap files, a create's lookup, the fresh lookup before each change, the next file opened)
 * cost no request. A larger folder is not listed for a lookup, so no lookup costs more with
 * the folder's size.
 */
export const SMALL_FOLDER_NAMES = 1000

export interface HeldFolder {
  /** The directory's answer; its entries are out of date after a change of this client's (see changedByMe) until listed again from `entries`. */
  listing: DirectoryListAnswer
  listingStale?: true
  /**
   * The folder's own attributes (mtime, mode), read while this copy was held: they change
   * with its names (a break) or by chmod and utimes, which the directory is told of.
   */
  attributes?: FileMeta
  entries: Map<string, DirectoryEntry>
  servers: Map<number, ServerInfo>
}

/**
 * This client's copies of folders' names (the directory's listings), each held under a
 * folder callback of the directory server (servers/directory/folderCallbacks.ts): until the
 * directory breaks it, which it does before any change to the folder's names is
 * acknowledged, readdir and lookups of names in the folder are answered here with no
 * request. Without a callback (the channel is closed, the lease ran out, a break came)
 * the copy is dropped and the directory is asked, as before.
 */
export class FolderCopies {
  private readonly held = new LRUCache<string, HeldFolder>(upToEntries(HELD_FOLDERS))
  /** Listings for holdIfSmall under way: lookups side by side share one. */
  private readonly holding = new Map<string, Promise<unknown>>()

  constructor (private readonly directory: DirectoryApi, private readonly callbacks: CallbackRegistry) {}

  /** The folder's names: from the held copy while its callback holds, else from the directory (asking for a callback). */
  async list (folder: string): Promise<DirectoryListAnswer> {
    const held = this.current(folder)
    if (held) {
      if (held.listingStale === true) {
        const entries = [...held.entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        const ids = new Set(entries.flatMap((e) => e.machineIds))
        held.listing = { path: folder, entries, servers: [...held.servers.values()].filter((s) => ids.has(s.machineId)) }
        delete held.listingStale
      }
      return held.listing
    }
    if (!this.callbacks.ready(this.directory)) return await this.directory.list(folder)
    const askedAt = monotonicMs()
    const { listing, callback } = await this.directory.listWithCallback(folder)
    if (callback) {
      // Refused (not kept) when a break for the folder came after the request left.
      this.callbacks.granted(this.directory, folder, { path: folder, kind: 'dir', version: 0, size: 0, mtimeMs: 0 }, askedAt)
      if (this.callbacks.current(folder) !== undefined) {
        this.held.set(folder, {
          listing,
          entries: new Map(listing.entries.map((e) => [e.name, e])),
          servers: new Map(listing.servers.map((s) => [s.machineId, s]))
        })
      }
    }
    return listing
  }

  /**
   * What the held copy of a path's folder says of it, as the directory's lookup would: its
   * answer, or NotFoundError for a name not in it; undefined when no copy is held.
   */
  lookup (path: string): LookupAnswer | undefined {
    if (path === '/') return undefined
    const held = this.current(parentOf(path))
    if (!held) return undefined
    const entry = held.entries.get(path.slice(path.lastIndexOf('/') + 1))
    if (!entry) throw new NotFoundError(`no such file or folder: ${path}`, { path })
    const servers = entry.machineIds.flatMap((id) => held.servers.get(id) ?? [])
    if (entry.kind === 'dir') return { path, kind: 'dir', holders: servers }
    return servers.length === 0 ? undefined : { path, kind: 'file', server: servers[0] }
  }

  /**
   * The directory answered a lookup of `path` (found or missed) and said its folder holds
   * `folderEntries` names: a small folder not held yet is listed now under a callback (see
   * SMALL_FOLDER_NAMES), so the next lookups of names in it need no request.
   */
  async holdIfSmall (path: string, folderEntries: unknown): Promise<void> {
    const folder = parentOf(path)
    if (path === '/' || typeof folderEntries !== 'number' || folderEntries > SMALL_FOLDER_NAMES || this.current(folder) !== undefined) return
    // Without a channel to the directory no callback can be had: a listing would buy nothing.
    if (!this.callbacks.ready(this.directory)) return
    let listing = this.holding.get(folder)
    if (listing === undefined) {
      listing = this.list(folder).finally(() => this.holding.delete(folder))
      this.holding.set(folder, listing)
    }
    await listing
  }

  /**
   * This client changed a name in the folder and has the answer: `path` was made as a file
   * on `server`, or (null) removed. The directory spared this client's callback on the
   * folder (it named the client as the changer), so the held copy takes the change itself
   * and stays current, provided no break of the folder came after the request left at
   * `askedAt` (then another change may lie between the copy and ours: the copy is
   * dropped). A change whose outcome is unknown (it failed) goes to `drop` instead.
   */
  changedByMe (path: string, askedAt: number, server: ServerInfo | null): void {
    const folder = parentOf(path)
    const held = this.current(folder)
    const folderMeta = this.callbacks.current(folder)
    if (held === undefined || folderMeta === undefined || !this.callbacks.changedByMe(folder, askedAt, folderMeta)) {
      this.drop(folder)
      return
    }
    const name = path.slice(path.lastIndexOf('/') + 1)
    if (server === null) {
      held.entries.delete(name)
    } else {
      held.entries.set(name, { name, kind: 'file', machineIds: [server.machineId] })
      held.servers.set(server.machineId, server)
    }
    held.listingStale = true
    // The folder's time moved with its names, on its file server: read again under the callback.
    delete held.attributes
  }

  /** Whether the held copy of the path's folder says there is no such name (false when no copy is held). */
  lacks (path: string): boolean {
    if (path === '/') return false
    const held = this.current(parentOf(path))
    return held !== undefined && !held.entries.has(path.slice(path.lastIndexOf('/') + 1))
  }

  /** The held copy of a folder, if any: pass it to keepAttributes after reading the folder's attributes. */
  copyOf (folder: string): HeldFolder | undefined {
    return this.current(folder)
  }

  /** The folder's attributes, read after `held` was current: kept with it if it still is (no break came in between). */
  keepAttributes (folder: string, held: HeldFolder | undefined, meta: FileMeta): void {
    if (held !== undefined && this.current(folder) === held) held.attributes = meta
  }

  /** The folder's own attributes while its copy is held, if they were read under it. */
  attributes (folder: string): FileMeta | undefined {
    return this.current(folder)?.attributes
  }

  /**
   * Stop answering from the copy of this folder (and, with `tree`, of every folder under it).
   * It counts as changed, so a listing already in flight is not held either: the directory
   * does not break this client's callback for its own changes, so a listing that crossed
   * one may miss it with no break to say so.
   */
  drop (folder: string, tree = false): void {
    this.held.delete(folder)
    this.callbacks.changedHere(folder, tree)
    if (!tree) return
    const prefix = folder === '/' ? '/' : folder + '/'
    for (const path of [...this.held.keys()]) {
      if (path.startsWith(prefix)) this.held.delete(path)
    }
  }

  /** Folders held now (for tests). */
  get count (): number {
    return [...this.held.keys()].filter((folder) => this.current(folder) !== undefined).length
  }

  private current (folder: string): HeldFolder | undefined {
    const held = this.held.get(folder)
    if (!held) return undefined
    if (this.callbacks.current(folder) !== undefined) return held
    // A lease that lapsed for a moment keeps the copy for when it is renewed (CallbackRegistry.current).
    if (!this.callbacks.holds(folder)) this.held.delete(folder)
    return undefined
  }
}
