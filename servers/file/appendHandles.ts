import type fsp from 'node:fs/promises'

/** Append handles kept open at most: a log written line by line keeps its one; a burst over many files opens again. */
export const APPEND_HANDLES_KEPT = 64

/** An O_APPEND handle of a file, and the dev:ino it was checked to be when it was opened. */
export interface AppendHandle {
  handle: fsp.FileHandle
  inode: string
}

/**
 * Open append handles per path, so an append to a file that was appended to lately costs no
 * open, fstat and close. A handle is only ever used for the file it was opened on: the caller
 * checks the path as for any append (lstatInside) and takes the handle only if the path still
 * names the same inode (an inode cannot be reused while a handle keeps it open), so a file
 * replaced, renamed or unlinked since is opened afresh, and the confinement checks stay those
 * of an open. Callers hold the path's write lock while a handle is out (take, then keep).
 * Handles of files that went away are closed early (drop) so their space is freed.
 */
export class AppendHandles {
  /** In order of last use, the oldest first. */
  private readonly kept = new Map<string, AppendHandle>()

  constructor (private readonly cap = APPEND_HANDLES_KEPT) {}

  /** The path's handle if it is still of `inode` (it is then the caller's until keep); any other is closed. */
  take (path: string, inode: string): AppendHandle | undefined {
    const entry = this.kept.get(path)
    if (entry === undefined) return undefined
    this.kept.delete(path)
    if (entry.inode === inode) return entry
    closeQuietly(entry)
    return undefined
  }

  /** Keeps a handle for the path's next append, closing the least lately used past the cap. */
  keep (path: string, entry: AppendHandle): void {
    const previous = this.kept.get(path)
    if (previous !== undefined && previous !== entry) closeQuietly(previous)
    this.kept.delete(path)
    this.kept.set(path, entry)
    for (const [oldest, old] of this.kept) {
      if (this.kept.size <= this.cap) break
      this.kept.delete(oldest)
      closeQuietly(old)
    }
  }

  /** The file at the path went away or was replaced: its handle is closed. */
  drop (path: string): void {
    const entry = this.kept.get(path)
    if (entry === undefined) return
    this.kept.delete(path)
    closeQuietly(entry)
  }

  /** Every handle of a file at or below a folder (moved or removed). */
  dropUnder (folder: string): void {
    const prefix = folder.endsWith('/') ? folder : folder + '/'
    for (const path of [...this.kept.keys()]) if (path === folder || path.startsWith(prefix)) this.drop(path)
  }

  get size (): number {
    return this.kept.size
  }

  async closeAll (): Promise<void> {
    const entries = [...this.kept.values()]
    this.kept.clear()
    await Promise.all(entries.map(async ({ handle }) => await handle.close().catch(() => {})))
  }
}

/** Nothing waits on a close: the bytes were synced before the handle was kept. */
function closeQuietly ({ handle }: AppendHandle): void {
  handle.close().catch(() => {})
}
