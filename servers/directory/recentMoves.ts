/** The most paths whose move is remembered; past that the oldest go first. */
export const REMEMBERED_MOVES = 50_000

/**
 * Where the files that renames took away from their paths are now, for a mount that still
 * has one open under its old name and did not hear of the rename (it held no callback on
 * the file, as in its first moments before its event channel is up): its next append finds
 * nothing at the old path, asks here (GET /moved), and follows the file, as a descriptor
 * follows a rename on a local disk, instead of losing the lines it was told it wrote.
 *
 * Kept exact as names change, so a follower never lands in another file:
 * - a file renamed again takes its followers along (P to Q, then Q to S: P's is at S);
 * - a file removed, or replaced by a rename onto its name, leaves its followers nothing;
 * - whatever arrives at a path (a create, a rename onto it) ends what was known of the file
 *   that had left it: a handle of that name now reaches the new file, as before.
 * In memory, bounded (REMEMBERED_MOVES); rebuilt from the namespace journal at start.
 */
export class RecentMoves {
  /** A path a file left -> where that file is now. */
  private readonly whereTo = new Map<string, string>()
  /** A path a moved file is at -> the paths it left. */
  private readonly cameFrom = new Map<string, Set<string>>()

  constructor (private readonly max = REMEMBERED_MOVES) {}

  /** Where the file that was at `path` is now; undefined if no remembered rename took it. */
  whereIs (path: string): string | undefined {
    return this.whereTo.get(path)
  }

  /** The file at `from` is now at `to` (a rename's switch), and so is every file that had come to `from`. */
  moved (from: string, to: string): void {
    const followers = this.cameFrom.get(from) ?? new Set<string>()
    this.cameFrom.delete(from)
    followers.add(from)
    for (const path of followers) this.remember(path, to)
  }

  /** Something new is at `path`: what was known of the file that had left it is over. */
  arrived (path: string): void {
    const to = this.whereTo.get(path)
    if (to === undefined) return
    this.whereTo.delete(path)
    this.unlink(path, to)
  }

  /** The file at `path` is gone (removed, or replaced by a rename onto its name): its followers have nothing to follow. */
  removed (path: string): void {
    const followers = this.cameFrom.get(path)
    if (followers === undefined) return
    this.cameFrom.delete(path)
    for (const from of followers) this.whereTo.delete(from)
  }

  get size (): number {
    return this.whereTo.size
  }

  private remember (from: string, to: string): void {
    const before = this.whereTo.get(from)
    if (before !== undefined) this.unlink(from, before)
    // Deleted first, so the newest is last in the map's order and the oldest goes first.
    this.whereTo.delete(from)
    this.whereTo.set(from, to)
    let followers = this.cameFrom.get(to)
    if (followers === undefined) this.cameFrom.set(to, followers = new Set())
    followers.add(from)
    if (this.whereTo.size > this.max) {
      const [oldest, itsTarget] = this.whereTo.entries().next().value as [string, string]
      this.whereTo.delete(oldest)
      this.unlink(oldest, itsTarget)
    }
  }

  private unlink (from: string, to: string): void {
    const followers = this.cameFrom.get(to)
    followers?.delete(from)
    if (followers?.size === 0) this.cameFrom.delete(to)
  }
}
