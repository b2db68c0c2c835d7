/** Runs tasks one at a time per key; tasks on different keys run concurrently. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>()
  /** Tasks started so far, on any key: a reader that saw it unchanged around its work saw no task start. */
  started = 0

  async run<T> (key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve()
    const counted = async (): Promise<T> => {
      this.started++
      return await task()
    }
    const result = previous.then(counted, counted)
    const tail = result.catch(() => {})
    this.tails.set(key, tail)
    try {
      return await result
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  /** Whether a task on this key is running or waiting. */
  busy (key: string): boolean {
    return this.tails.has(key)
  }

  /** Resolves once the tasks running or waiting now, on every key, are done (whatever their outcome). */
  async idle (): Promise<void> {
    await Promise.all(this.tails.values())
  }
}
