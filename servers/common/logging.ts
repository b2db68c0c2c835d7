import pino from 'pino'
import type { Logger } from './http'
import { logLine } from '../../src/shared/logLine'
import { currentRequestId } from '../../src/shared/requestContext'
import { onEveryRequest } from './observe'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export const LOG_LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error']

export interface ProcessLogOptions {
  /** What runs in this process: dfs-serve directory, demo, dfs-mount. */
  name: string
  /** A file for JSON lines (one object a line: time, level, msg, reqId, ...); reopened by reopen(). */
  file?: string
  /** debug also logs every request with its route, status and time. Default info. */
  level?: LogLevel
  /**
   * Readable lines on standard output (default). Off where standard output is the log file
   * itself (dfs-mount's background daemon): the JSON lines go there once.
   */
  readableLines?: boolean
}

export interface ProcessLog {
  /** The Logger every server and the client take: one line of text, logged at info (error for "error: ..."). */
  log: Logger
  logger: pino.Logger
  /** Reopens the log file at its path (after logrotate moved it): SIGHUP. */
  reopen: () => void
  /** Writes out what is buffered. */
  flush: () => void
}

/**
 * The process's log, with pino: JSON lines to the --log file for searching, and readable
 * lines ("TIME message [request id]") on standard output, which is what a foreground run
 * and the demo's log show. Each line written while serving a request names its request id,
 * the same on every server the request touched (requestContext.ts).
 */
export function startProcessLog (opts: ProcessLogOptions): ProcessLog {
  const file = opts.file === undefined ? null : pino.destination({ dest: opts.file, mkdir: true, sync: true })
  const stream = {
    write (line: string): void {
      file?.write(line)
      if (opts.readableLines !== false) process.stdout.write(readable(line))
    }
  }
  const logger = pino({
    level: opts.level ?? 'info',
    base: { name: opts.name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: () => {
      const requestId = currentRequestId()
      return requestId === undefined ? {} : { reqId: requestId }
    }
  }, stream)
  const log: Logger = (line) => {
    if (/^error\b/i.test(line)) logger.error(line)
    else logger.info(line)
  }
  if (logger.isLevelEnabled('debug')) {
    onEveryRequest((done) => logger.debug({ reqId: done.requestId, route: done.route, status: done.status, ms: Math.round(done.ms * 10) / 10 },
      `${done.method} ${done.route} ${done.status} ${done.ms.toFixed(1)} ms`))
  }
  return {
    log,
    logger,
    reopen: () => file?.reopen(),
    flush: () => file?.flushSync()
  }
}

/** A JSON log line as a person reads it: "2026-12-01T17:00:00.000Z message [request id]", control characters escaped. */
function readable (json: string): string {
  try {
    const entry = JSON.parse(json) as { time?: string, msg?: string, reqId?: string }
    return `${entry.time ?? new Date().toISOString()} ${logLine(entry.msg ?? '')}${entry.reqId === undefined ? '' : ` [${entry.reqId}]`}\n`
  } catch {
    return json
  }
}
