/** How long the removal of a kept lease's key waits for its path to be made again. */
export const KEY_REMOVAL_DELAY_MS = 2_000

/**
 * Removals of the lock keys of files removed under a lease their client keeps (sqlite's
 * journal, removed and made again at every transaction). Such a key must stay while the
 * lease does and go when it ends (DELETE /keys?whenFree), and that request was one of about
 * seven a transaction, for a key the next transaction uses again. So the removal waits a
 * little, and the path made again meanwhile keeps its key. Keys are implicit (the lock
 * server makes one at the first acquire) and fencing tokens grow across all keys, so a key
 * removed late, or left behind by a server that stopped with a removal waiting, changes
 * nothing but one entry of the lock server's table.
 */
export class KeyRemovals {
  private readonly waiting = new Map<string, NodeJS.Timeout>()

  constructor (private readonly remove: (path: string) => Promise<void>, private readonly delayMs = KEY_REMOVAL_DELAY_MS) {}

  /** The file at `path` is gone: its key goes a little later, unless the path is made again first. */
  later (path: string): void {
    this.keep(path)
    const timer = setTimeout(() => {
      this.waiting.delete(path)
      void this.remove(path)
    }, this.delayMs)
    timer.unref()
    this.waiting.set(path, timer)
  }

  /** The path is a file again: its key stays. */
  keep (path: string): void {
    const timer = this.waiting.get(path)
    if (timer === undefined) return
    clearTimeout(timer)
    this.waiting.delete(path)
  }

  /** Removals still waiting. */
  get pending (): number {
    return this.waiting.size
  }

  /** The server stops: the keys still waiting stay. */
  close (): void {
    for (const timer of this.waiting.values()) clearTimeout(timer)
    this.waiting.clear()
  }
}
