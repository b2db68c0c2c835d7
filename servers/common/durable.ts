import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { timedSync } from './metrics'

/**
 * Replaces a small state file so that a crash at any moment leaves either the old content or
 * the new, never a torn mix: written beside it, fsynced, renamed over it, and the folder
 * fsynced so the rename itself survives a power cut. `mode` 0o600 for a file holding a secret.
 */
export async function writeFileDurably (file: string, text: string, mode = 0o666): Promise<void> {
  const folder = path.dirname(file)
  await fsp.mkdir(folder, { recursive: true })
  const staged = `${file}.tmp`
  // A staged file left by a crash keeps its mode: set it again (a secret must not stay readable).
  const handle = await fsp.open(staged, 'w', mode)
  if (mode !== 0o666) await handle.chmod(mode)
  try {
    await handle.writeFile(text)
    await timedSync('state', handle.sync())
  } finally {
    await handle.close()
  }
  await fsp.rename(staged, file)
  const dir = await fsp.open(folder, fs.constants.O_RDONLY)
  try {
    await timedSync('folder', dir.sync())
  } finally {
    await dir.close()
  }
}

/** A state file's text, or null if there is none yet. */
export async function readStateFile (file: string): Promise<string | null> {
  try {
    return await fsp.readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}
