import fs from 'node:fs'
import path from 'node:path'

const SAMPLES = 200
const LINE = Buffer.from('a line of about thirty bytes.\n')

/**
 * The floor of a durable append on a folder's disk: the median time of one write of ~30
 * bytes at the end of a file followed by fdatasync, as the file server does per append.
 * On a shared machine it moves with the other work on the disk, so the benchmark measures
 * it at its start and at its end, beside the figures it explains.
 */
export function fdatasyncFloorMs (folder: string): number {
  const file = path.join(folder, `fsync-floor-${process.pid}`)
  const fd = fs.openSync(file, 'a')
  const times: number[] = []
  try {
    for (let i = 0; i < SAMPLES; i++) {
      const started = process.hrtime.bigint()
      fs.writeSync(fd, LINE)
      fs.fdatasyncSync(fd)
      times.push(Number(process.hrtime.bigint() - started) / 1e6)
    }
  } finally {
    fs.closeSync(fd)
    fs.rmSync(file, { force: true })
  }
  times.sort((a, b) => a - b)
  return times[Math.floor(times.length / 2)]
}
