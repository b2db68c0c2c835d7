/**
 * What an open handle reads a file's bytes through: the descriptor of a cached copy
 * (fs.promises.FileHandle is one) or a small file's bytes held in memory (BytesReader).
 */
export interface CopyReader {
  read (buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>
  close (): Promise<void>
}

/** A file's bytes in memory, read as a copy's descriptor is. */
export class BytesReader implements CopyReader {
  constructor (private readonly bytes: Buffer) {}

  async read (buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    if (position >= this.bytes.length) return { bytesRead: 0 }
    return { bytesRead: this.bytes.copy(buffer, offset, position, Math.min(this.bytes.length, position + length)) }
  }

  async close (): Promise<void> {}
}
