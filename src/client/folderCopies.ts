import { LRUCache } from 'lru-cache'
import { upToEntries } from './lruOptions'
import type { DirectoryApi } from '../shared/api'
import { monotonicMs } from '../shared/clock'
import { NotFoundError, withoutStack } from '../shared/errors'
import { baseName, parentOf } from '../shared/paths'
import type { DirectoryEntry, DirectoryListAnswer, FileMeta, LookupAnswer, ServerInfo } from '../shared/protocol'
import type { CallbackRegistry } from './callbacks'

/** Folders whose names are held at most (the least recently used go first). */
const HELD_FOLDERS = 10_000
/**
 * Names held at most, over all folders, each folder counting as FOLDER_WEIGHT names besides
 * its own: about 200 bytes each, so 100 MB at most however many large folders a mount walks
 * (a folder of 50,000 names is about 10 MB), and 10,000 empty folders. A copy is weighed as
 * it is listed; the names this client adds to it later are not counted.
 */
const HELD_NAMES = 500_000
const FOLDER_WEIGHT = HELD_NAMES / HELD_FOLDERS
/**
 * A lookup the directory answers in a folder of at most this many names lists the folder
 * (one request, once) to hold its names: later lookups there (sqlite's journal, editors'
 * swap files, a create's lookup, the fresh lookup before each change, the next file opened)
 * cost no request.
 */
export const SMALL_FOLDER_NAMES = 1000

/**
 * A larger folder is listed once this client has asked the directory about names in it as
 * many times as it has names per this many (a `tar -x` or `cp -r` into a folder of 50,000
 * files: after 200 lookups). Measured here, a lookup costs about what listing 250 to 400
 * names does, so by then the lookups have cost about what the listing will: holding the
 * folder never costs more than about twice what asking for each name would, however large
 * the folder (the ski-rental bound), and from then on a lookup there costs no request. The
 * listing goes behind the lookup that earned it, so no single lookup waits for a cost that
 * grows with the folder's size.
 */
export const LISTED_NAMES_PER_LOOKUP = 250

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
  /**
   * Names this client changed while the listing was under way: the listing may show each
   * before or after the change, and another client's change after ours but before the
   * listing would have sent no break (no callback was held yet). A lookup of one asks the
   * directory, and a readdir lists the folder again.
   */
  unsure?: Set<string>
  /** When the listing was asked for (monotonic ms): a change of this client's asked for before it may be older than the listing. */
  listedAt: number
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
  private readonly held = new LRUCache<string, HeldFolder>({ maxSize: HELD_NAMES, sizeCalculation: (held) => FOLDER_WEIGHT + held.entries.size })
  /** Listings for holdIfWorthIt under way: lookups side by side share one. */
  private readonly holding = new Map<string, Promise<unknown>>()
  /** Per large folder not held: how many lookups of names in it the directory answered since (LISTED_NAMES_PER_LOOKUP). */
  private readonly lookupsIn = new LRUCache<string, number>(upToEntries(HELD_FOLDERS))
  /** Per folder whose listing is under way: the names of this client's own changes there answered meanwhile (see changedByMe). */
  private readonly listingsUnderWay = new Map<string, { underWay: number, changed: string[] }>()

  constructor (private readonly directory: DirectoryApi, private readonly callbacks: CallbackRegistry) {}

  /** The folder's names: from the held copy while its callback holds, else from the directory (asking for a callback). */
  async list (folder: string): Promise<DirectoryListAnswer> {
    const held = this.current(folder)
    if (held?.unsure !== undefined) this.held.delete(folder)
    else if (held) {
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
    const ownChanges = this.listingsUnderWay.get(folder) ?? { underWay: 0, changed: [] }
    this.listingsUnderWay.set(folder, ownChanges)
    ownChanges.underWay++
    const ownChangesBefore = ownChanges.changed.length
    try {
      const { listing, callback } = await this.directory.listWithCallback(folder)
      if (callback) {
        // Refused (not kept) when a break for the folder came after the request left.
        this.callbacks.granted(this.directory, folder, { path: folder, kind: 'dir', version: 0, size: 0, mtimeMs: 0 }, askedAt)
        if (this.callbacks.current(folder) !== undefined) {
          const held: HeldFolder = {
            listing,
            entries: new Map(listing.entries.map((e) => [e.name, e])),
            servers: new Map(listing.servers.map((s) => [s.machineId, s])),
            listedAt: askedAt
          }
          for (const name of ownChanges.changed.slice(ownChangesBefore)) markUnsure(held, name)
          this.held.set(folder, held)
        }
      }
      return listing
    } finally {
      if (--ownChanges.underWay === 0) this.listingsUnderWay.delete(folder)
    }
  }

  /**
   * What the held copy of a path's folder says of it, as the directory's lookup would: its
   * answer, or NotFoundError for a name not in it; undefined when no copy is held.
   */
  lookup (path: string): LookupAnswer | undefined {
    if (path === '/') return undefined
    const held = this.current(parentOf(path))
    if (!held) return undefined
    const name = baseName(path)
    if (held.unsure?.has(name) === true) return undefined
    const entry = held.entries.get(name)
    if (!entry) throw withoutStack(() => new NotFoundError(`no such file or folder: ${path}`, { path }))
    const servers = entry.machineIds.flatMap((id) => held.servers.get(id) ?? [])
    if (entry.kind === 'dir') return { path, kind: 'dir', holders: servers }
    return servers.length === 0 ? undefined : { path, kind: 'file', server: servers[0] }
  }

  /**
   * The directory answered a lookup of `path` (found or missed) and said its folder holds
   * `folderEntries` names: a small folder not held yet is listed now under a callback (see
   * SMALL_FOLDER_NAMES), so the next lookups of names in it need no request; a larger one
   * once enough lookups there have earned it (LISTED_NAMES_PER_LOOKUP), not waited for.
   */
  async holdIfWorthIt (path: string, folderEntries: unknown): Promise<void> {
    const folder = parentOf(path)
    if (path === '/' || typeof folderEntries !== 'number' || this.current(folder) !== undefined) return
    // Without a channel to the directory no callback can be had: a listing would buy nothing.
    if (!this.callbacks.ready(this.directory)) return
    if (folderEntries > SMALL_FOLDER_NAMES) {
      const lookups = (this.lookupsIn.get(folder) ?? 0) + 1
      if (lookups * LISTED_NAMES_PER_LOOKUP < folderEntries) {
        this.lookupsIn.set(folder, lookups)
        return
      }
      this.lookupsIn.delete(folder)
      this.holdNow(folder).catch(() => {})
      return
    }
    await this.holdNow(folder)
  }

  /** Lists the folder under a callback, to hold its names; side by side callers share one listing. */
  private async holdNow (folder: string): Promise<void> {
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
    const name = baseName(path)
    const held = this.current(folder)
    const underWay = this.listingsUnderWay.get(folder)
    if (held === undefined && underWay !== undefined) {
      // No copy now, a listing under way: it is held still, with the name marked unsure
      // (HeldFolder.unsure), instead of being refused as a copy crossed by a change. A tar -x
      // into a large folder changes it every few milliseconds, faster than it can be listed.
      this.held.delete(folder)
      this.callbacks.drop(folder)
      underWay.changed.push(name)
      return
    }
    const folderMeta = this.callbacks.current(folder)
    if (held === undefined || folderMeta === undefined || !this.callbacks.changedByMe(folder, askedAt, folderMeta)) {
      this.drop(folder)
      return
    }
    // Asked for before the listing was: the listing may show another client's change made
    // after ours, which sent no break (this client held no callback on the folder yet).
    if (askedAt < held.listedAt) markUnsure(held, name)
    else applyChange(held, name, server)
  }

  /** Whether the held copy of the path's folder says there is no such name (false when no copy is held). */
  lacks (path: string): boolean {
    if (path === '/') return false
    const held = this.current(parentOf(path))
    const name = baseName(path)
    return held !== undefined && held.unsure?.has(name) !== true && !held.entries.has(name)
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

/** A name this client changed, which the held copy may or may not show as it now is (HeldFolder.unsure). */
function markUnsure (held: HeldFolder, name: string): void {
  held.unsure ??= new Set()
  held.unsure.add(name)
  // The folder's time moved with its names, on its file server: read again under the callback.
  delete held.attributes
}

/** A name made on `server` in a held folder, or (null) removed from it. */
function applyChange (held: HeldFolder, name: string, server: ServerInfo | null): void {
  // Made or removed under the copy's callback, with no break since: known again.
  held.unsure?.delete(name)
  if (held.unsure?.size === 0) delete held.unsure
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
