import { BadPathError, ConflictError, CrossServerError, IsDirectoryError, NotDirectoryError, NotEmptyError, NotFoundError } from '../../src/shared/errors'
import type { DirectoryEntry, EntryKind, FileMeta } from '../../src/shared/protocol'
import { ancestorsOf, baseName, parentOf } from '../../src/shared/paths'
import { RecentMoves } from './recentMoves'

/**
 * The directory server's map from paths to file servers. A file belongs to exactly one
 * server; a folder exists while any server has it or something below it, so one folder may
 * span several servers.
 */
export class Namespace {
  private readonly files = new Map<string, number>()
  /** folder -> the servers that hold it or anything below it */
  private readonly folders = new Map<string, Set<number>>([['/', new Set()]])
  /** folder -> child name -> kind, so listing a folder never scans the whole map */
  private readonly children = new Map<string, Map<string, EntryKind>>([['/', new Map()]])
  /** Where renames took files, for a mount that did not hear of one (RecentMoves). */
  private readonly moves = new RecentMoves()

  /**
   * Replaces everything a server claimed with `entries`, all or nothing: if any file is
   * already another server's, or clashes with a folder, nothing changes.
   */
  replaceClaims (machineId: number, entries: FileMeta[]): void {
    const clashes: string[] = []
    for (const entry of entries) {
      const clash = this.clashOf(machineId, entry.path, entryKindOf(entry))
      if (clash) clashes.push(clash)
    }
    if (clashes.length > 0) {
      throw new ConflictError(`file server ${machineId} claims paths that are already taken: ${clashes.slice(0, 5).join(', ')}${clashes.length > 5 ? ', ...' : ''}`, { paths: clashes })
    }
    const heldBefore = this.filesOf(machineId)
    this.dropClaims(machineId)
    for (const entry of entries) this.add(machineId, entry.path, entryKindOf(entry))
    for (const path of heldBefore) if (this.files.get(path) !== machineId) this.moves.removed(path)
  }

  /** Where the file that was at `path` is now, if a rename took it and it is still there (RecentMoves). */
  movedTo (path: string): string | undefined {
    const to = this.moves.whereIs(path)
    return to !== undefined && this.files.has(to) ? to : undefined
  }

  /** Adds one entry for a server, refusing a clash. */
  claim (machineId: number, path: string, kind: EntryKind): void {
    const clash = this.clashOf(machineId, path, kind)
    if (clash) throw new ConflictError(clash, { path })
    this.add(machineId, path, kind)
  }

  /**
   * Adds a path a server has just created, refusing one that exists in any form, or whose
   * parent folder does not exist (it may have been removed since the placement).
   */
  claimNew (machineId: number, path: string, kind: EntryKind): void {
    if (path === '/' || this.files.has(path) || this.folders.has(path)) throw new ConflictError(`${path} already exists`, { path })
    this.requireFolder(parentOf(path))
    this.claim(machineId, path, kind)
  }

  /**
   * Another server holds an existing folder too (a drain moves it there before its files,
   * so new files and the moved ones have a place on that server).
   */
  holdFolder (machineId: number, path: string): void {
    this.requireFolder(path)
    this.claim(machineId, path, 'dir')
  }

  /**
   * Drops a server's entry: its file, or its hold on a folder (the folder goes when no
   * server holds it any more). A folder in which the server still holds anything stays.
   */
  drop (machineId: number, path: string): void {
    const owner = this.files.get(path)
    if (owner !== undefined) {
      if (owner !== machineId) throw new ConflictError(`${path} is held by file server ${owner}`, { path })
      this.files.delete(path)
      this.children.get(parentOf(path))?.delete(baseName(path))
      this.moves.removed(path)
      return
    }
    const holders = this.folders.get(path)
    if (!holders?.has(machineId)) throw new NotFoundError(`file server ${machineId} holds no ${path}`, { path })
    if (path === '/') throw new BadPathError('the root folder cannot be removed', { path })
    const prefix = path + '/'
    for (const [name, kind] of this.children.get(path) ?? []) {
      const child = prefix + name
      const held = kind === 'file' ? this.files.get(child) === machineId : this.folders.get(child)?.has(machineId) === true
      if (held) throw new NotEmptyError(`${path} still holds ${name} on file server ${machineId}`, { path })
    }
    holders.delete(machineId)
    if (holders.size === 0) {
      this.folders.delete(path)
      this.children.delete(path)
      this.children.get(parentOf(path))?.delete(baseName(path))
    }
  }

  /** The servers that hold a folder. */
  holdersOf (folder: string): number[] {
    const holders = this.folders.get(folder)
    if (!holders) {
      if (this.files.has(folder)) throw new NotDirectoryError(`not a folder: ${folder}`, { path: folder })
      throw new NotFoundError(`no such folder: ${folder}`, { path: folder })
    }
    return [...holders]
  }

  /**
   * Moves a file from one path (and server) to another in one step: the commit point of a
   * rename. `replaces` is who the caller saw holding `to`; a map that changed since is a
   * conflict and changes nothing.
   */
  switchFile (from: string, fromMachineId: number, to: string, toMachineId: number, replaces: number | null): void {
    const owner = this.files.get(from)
    if (owner === undefined) throw new NotFoundError(`no such file: ${from}`, { path: from })
    if (owner !== fromMachineId) throw new ConflictError(`${from} is held by file server ${owner}, not ${fromMachineId}`, { path: from })
    if (this.folders.has(to)) throw new IsDirectoryError(`${to} is a folder`, { path: to })
    // A drain moves a file to another server at the same path: `to` is `from` then.
    const toOwner = to === from ? null : this.files.get(to) ?? null
    if (toOwner !== replaces) {
      throw new ConflictError(`${to} changed during the rename (now ${toOwner === null ? 'absent' : `on file server ${toOwner}`})`, { path: to })
    }
    this.requireFolder(parentOf(to))
    this.files.delete(from)
    this.children.get(parentOf(from))?.delete(baseName(from))
    this.files.delete(to)
    // What followed a file that `to` held has nothing to follow now.
    if (toOwner !== null) this.moves.removed(to)
    this.claim(toMachineId, to, 'file')
    if (to !== from) this.moves.moved(from, to)
  }

  /**
   * Moves a folder and everything below it to a new path, all on the one server that holds
   * it. `to` may be an empty folder of that server only, which the move replaces. Answers
   * the files that moved, as [old path, new path].
   */
  switchFolder (from: string, to: string, machineId: number): Array<[string, string]> {
    const holders = this.holdersOf(from)
    if (from === '/') throw new BadPathError('the root folder cannot be renamed', { path: from })
    if (to === from || to.startsWith(from + '/')) throw new BadPathError(`cannot move ${from} into itself`, { path: to })
    if (holders.length !== 1 || holders[0] !== machineId) {
      throw new CrossServerError(`${from} spans file servers ${holders.join(', ')}; it cannot be renamed in one step`, { path: from })
    }
    this.requireFolder(parentOf(to))
    if (!this.folders.get(parentOf(to))?.has(machineId)) {
      throw new CrossServerError(`${parentOf(to)} is not on file server ${machineId}`, { path: to })
    }
    if (this.files.has(to)) throw new NotDirectoryError(`${to} is a file`, { path: to })
    const toHolders = this.folders.get(to)
    if (toHolders) {
      if ((this.children.get(to)?.size ?? 0) > 0) throw new NotEmptyError(`${to} is not empty`, { path: to })
      if ([...toHolders].some((id) => id !== machineId)) throw new CrossServerError(`${to} is held by other file servers`, { path: to })
    }
    const moved: Array<[string, string]> = []
    const folders: string[] = []
    const prefix = from + '/'
    for (const path of [...this.files.keys()]) {
      if (!path.startsWith(prefix)) continue
      moved.push([path, to + path.slice(from.length)])
      this.files.delete(path)
    }
    for (const folder of [...this.folders.keys()]) {
      if (folder === from || folder.startsWith(prefix)) {
        folders.push(to + folder.slice(from.length))
        this.folders.delete(folder)
        this.children.delete(folder)
      }
    }
    this.children.get(parentOf(from))?.delete(baseName(from))
    if (toHolders) {
      this.folders.delete(to)
      this.children.delete(to)
    }
    // Parents before children, so each folder's listing exists when its children arrive.
    for (const folder of folders.sort((a, b) => a.length - b.length)) this.add(machineId, folder, 'dir')
    for (const [, path] of moved) this.add(machineId, path, 'file')
    for (const [oldPath, newPath] of moved) this.moves.moved(oldPath, newPath)
    return moved
  }

  private requireFolder (folder: string): void {
    if (this.folders.has(folder)) return
    if (this.files.has(folder)) throw new NotDirectoryError(`not a folder: ${folder}`, { path: folder })
    throw new NotFoundError(`no such folder: ${folder}`, { path: folder })
  }

  has (path: string): boolean {
    return this.files.has(path) || this.folders.has(path)
  }

  lookup (path: string): { kind: EntryKind, machineId?: number } {
    const owner = this.files.get(path)
    if (owner !== undefined) return { kind: 'file', machineId: owner }
    if (this.folders.has(path)) return { kind: 'dir' }
    // A client may then hold a small folder's names and answer its next misses there itself (FolderCopies).
    throw new NotFoundError(`no such file or folder: ${path}`, { path, folderEntries: this.namesBeside(path) })
  }

  /** How many names the folder of `path` holds (undefined for the root, or no such folder): O(1). */
  namesBeside (path: string): number | undefined {
    return path === '/' ? undefined : this.children.get(parentOf(path))?.size
  }

  list (path: string): DirectoryEntry[] {
    const names = this.children.get(path)
    if (!names) {
      if (this.files.has(path)) throw new NotDirectoryError(`not a folder: ${path}`, { path })
      throw new NotFoundError(`no such folder: ${path}`, { path })
    }
    const prefix = path === '/' ? '/' : path + '/'
    // The names alone, sorted by the default comparison (UTF-16 code units, as `<` orders
    // strings): a comparator over [name, kind] pairs took 30-80 ms for 50,000 names, this 10,
    // and a listing holds up every other request of the process while it is built.
    return [...names.keys()].sort().map((name) => {
      const kind = names.get(name) as EntryKind
      const child = prefix + name
      const machineIds = kind === 'file' ? [this.files.get(child) as number] : [...(this.folders.get(child) ?? [])]
      return { name, kind, machineIds }
    })
  }

  /** Drops everything a server held (it was forgotten for good); answers how many files and folder holds went. */
  dropServer (machineId: number): number {
    const held = this.filesOf(machineId)
    let entries = held.length
    for (const [folder, holders] of this.folders) if (folder !== '/' && holders.has(machineId)) entries++
    this.dropClaims(machineId)
    for (const path of held) this.moves.removed(path)
    return entries
  }

  fileCount (): number {
    return this.files.size
  }

  /** How many files each server holds (for operators; walks every file). */
  filesPerServer (): Map<number, number> {
    const counts = new Map<number, number>()
    for (const owner of this.files.values()) counts.set(owner, (counts.get(owner) ?? 0) + 1)
    return counts
  }

  /** What each server holds, as its report would say it (files and folders held, not `/`): enough to build the namespace again. */
  claimsByServer (): Map<number, Array<[string, EntryKind]>> {
    const claims = new Map<number, Array<[string, EntryKind]>>()
    const of = (machineId: number): Array<[string, EntryKind]> => {
      let list = claims.get(machineId)
      if (!list) claims.set(machineId, list = [])
      return list
    }
    for (const [folder, holders] of this.folders) if (folder !== '/') for (const machineId of holders) of(machineId).push([folder, 'dir'])
    for (const [path, machineId] of this.files) of(machineId).push([path, 'file'])
    return claims
  }

  private clashOf (machineId: number, path: string, kind: EntryKind): string | null {
    const owner = this.files.get(path)
    if (kind === 'file') {
      if (owner !== undefined && owner !== machineId) return `${path} is held by file server ${owner}`
      if (this.folders.has(path)) return `${path} is a folder`
    } else if (owner !== undefined) {
      return `${path} is a file on file server ${owner}`
    }
    for (const folder of ancestorsOf(path)) {
      const fileOwner = this.files.get(folder)
      if (fileOwner !== undefined) return `${folder} is a file on file server ${fileOwner}`
    }
    return null
  }

  private filesOf (machineId: number): string[] {
    const held: string[] = []
    for (const [path, owner] of this.files) if (owner === machineId) held.push(path)
    return held
  }

  private add (machineId: number, path: string, kind: EntryKind): void {
    this.moves.arrived(path)
    if (kind === 'file') {
      this.files.set(path, machineId)
    } else {
      this.addFolder(machineId, path)
    }
    for (const folder of ancestorsOf(path)) this.addFolder(machineId, folder)
    if (path !== '/') this.childrenOf(parentOf(path)).set(baseName(path), kind)
  }

  private addFolder (machineId: number, folder: string): void {
    let holders = this.folders.get(folder)
    if (!holders) this.folders.set(folder, holders = new Set())
    holders.add(machineId)
    this.childrenOf(folder)
    if (folder !== '/') this.childrenOf(parentOf(folder)).set(baseName(folder), 'dir')
  }

  private childrenOf (folder: string): Map<string, EntryKind> {
    let names = this.children.get(folder)
    if (!names) this.children.set(folder, names = new Map())
    return names
  }

  private dropClaims (machineId: number): void {
    for (const [path, owner] of this.files) {
      if (owner === machineId) {
        this.files.delete(path)
        this.children.get(parentOf(path))?.delete(baseName(path))
      }
    }
    // Deepest first, so a folder emptied of its last subfolder goes too.
    const folders = [...this.folders.keys()].sort((a, b) => b.length - a.length)
    for (const folder of folders) {
      const holders = this.folders.get(folder) as Set<number>
      holders.delete(machineId)
      if (holders.size === 0 && folder !== '/') {
        this.folders.delete(folder)
        this.children.delete(folder)
        this.children.get(parentOf(folder))?.delete(baseName(folder))
      }
    }
  }
}

/** The directory maps a symbolic link as a file: a name that exactly one file server holds. */
function entryKindOf (entry: FileMeta): EntryKind {
  return entry.kind === 'dir' ? 'dir' : 'file'
}
