/**
 * The bytes of a partial working copy (see WorkingCopy) that are not here yet: at its start
 * all of the version it was made from, less each range fetched or written since. Sorted,
 * disjoint [start, end) pairs.
 */
export class AbsentRanges {
  private ranges: Array<[number, number]>

  constructor (size: number) {
    this.ranges = size > 0 ? [[0, size]] : []
  }

  /** Every byte is here. */
  get none (): boolean {
    return this.ranges.length === 0
  }

  /** The parts of [start, end) not here. */
  within (start: number, end: number): Array<[number, number]> {
    const found: Array<[number, number]> = []
    for (const [from, to] of this.ranges) {
      if (to <= start) continue
      if (from >= end) break
      found.push([Math.max(from, start), Math.min(to, end)])
    }
    return found
  }

  /** Bytes [start, end) are here now (fetched, or written: a write's bytes win over the version's). */
  arrived (start: number, end: number): void {
    if (end <= start) return
    const kept: Array<[number, number]> = []
    for (const [from, to] of this.ranges) {
      if (to <= start || from >= end) {
        kept.push([from, to])
        continue
      }
      if (from < start) kept.push([from, start])
      if (to > end) kept.push([end, to])
    }
    this.ranges = kept
  }

  /** The copy was cut to `size`: nothing past it is absent (bytes it grows by again are zeros, here). */
  truncated (size: number): void {
    this.arrived(size, Number.POSITIVE_INFINITY)
  }
}
