import fs from 'node:fs'
import path from 'node:path'
import { isAlive } from './liveProcess'

/** Folders this process has claimed and not let go: a pid file alone cannot tell them from a dead run's. */
const claimedHere = new Set<string>()

export type FolderClaim =
  | { claimed: true, release: () => void }
  /** `pid`: the live process that holds it; null when another process is claiming it at this moment. */
  | { claimed: false, pid: number | null }

/**
 * Takes a folder for this process with a pid file in it (`ownerFile`), unless a live
 * process holds it: one that died (kill -9) left its pid file behind, which is taken over.
 * The folder must exist. `release` removes the pid file.
 */
export function claimFolder (dir: string, ownerFile: string): FolderClaim {
  const folder = path.resolve(dir)
  const file = path.join(folder, ownerFile)
  const release = (): void => {
    if (claimedHere.delete(folder)) fs.rmSync(file, { force: true })
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!claimedHere.has(folder)) {
      try {
        fs.writeFileSync(file, String(process.pid), { flag: 'wx' })
        claimedHere.add(folder)
        return { claimed: true, release }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
    }
    const pid = ownerOf(file)
    const inUse = pid === process.pid ? claimedHere.has(folder) : pid !== null && isAlive(pid)
    if (inUse) return { claimed: false, pid }
    fs.rmSync(file, { force: true })
  }
  return { claimed: false, pid: null }
}

/** The pid in a pid file; null for none (removed meanwhile, or not a pid). */
function ownerOf (file: string): number | null {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8'))
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}
