import { BadRequestError } from './errors'

/** Bytes to place at an offset of a file (a range write: PATCH /content). */
export interface ByteRange {
  offset: number
  data: Buffer
}

/** Each range's frame header: its offset (64 bits) and length (32 bits), big-endian. */
const FRAME_HEADER_BYTES = 12

/** The body of a range write: for each range, its offset, its length, then its bytes. */
export function encodeRanges (ranges: readonly ByteRange[]): Buffer {
  const parts: Buffer[] = []
  for (const { offset, data } of ranges) {
    const header = Buffer.alloc(FRAME_HEADER_BYTES)
    header.writeBigUInt64BE(BigInt(offset), 0)
    header.writeUInt32BE(data.length, 8)
    parts.push(header, data)
  }
  return Buffer.concat(parts)
}

/** The ranges of a range write's body; a body cut short or an offset past 2^53 is a bad request. */
export function decodeRanges (body: Buffer): ByteRange[] {
  const ranges: ByteRange[] = []
  for (let at = 0; at < body.length;) {
    if (body.length - at < FRAME_HEADER_BYTES) throw new BadRequestError('a range write\'s body ends inside a range header')
    const offset = body.readBigUInt64BE(at)
    const length = body.readUInt32BE(at + 8)
    at += FRAME_HEADER_BYTES
    if (offset + BigInt(length) > BigInt(Number.MAX_SAFE_INTEGER)) throw new BadRequestError('a range of a range write ends past 2^53')
    if (body.length - at < length) throw new BadRequestError('a range write\'s body ends inside a range')
    ranges.push({ offset: Number(offset), data: body.subarray(at, at + length) })
    at += length
  }
  return ranges
}
