import t from 'tap'
import { retryWhileUnavailable } from '../src/client/retry'
import { NotFoundError, ServerUnavailableError } from '../src/shared/errors'

/*
 * How the client waits for a server that does not answer (src/client/retry.ts): tried again
 * until it answers, for as long as the policy says, and said in the log once per outage (and
 * then every 10 s), not at every try: a hard mount's log must not fill up during an outage.
 */

/** A task that fails `failures` times as a server that is down, then answers `answer`. */
function downFor (failures: number, answer: string): { task: () => Promise<string>, tries: () => number } {
  let tries = 0
  return {
    task: async () => {
      if (++tries <= failures) throw new ServerUnavailableError('file server 1 at 127.0.0.1:1 is not answering (ECONNREFUSED)')
      return answer
    },
    tries: () => tries
  }
}

t.test('a server that comes back is waited for; the outage is one line in the log, and its end one more', async (t) => {
  const lines: string[] = []
  const down = downFor(30, 'answered')
  const result = await retryWhileUnavailable('append to /a.log', { forMs: Infinity, log: (line) => lines.push(line) }, down.task, { longestDelayMs: 2 })
  t.equal(result, 'answered')
  t.equal(down.tries(), 31)
  t.equal(lines.length, 2, `two lines for 30 failures: ${lines.join(' | ')}`)
  t.match(lines[0], /^append to \/a\.log: file server 1 .* not answering .*; trying again \(waited \d+ ms\)$/)
  t.match(lines[1], /^append to \/a\.log: done after 31 tries/)
})

t.test('other errors are thrown at once, and a policy of 0 gives up at the first failure', async (t) => {
  let tries = 0
  await t.rejects(retryWhileUnavailable('stat of /a', { forMs: Infinity }, async () => {
    tries++
    throw new NotFoundError('no such file: /a')
  }), NotFoundError)
  t.equal(tries, 1)
  const down = downFor(1, 'never')
  await t.rejects(retryWhileUnavailable('unlink of /a', { forMs: 0 }, down.task), ServerUnavailableError)
  t.equal(down.tries(), 1)
})
