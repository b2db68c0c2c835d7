import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'

/**
 * Removes a file of this client's own (a cached copy, its record, a working copy); one that
 * is gone already is fine. One unlink: fsp.rm with `force` stats first and runs rimraf's
 * machinery, measured at a quarter of a millisecond of the mount's CPU per sqlite transaction.
 * A file that is not there is seen by existsSync, which builds no error: an unlink's ENOENT
 * comes as an exception with a stack, and a removed file's record and copy are often both
 * absent (a file made here and removed again lived in memory).
 */
export async function removeLocalFile (file: string): Promise<void> {
  if (!fs.existsSync(file)) return
  try {
    await fsp.unlink(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/**
 * Names this process's temporary files apart from any other's (a mount before a restart with
 * the same pid included) and from each other: random once, then counted. crypto.randomBytes
 * at every name was a visible share of a first read's CPU.
 */
const SUFFIX_PREFIX = `${process.pid}.${crypto.randomBytes(4).toString('hex')}`
let suffixCount = 0

export function uniqueSuffix (): string {
  return `${SUFFIX_PREFIX}.${(++suffixCount).toString(36)}`
}
