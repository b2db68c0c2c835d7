import crypto from 'node:crypto'

/** The root's inode number, as on most file systems' roots of a mount. */
const ROOT_INO = 1

/**
 * Bytes of the path's hash an inode number takes: 48 bits, exact in a JS number and carried
 * whole by the patched binding (patch level 5; it carried 32 before).
 */
const INO_BYTES = 6
/** Renames remembered at most (two records each): about 20 MB. */
const MAX_RECORDS = 200_000
/** Numbers remembered at most (see InodeNumbers.numbers); past that, they are worked out again. */
const MAX_NUMBERS_KEPT = 100_000

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
 * as long as the mount, two per rename, up to MAX_RECORDS; then they start afresh.
 *
 * The number is 48 bits of the hash: two paths share one at even odds only in a tree of
 * about 20 million entries. With the 32 bits fuse-native carried unpatched it was one of
 * 77,000 entries, and a pair that shares a number is one file to cp ("are the same file"),
 * to Python's shutil and to sqlite (which keeps one lock state per inode in a process).
 */
export class InodeNumbers {
  /** Paths whose identity is not their own name: a rename's target, or a name a rename freed. */
  private readonly identities = new Map<string, string>()
  /** How many of those lie below each folder, so a rename looks below only where there is something. */
  private readonly below = new Map<string, number>()
  private freed = 0
  /**
   * Numbers handed out, by path, until the next rename: a getattr answered from memory is
   * a few µs of work, and a sha1 per call was a tenth of it (`ls -l` asks once per entry).
   */
  private readonly numbers = new Map<string, number>()

  constructor (private readonly maxRecords = MAX_RECORDS) {}

  of (path: string): number {
    if (path === '/') return ROOT_INO
    const known = this.numbers.get(path)
    if (known !== undefined) return known
    const digest = crypto.createHash('sha1').update(this.identityOf(path)).digest()
    const hashed = digest.readUIntBE(0, INO_BYTES)
    const ino = hashed <= ROOT_INO ? hashed + 2 : hashed
    if (this.numbers.size >= MAX_NUMBERS_KEPT) this.numbers.clear()
    this.numbers.set(path, ino)
    return ino
  }

  /** A rename through this mount succeeded: `to`, and all below it, keep the numbers `from` had. */
  renamed (from: string, to: string): void {
    if (from === to) return
    this.numbers.clear()
    // Bounded memory for a mount that lives long and renames much (rsync renames every file
    // it copies): past the limit, the records start afresh, and renamed files get the
    // numbers of their paths.
    if (this.identities.size >= this.maxRecords) this.forgetAll()
    const identity = this.identityOf(from)
    const moved: Array<[string, string]> = []
    for (const [known, was] of this.recordsBelow(from)) {
      moved.push([to + known.slice(from.length), was])
      this.unset(known)
    }
    for (const [known] of this.recordsBelow(to)) this.unset(known)
    this.set(to, identity)
    for (const [path, was] of moved) this.set(path, was)
    this.set(from, `${from}\0${++this.freed}`)
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

  /** The records strictly below a folder: none looked for unless the count says there are. */
  private recordsBelow (folder: string): Array<[string, string]> {
    if ((this.below.get(folder) ?? 0) === 0) return []
    return [...this.identities].filter(([known]) => known.startsWith(folder + '/'))
  }

  private set (path: string, identity: string): void {
    if (!this.identities.has(path)) this.count(path, 1)
    this.identities.set(path, identity)
  }

  private unset (path: string): void {
    if (this.identities.delete(path)) this.count(path, -1)
  }

  private count (path: string, change: number): void {
    for (let end = path.lastIndexOf('/'); end > 0; end = path.lastIndexOf('/', end - 1)) {
      const folder = path.slice(0, end)
      const left = (this.below.get(folder) ?? 0) + change
      if (left === 0) this.below.delete(folder)
      else this.below.set(folder, left)
    }
  }

  private forgetAll (): void {
    this.identities.clear()
    this.below.clear()
  }
}
