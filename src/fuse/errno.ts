import os from 'node:os'
import { DfsError } from '../shared/errors'

const codes = os.constants.errno as Record<string, number>

/**
 * The negative errno a FUSE callback answers for a failure: a dfs error gives its own
 * (mapped once, in src/errors.ts), a local fs error keeps its code, anything else is EIO.
 */
export function errnoOf (err: unknown): number {
  if (err instanceof DfsError) return -(codes[err.errno] ?? codes.EIO)
  const nodeCode = (err as NodeJS.ErrnoException | undefined)?.code
  if (typeof nodeCode === 'string' && codes[nodeCode] !== undefined) return -codes[nodeCode]
  return -codes.EIO
}
