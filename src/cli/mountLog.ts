import fs from 'node:fs'
import os from 'node:os'
import { performance } from 'node:perf_hooks'
import type pino from 'pino'
import { startProcessLog } from '../../servers/common/logging'
import type { LogLevel, ProcessLog } from '../../servers/common/logging'
import { currentFailure, newRequestId, withRequestId } from '../shared/requestContext'

/*
 * The mount's log, with pino as the servers' (servers/common/logging.ts): JSON lines to the
 * --log file, readable lines in the foreground, control characters escaped either way. Each
 * file system operation is one request: its calls to the servers carry one request id
 * (X-Dfs-Request-Id), which the mount's lines about it name too, so a slow or failed `cat`
 * can be followed from the mount through every server it touched.
 */

const EIO = -os.constants.errno.EIO
const errnoNames = new Map(Object.entries(os.constants.errno).map(([name, value]) => [-value, name]))

export function startMountLog (opts: { file?: string, level: LogLevel }): ProcessLog {
  // In the background the daemon's standard output is its log file (src/cli/daemon.ts).
  const daemon = opts.file !== undefined && isStandardOutput(opts.file)
  return startProcessLog({ name: 'dfs-mount', file: opts.file, level: opts.level, readableLines: !daemon })
}

function isStandardOutput (file: string): boolean {
  try {
    const out = fs.fstatSync(1)
    const log = fs.statSync(file)
    return out.dev === log.dev && out.ino === log.ino
  } catch {
    return false
  }
}

/** ' (why)' for a failure noted by the operation (noteFailure), else nothing. */
function causeOf (failure: unknown): string {
  return failure instanceof Error ? ` (${failure.message})` : ''
}

/**
 * The FUSE operations, each run under a request id of its own; at debug level a line per
 * operation (name, first argument, result, time), and an operation that fails with EIO (a
 * server out of reach, data not stored) logged as an error at any level.
 */
export function tracedOperations (operations: Record<string, unknown>, logger: pino.Logger): Record<string, unknown> {
  const traced: Record<string, unknown> = {}
  for (const [name, operation] of Object.entries(operations)) {
    if (typeof operation !== 'function' || name === 'init') {
      traced[name] = operation
      continue
    }
    const run = operation as (...args: unknown[]) => unknown
    traced[name] = (...args: unknown[]) => {
      const callback = args[args.length - 1]
      if (typeof callback !== 'function') return run(...args)
      const reqId = newRequestId()
      const started = performance.now()
      const done = (code: number, ...values: unknown[]): void => {
        const result = code < 0 ? errnoNames.get(code) ?? String(code) : String(code)
        if (code === EIO) logger.error({ reqId, op: name }, `error: ${name} ${String(args[0])}: ${result}${causeOf(currentFailure())}`)
        else if (logger.isLevelEnabled('debug')) logger.debug({ reqId, op: name, ms: Math.round((performance.now() - started) * 10) / 10 }, `${name} ${String(args[0])} ${result}`)
        ;(callback as (...answer: unknown[]) => void)(code, ...values)
      }
      return withRequestId(reqId, () => run(...args.slice(0, -1), done))
    }
  }
  return traced
}
