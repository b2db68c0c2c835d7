/**
 * The byte ranges of a working copy changed since its last store, merged, plus the lowest
 * size a truncation cut it to: everything from there to the end is changed too (bytes the
 * file grows by again are zeros here, and old bytes on the server).
 */
export class DirtyRanges {
  /** Sorted, disjoint, non-adjacent [start, end) pairs. */
  private ranges: Array<[number, number]> = []
  private lowestSize = Number.POSITIVE_INFINITY

  /** Bytes [start, end) were written. */
  add (start: number, end: number): void {
    if (end <= start) return
    const kept: Array<[number, number]> = []
    let merged: [number, number] = [start, end]
    for (const range of this.ranges) {
      if (range[1] < merged[0] || range[0] > merged[1]) kept.push(range)
      else merged = [Math.min(range[0], merged[0]), Math.max(range[1], merged[1])]
    }
    kept.push(merged)
    this.ranges = kept.sort((a, b) => a[0] - b[0])
  }

  /** The file was cut (or grown) to `size`. */
  truncated (size: number): void {
    this.lowestSize = Math.min(this.lowestSize, size)
  }

  /**
   * What changed, for a file of `size` bytes now: the ranges within it, and the whole tail
   * from the lowest truncation on. The set starts empty again; give() puts them back if the
   * store fails.
   */
  take (size: number): Array<[number, number]> {
    const taken = this.within(size)
    this.ranges = []
    this.lowestSize = Number.POSITIVE_INFINITY
    return taken
  }

  /** What take() would answer, left in place. */
  within (size: number): Array<[number, number]> {
    const tail = this.lowestSize < size ? this.lowestSize : size
    const covered: Array<[number, number]> = []
    for (const [start, end] of this.ranges) {
      if (start >= tail) break
      covered.push([start, Math.min(end, tail)])
    }
    if (tail < size) covered.push([tail, size])
    return covered
  }

  /** Ranges taken for a store that failed: changed still. */
  give (ranges: ReadonlyArray<[number, number]>): void {
    for (const [start, end] of ranges) this.add(start, end)
  }
}

/** The bytes a set of ranges covers. */
export function bytesOf (ranges: ReadonlyArray<[number, number]>): number {
  return ranges.reduce((sum, [start, end]) => sum + end - start, 0)
}
