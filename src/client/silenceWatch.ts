import type { FileServerPool } from '../shared/api'
import type { ServerInfo } from '../shared/protocol'

/** A call that has not answered for this long makes the watch ask the server whether it is there at all. */
export const PROBE_AFTER_MS = 300
/** How long that question (GET /health) may take: a server that is busy but alive answers it at once. */
export const PROBE_TIMEOUT_MS = 700

/** What `unlessSilent` gives instead of the answer of a server that does not answer even /health. */
export const SILENT = Symbol('silent')

/**
 * Tells a file server that is stopped or cut off (the directory still counts it up until 5 s
 * without heartbeats) from one that is only slow, so that calls whose answer is not needed
 * to be right do not wait for it: a listing's sizes and a folder's time on that server. Such
 * a call is waited for as long as it takes, unless it is slow (PROBE_AFTER_MS) and then the
 * server's /health does not answer either (PROBE_TIMEOUT_MS): the server is then *silent*
 * until a later probe answers, and the caller goes on without it.
 *
 * Nothing here fails a call: a silent server's files are listed all the same (marked
 * unavailable), and a read of one still goes to the server (see DfsClient's read retries).
 * So a probe that misjudges a busy server costs a listing without its sizes, never an EIO.
 */
export class SilenceWatch {
  /** url -> when it was last probed, for servers whose last probe got no answer. */
  private readonly silent = new Map<string, number>()
  private readonly probing = new Map<string, Promise<boolean>>()

  constructor (private readonly probes: FileServerPool) {}

  /** Whether the server is silent now; asking starts a new probe now and then, so it is back soon after it answers. */
  isSilent (server: ServerInfo): boolean {
    const probedAt = this.silent.get(server.url)
    if (probedAt === undefined) return false
    if (Date.now() - probedAt >= PROBE_AFTER_MS) void this.probe(server)
    return true
  }

  /**
   * `call`'s answer, or SILENT if the server is silent (at once if it already was). The call
   * goes on meanwhile; its late failure is nobody's concern here.
   */
  async unlessSilent<T> (server: ServerInfo, call: Promise<T>): Promise<T | typeof SILENT> {
    if (this.isSilent(server)) {
      call.catch(() => {})
      return SILENT
    }
    let timer: NodeJS.Timeout | undefined
    const silence = new Promise<typeof SILENT>((resolve) => {
      timer = setTimeout(() => {
        void this.probe(server).then((answers) => { if (!answers) resolve(SILENT) })
      }, PROBE_AFTER_MS)
    })
    try {
      return await Promise.race([call, silence])
    } finally {
      clearTimeout(timer)
      call.catch(() => {})
    }
  }

  /**
   * Whether the server is silent now, asking its /health again (and waiting for the answer)
   * if the last probe is older than PROBE_AFTER_MS: a server that is back is used at once.
   */
  async stillSilent (server: ServerInfo): Promise<boolean> {
    const probedAt = this.silent.get(server.url)
    if (probedAt === undefined) return false
    if (Date.now() - probedAt < PROBE_AFTER_MS) return true
    return !(await this.probe(server))
  }

  /**
   * After a call to the server failed for want of an answer: whether the server is silent
   * (its /health does not answer either), so that the next calls may fail at once.
   */
  async confirm (server: ServerInfo): Promise<boolean> {
    return !(await this.probe(server))
  }

  /** Asks the server's /health once (one question per server at a time); true if it answered. */
  private async probe (server: ServerInfo): Promise<boolean> {
    let probe = this.probing.get(server.url)
    if (!probe) {
      probe = this.probes.of(server).health().then(() => true, () => false).then((answers) => {
        this.probing.delete(server.url)
        if (answers) this.silent.delete(server.url)
        else this.silent.set(server.url, Date.now())
        return answers
      })
      this.probing.set(server.url, probe)
    }
    return await probe
  }
}
