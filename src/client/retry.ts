import { LockTimeoutError, ServerUnavailableError } from '../shared/errors'

/** How a client treats a server that does not answer while it stores written data. */
export interface RetryPolicy {
  /**
   * How long to keep trying: Infinity for a hard mount (as NFS has it: data a program wrote
   * is never dropped, the write waits for the server), 0 to fail at once (the CLI), or a
   * time after which the caller gets the error (a soft mount).
   */
  forMs: number
  log?: (line: string) => void
}

const FIRST_DELAY_MS = 100
const LONGEST_DELAY_MS = 5_000
/** While a server stays away, a retry says so in the log this often at most (its first failure and its end always). */
const LOG_EVERY_MS = 10_000
/** Reads are small: tried again at least every second, so one is answered soon after its server is back. */
const LONGEST_READ_DELAY_MS = 1_000

interface RetryOptions {
  /**
   * Also wait out a lock another client holds (LockTimeoutError): written bytes can be stored
   * once it lets go, so a hard mount waits for it as for a server, and a soft one as long as
   * it waits for a server.
   */
  waitsForLocks?: boolean
  /** Which unavailability is worth waiting for; by default any. */
  retryable?: (err: ServerUnavailableError) => boolean
  /** How long to wait for the server that failed, if not policy.forMs. */
  forMsOf?: (err: ServerUnavailableError) => number
  longestDelayMs?: number
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Runs `task` until it succeeds, trying again with capped exponential backoff while the
 * failure is a server that does not answer. Any other error (no such file, no space, a
 * lease that was lost) cannot be fixed by waiting and is thrown at once. The task must be
 * safe to run again: each change carries an id the server recognises.
 */
export async function retryWhileUnavailable<T> (what: string, policy: RetryPolicy, task: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const { retryable = () => true, longestDelayMs = LONGEST_DELAY_MS, forMsOf = () => policy.forMs, waitsForLocks = false } = opts
  const started = Date.now()
  let delay = FIRST_DELAY_MS
  let loggedAt = -Infinity
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await task()
      if (attempt > 1) policy.log?.(`${what}: done after ${attempt} tries (${Date.now() - started} ms)`)
      return result
    } catch (err) {
      const locked = waitsForLocks && err instanceof LockTimeoutError
      if (!locked && (!(err instanceof ServerUnavailableError) || !retryable(err))) throw err
      const waited = Date.now() - started
      if (waited + delay > (locked ? policy.forMs : forMsOf(err as ServerUnavailableError))) throw err
      // The first failure of an outage is worth a line; then one every LOG_EVERY_MS, however often it is tried.
      if (started + waited - loggedAt >= LOG_EVERY_MS) {
        loggedAt = started + waited
        policy.log?.(`${what}: ${err.message}; ${locked ? 'waiting for it' : 'trying again'} (waited ${waited} ms)`)
      }
      await sleep(delay * (0.75 + Math.random() / 2))
      delay = Math.min(delay * 2, longestDelayMs)
    }
  }
}

/**
 * An append of bytes held in memory: tried again at least every second, as reads are. It is
 * cheap to send again (its change id makes it land once), and a read of the file on this
 * mount waits for it (the mount shows the file with it), so it must not lag seconds behind
 * its server's return. A lock another client holds on the file (a program there writing it
 * in place) is waited out too: given up at close, the line would be lost to a shell.
 */
export async function retryAppendWhileUnavailable<T> (what: string, policy: RetryPolicy, task: () => Promise<T>): Promise<T> {
  return await retryWhileUnavailable(what, policy, task, { longestDelayMs: LONGEST_READ_DELAY_MS, waitsForLocks: true })
}

/**
 * A read (stat, open) on a hard mount: tried again for policy.forMs (the read wait) while a
 * server does not answer, except once the directory has marked that server down, whose
 * files fail at once (serverDownError); `longerFor` names a server waited for longer (the
 * directory).
 */
export async function retryReadWhileUp<T> (what: string, policy: RetryPolicy, task: () => Promise<T>, longerFor?: { server: string, forMs: number }): Promise<T> {
  return await retryWhileUnavailable(what, policy, task, {
    retryable: (err) => err.details.state !== 'down',
    longestDelayMs: LONGEST_READ_DELAY_MS,
    forMsOf: (err) => longerFor !== undefined && err.details.server === longerFor.server ? longerFor.forMs : policy.forMs
  })
}
