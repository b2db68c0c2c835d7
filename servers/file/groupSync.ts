/**
 * Group commit for one file that many writers append to: a writer whose line is written
 * asks for durability, and every writer that asks while one fdatasync runs shares the next
 * one. A sync that started before a writer's line was written does not cover it, so a
 * writer never joins a sync already under way; at most one more is queued behind it.
 */
export class GroupSync {
  private running: Promise<void> | null = null
  private queued: Promise<void> | null = null

  constructor (private readonly datasync: () => Promise<void>) {}

  /** Resolves once everything written to the file before this call is on disk. */
  async durable (): Promise<void> {
    if (this.queued !== null) return await this.queued
    if (this.running === null) return await this.start()
    const after = this.running
    const next = after.catch(() => {}).then(async () => {
      this.queued = null
      return await this.start()
    })
    this.queued = next
    return await next
  }

  private async start (): Promise<void> {
    const run = this.datasync().finally(() => {
      if (this.running === run) this.running = null
    })
    this.running = run
    return await run
  }
}
