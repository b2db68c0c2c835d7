import { ConflictError, NotDirectoryError, NotFoundError } from '../../src/errors'
import type { DirectoryEntry, EntryKind, FileMeta } from '../../src/protocol'
import { ancestorsOf, baseName, parentOf } from '../../src/paths'

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

  /**
   * Replaces everything a server claimed with `entries`, all or nothing: if any file is
   * already another server's, or clashes with a folder, nothing changes.
   */
  replaceClaims (machineId: number, entries: FileMeta[]): void {
    const clashes: string[] = []
    for (const entry of entries) {
      const clash = this.clashOf(machineId, entry.path, entry.kind)
      if (clash) clashes.push(clash)
    }
    if (clashes.length > 0) {
      throw new ConflictError(`file server ${machineId} claims paths that are already taken: ${clashes.slice(0, 5).join(', ')}${clashes.length > 5 ? ', ...' : ''}`, { paths: clashes })
    }
    this.dropClaims(machineId)
    for (const entry of entries) this.add(machineId, entry.path, entry.kind)
  }

  /** Adds one entry for a server, refusing a clash. */
  claim (machineId: number, path: string, kind: EntryKind): void {
    const clash = this.clashOf(machineId, path, kind)
    if (clash) throw new ConflictError(clash, { path })
    this.add(machineId, path, kind)
  }

  lookup (path: string): { kind: EntryKind, machineId?: number } {
    const owner = this.files.get(path)
    if (owner !== undefined) return { kind: 'file', machineId: owner }
    if (this.folders.has(path)) return { kind: 'dir' }
    throw new NotFoundError(`no such file or folder: ${path}`, { path })
  }

  list (path: string): DirectoryEntry[] {
    const names = this.children.get(path)
    if (!names) {
      if (this.files.has(path)) throw new NotDirectoryError(`not a folder: ${path}`, { path })
      throw new NotFoundError(`no such folder: ${path}`, { path })
    }
    const prefix = path === '/' ? '/' : path + '/'
    return [...names].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, kind]) => {
      const child = prefix + name
      const machineIds = kind === 'file' ? [this.files.get(child) as number] : [...(this.folders.get(child) ?? [])]
      return { name, kind, machineIds }
    })
  }

  fileCount (): number {
    return this.files.size
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

  private add (machineId: number, path: string, kind: EntryKind): void {
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
