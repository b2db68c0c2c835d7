import type { CopyReader } from './copyReader'

/**
 * Reads a file's bytes by ranges from its server, with no copy: a handle whose reads went
 * far ahead of the download of a large file (a `tail`, an archive's index, a seek into a
 * disk image), so the whole file is not fetched for a few blocks of it. `fetchRange` answers
 * the bytes of the version the handle opened, or fails (StaleHandleError once the file is
 * another version).
 */
export class RangeReader implements CopyReader {
  constructor (private readonly fetchRange: (position: number, length: number) => Promise<Buffer>) {}

  async read (buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    const bytes = await this.fetchRange(position, length)
    return { bytesRead: bytes.copy(buffer, offset, 0, Math.min(bytes.length, length)) }
  }

  async close (): Promise<void> {}
}
