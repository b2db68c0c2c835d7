/**
 * Bytes a handle wrote at the end of its file and has not sent yet: many small write()
 * calls leave as one append. A send that fails puts its bytes back in front, so a retry
 * sends them again in order.
 */
export class AppendBuffer {
  private chunks: Buffer[] = []
  private bytes = 0

  get size (): number {
    return this.bytes
  }

  /** Keeps a copy: the kernel reuses its buffer once the write is answered. */
  push (data: Buffer): void {
    this.chunks.push(Buffer.from(data))
    this.bytes += data.length
  }

  /** Everything held, as one buffer, leaving the buffer empty. */
  take (): Buffer {
    const data = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks)
    this.chunks = []
    this.bytes = 0
    return data
  }

  /** Bytes that could not be sent go back in front of anything written since. */
  putBack (data: Buffer): void {
    this.chunks.unshift(data)
    this.bytes += data.length
  }
}
