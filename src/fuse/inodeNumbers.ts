import crypto from 'node:crypto'

/** The root's inode number, as on most file systems' roots of a mount. */
const ROOT_INO = 1

/**
 * Inode numbers for the mount (`-o use_ino`), stable for a file's life.
 *
 * Why a hash of the path, and not a number the servers keep: a file's identity on its file
 * server changes with every store of the whole file (a new file is renamed into place) and
 * with a rename across servers, so a disk inode number or a per-file id the servers kept
 * would need a new field in every answer and a record that follows every rename, on every
 * server, to be any better. A hash of the path costs nothing, is the same on every mount and
 * after a remount, and is what tools that compare inode numbers (git's index, tar, find) need:
 * the number of a path does not change while the file lives there.
 *
 * A rename through this mount keeps the file's number (mv keeps the inode on any disk, and
 * git, rsync and editors that save by renaming notice a new one): the new path is recorded
 * as a new name of the old identity, and a folder's record covers everything below it. The
 * old path gets a fresh identity, so a file made there later has another number. Renames made
 * by other clients are seen as a new file at the new path (a new number). The records last
 * as long as the mount and grow by one per rename.
 *
 * fuse-native carries st_ino as 32 bits, so two paths may share a number (about one pair in a
 * folder tree of 60,000 entries, at even odds). Tools that find hard links by inode number
 * also require a link count above 1, which dfs never reports, so such a pair costs nothing
 * but a possible "file system loop" warning of find if it is a folder and its ancestor.
 */
export class InodeNumbers {
  /** Paths whose identity is not their own name: a rename's target, or a name a rename freed. */
  private readonly identities = new Map<string, string>()
  private freed = 0

  of (path: string): number {
    if (path === '/') return ROOT_INO
    const digest = crypto.createHash('sha1').update(this.identityOf(path)).digest()
    const ino = digest.readUInt32BE(0)
    return ino <= ROOT_INO ? ino + 2 : ino
  }

  /** A rename through this mount succeeded: `to`, and all below it, keep the numbers `from` had. */
  renamed (from: string, to: string): void {
    if (from === to) return
    const identity = this.identityOf(from)
    const below: Array<[string, string]> = []
    for (const [known, was] of [...this.identities]) {
      if (known.startsWith(from + '/')) below.push([to + known.slice(from.length), was])
      if (known === to || known.startsWith(to + '/') || known.startsWith(from + '/')) this.identities.delete(known)
    }
    this.identities.set(to, identity)
    for (const [moved, was] of below) this.identities.set(moved, was)
    this.identities.set(from, `${from}\0${++this.freed}`)
  }

  /** The identity of a path: its own name, unless it or a folder above it was renamed here. */
  private identityOf (path: string): string {
    if (this.identities.size === 0) return path
    for (let end = path.length; end > 0; end = path.lastIndexOf('/', end - 1)) {
      const identity = this.identities.get(path.slice(0, end))
      if (identity !== undefined) return identity + path.slice(end)
    }
    return path
  }
}
