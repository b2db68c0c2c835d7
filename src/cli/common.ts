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

export { logLine } from '../shared/logLine'
