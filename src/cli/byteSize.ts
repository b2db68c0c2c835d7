import { CliError } from './common'

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }

/**
 * A size as people write it for a cache (rclone's --vfs-cache-max-size, du -h): bytes, or a
 * number with K, M, G or T (powers of 1024; KiB, MB and the like read the same). `what`
 * names the option in the one-line error.
 */
export function parseByteSize (text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim())
  const bytes = match === null ? NaN : Math.floor(Number(match[1]) * UNITS[match[2].toUpperCase()])
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new CliError(`${what} must be a size such as 500M, 2G or a number of bytes, more than 0, not ${text}`)
  }
  return bytes
}

/** 4294967296 as "4G": a size as parseByteSize reads it, for help texts and logs. */
export function formatByteSize (bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K']) {
    const size = UNITS[unit]
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`
  }
  return String(bytes)
}
