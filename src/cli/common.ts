import { DfsError } from '../shared/errors'

/** A user mistake or an expected failure: printed as one line, no stack trace. */
export class CliError extends Error {}

/**
 * Runs a CLI's main and turns failures into one line on stderr and a non-zero exit.
 * Only a true bug (not a DfsError or CliError) shows its stack, to be reported.
 */
export function runMain (name: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    if (err instanceof CliError || err instanceof DfsError) {
      process.stderr.write(`${name}: ${err.message}\n`)
    } else {
      process.stderr.write(`${name}: unexpected failure: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    }
    process.exit(1)
  })
}

/**
 * A log line with its control characters escaped (a newline as \\n): a file name with a
 * newline in it cannot forge a line of its own in a server's or mount's log.
 */
export function logLine (line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/[\u0000-\u001f\u007f]/g, (c) => c === '\n' ? '\\n' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}
