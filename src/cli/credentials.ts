import fs from 'node:fs'
import { DEFAULT_DIRECTORY_URL, DEFAULT_TOKEN_FILE, DEMO_TOKEN_FILE } from '../shared/defaults'
import { trustCertificateAuthority } from '../shared/transport'
import type { CallerIdentity } from '../shared/transport'
import { CliError } from './common'

/**
 * A client's credential: the token in DFS_TOKEN, else the one in --token-file (DFS_TOKEN_FILE),
 * else in ~/.config/dfs/token, else, for the demo's address, the one the demo wrote. Never an
 * argument: `ps` shows every process's command line to every user of the machine.
 */
export function clientCaller (tokenFile: string | undefined, directoryUrl: string, env: NodeJS.ProcessEnv = process.env): CallerIdentity {
  const found = readClientToken(tokenFile, directoryUrl, env)
  if (found === undefined) return {}
  let token = found.token
  const file = found.file
  if (file === undefined) return { credential: () => token }
  // A long-lived client (the mount) picks up a token file that was replaced (a renewed or
  // rotated token) without a remount: its mtime is looked at, at most once a second. The
  // file is the one the token came from, named or a default place.
  let checkedAt = Date.now()
  let mtimeMs = mtimeOf(file)
  return {
    credential: () => {
      if (Date.now() - checkedAt >= 1000) {
        checkedAt = Date.now()
        const now = mtimeOf(file)
        if (now !== mtimeMs) {
          mtimeMs = now
          try {
            token = readClientToken(file, directoryUrl, env)?.token ?? token
          } catch {
            // Being rewritten (empty for a moment) or gone: keep the token we have.
          }
        }
      }
      return token
    }
  }
}

function mtimeOf (file: string): number | null {
  try {
    return fs.statSync(file).mtimeMs
  } catch {
    return null
  }
}

/** The token, and the file it was read from (none when it came from DFS_TOKEN). */
function readClientToken (tokenFile: string | undefined, directoryUrl: string, env: NodeJS.ProcessEnv): { token: string, file?: string } | undefined {
  const fromEnv = env.DFS_TOKEN?.trim()
  if (fromEnv !== undefined && fromEnv !== '') return { token: fromEnv }
  const defaults = directoryUrl === DEFAULT_DIRECTORY_URL ? [DEFAULT_TOKEN_FILE, DEMO_TOKEN_FILE] : [DEFAULT_TOKEN_FILE]
  const files = tokenFile !== undefined ? [tokenFile] : defaults
  for (const file of files) {
    let text: string
    try {
      text = fs.readFileSync(file, 'utf8').trim()
    } catch (err) {
      // The default places may well be empty; a file the user named must be there.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && tokenFile === undefined) continue
      throw new CliError(`cannot read the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    if (text === '') throw new CliError(`the token file ${file} is empty: put a token from dfs-serve token in it`)
    return { token: text, file }
  }
  return undefined
}

/** --ca (DFS_CA): the cluster's own CA certificate, trusted for https from now on; a bad file is one line. */
export function trustClusterCa (caFile: string | undefined): void {
  if (caFile === undefined) return
  trustCertificateAuthority(readPem(caFile, 'CA certificate', 'CERTIFICATE'))
}

/** A PEM file, read whole; a missing or unreadable one, or one of something else, is a CliError naming it. */
export function readPem (file: string, what: string, label: string): string {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new CliError(`cannot read the ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  if (!text.includes(`-----BEGIN `) || !text.includes(label)) throw new CliError(`${file} is not a PEM ${what} (no -----BEGIN ... ${label}-----)`)
  return text
}
