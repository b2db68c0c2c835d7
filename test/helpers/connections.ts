import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** The local ports of `pid`'s TCP connections to `port` on loopback. */
export async function connectionsOf (pid: number, port: number): Promise<number[]> {
  const { stdout } = await execFileAsync('ss', ['-tnpH', 'state', 'established', 'dst', `127.0.0.1:${port}`])
  return stdout.split('\n')
    .filter((line) => line.includes(`pid=${pid},`))
    .map((line) => Number(/127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:\d+/.exec(line)?.[1]))
    .filter((local) => Number.isInteger(local))
}

/** Cuts (as a network fault would: both ends see a reset) every connection of `pid` to `port`; how many it cut. */
export async function cutConnections (pid: number, port: number): Promise<number> {
  const locals = await connectionsOf(pid, port)
  for (const local of locals) await execFileAsync('ss', ['-K', 'src', `127.0.0.1:${local}`, 'dst', `127.0.0.1:${port}`])
  return locals.length
}
