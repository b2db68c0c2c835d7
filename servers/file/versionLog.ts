import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'

/**
 * File versions survive restarts: a client's cached copy is trusted only while its version
 * matches, so a version that fell back to 1 after a restart could make a stale copy look
 * current. Each write appends one line and fsyncs before the write is acknowledged; the
 * log is compacted to one line per file at start.
 */
export class VersionLog {
  private constructor (
    private readonly file: string,
    private handle: fsp.FileHandle,
    private readonly versions: Map<string, number>
  ) {}

  static async open (stateDir: string): Promise<VersionLog> {
    await fsp.mkdir(stateDir, { recursive: true })
    const file = path.join(stateDir, 'versions.log')
    const versions = new Map<string, number>()
    let text = ''
    try {
      text = await fsp.readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    for (const line of text.split('\n')) {
      if (!line) continue
      try {
        const { p, v } = JSON.parse(line) as { p: string, v: number | null }
        if (v === null) versions.delete(p)
        else versions.set(p, v)
      } catch {
        // A torn last line from a crash mid-append: that write was never acknowledged.
      }
    }
    const compacted = path.join(stateDir, 'versions.log.tmp')
    await fsp.writeFile(compacted, [...versions].map(([p, v]) => JSON.stringify({ p, v }) + '\n').join(''))
    await syncFile(compacted)
    await fsp.rename(compacted, file)
    await syncFile(stateDir)
    return new VersionLog(file, await fsp.open(file, 'a'), versions)
  }

  get (filePath: string): number | undefined {
    return this.versions.get(filePath)
  }

  /** Records a version durably. */
  async set (filePath: string, version: number | null): Promise<void> {
    await this.handle.appendFile(JSON.stringify({ p: filePath, v: version }) + '\n')
    await this.handle.datasync()
    if (version === null) this.versions.delete(filePath)
    else this.versions.set(filePath, version)
  }

  async close (): Promise<void> {
    await this.handle.close()
  }

  get path (): string {
    return this.file
  }
}

export async function syncFile (file: string): Promise<void> {
  const handle = await fsp.open(file, fs.constants.O_RDONLY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
