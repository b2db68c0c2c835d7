import { LRUCache } from 'lru-cache'
import type { DirectoryApi } from '../shared/api'
import { monotonicMs } from '../shared/clock'
import { NotFoundError } from '../shared/errors'
import { parentOf } from '../shared/paths'
import type { DirectoryEntry, DirectoryListAnswer, FileMeta, LookupAnswer, ServerInfo } from '../shared/protocol'
import type { CallbackRegistry } from './callbacks'

/** Folders whose names are held at most (the least recently used go first). */
const HELD_FOLDERS = 10_000

export interface HeldFolder {
  listing: DirectoryListAnswer
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
  private readonly held = new LRUCache<string, HeldFolder>({ max: HELD_FOLDERS })

  constructor (private readonly directory: DirectoryApi, private readonly callbacks: CallbackRegistry) {}

  /** The folder's names: from the held copy while its callback holds, else from the directory (asking for a callback). */
  async list (folder: string): Promise<DirectoryListAnswer> {
    const held = this.current(folder)
    if (held) return held.listing
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

  /** Stop answering from the copy of this folder (and, with `tree`, of every folder under it). */
  drop (folder: string, tree = false): void {
    this.held.delete(folder)
    this.callbacks.drop(folder)
    if (!tree) return
    const prefix = folder === '/' ? '/' : folder + '/'
    for (const path of [...this.held.keys()]) {
      if (path.startsWith(prefix)) this.drop(path)
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
