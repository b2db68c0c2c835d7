import crypto from 'node:crypto'
import path from 'node:path'
import { DfsError } from '../../src/shared/errors'
import { readStateFile, writeFileDurably } from '../common/durable'

export const IDENTITY_FILE_NAME = 'identity.json'

const SECRET_BYTES = 32

function newSecret (): Buffer {
  return crypto.randomBytes(SECRET_BYTES)
}

interface IdentityFile {
  /** Made once, at the first start on this root: who this server is, wherever it listens. */
  serverId: string
  /** What the directory called it last; asked for again at each registration. */
  machineId: number | null
  /**
   * This server's own secret (32 random bytes, base64url), which the directory binds to
   * serverId at the first registration: what it signs its calls to the directory with, so
   * no other holder of the cluster key can report, claim or heartbeat for its machine id.
   * Absent in files of older versions: made at the next start.
   */
  secret?: string
}

/** identity.json cannot be read: the server refuses to start rather than join as a stranger. */
export class IdentityStateError extends DfsError {}

/**
 * A file server's identity, kept in its root's state folder (ROOT/.dfs/identity.json) so it
 * belongs to the data, not to the process or its address: the directory binds the machine
 * id to `serverId`, and the server remembers that id to ask for it again, so the id comes
 * back after a restart of either side and after a move to another URL.
 */
export class ServerIdentity {
  private constructor (private readonly file: string, readonly serverId: string, private current: number | null, readonly secret: Buffer) {}

  /** Reads the identity of the root whose state folder this is, making one at the first start. */
  static async open (stateDir: string): Promise<ServerIdentity> {
    const file = path.join(stateDir, IDENTITY_FILE_NAME)
    const text = await readStateFile(file)
    if (text === null) {
      const identity = new ServerIdentity(file, crypto.randomUUID(), null, newSecret())
      await identity.save()
      return identity
    }
    let identity: ServerIdentity
    let hadSecret: boolean
    try {
      const { serverId, machineId, secret } = JSON.parse(text) as IdentityFile
      if (typeof serverId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(serverId)) throw new Error('no valid serverId')
      if (machineId !== null && !(Number.isSafeInteger(machineId) && machineId >= 1)) throw new Error('no valid machineId')
      if (secret !== undefined && (typeof secret !== 'string' || Buffer.from(secret, 'base64url').length < SECRET_BYTES)) throw new Error('no valid secret')
      hadSecret = secret !== undefined
      identity = new ServerIdentity(file, serverId, machineId, hadSecret ? Buffer.from(secret as string, 'base64url') : newSecret())
    } catch (err) {
      throw new IdentityStateError(`cannot read this file server's identity ${file} (${(err as Error).message}); ` +
        'fix it, or remove it to join as a new server (it then gets a new machine id)')
    }
    if (!hadSecret) await identity.save()
    return identity
  }

  get machineId (): number | null {
    return this.current
  }

  /** Keeps the id the directory gave, durably, before the server uses it. */
  async assigned (machineId: number): Promise<void> {
    if (machineId === this.current) return
    this.current = machineId
    await this.save()
  }

  private async save (): Promise<void> {
    const state: IdentityFile = { serverId: this.serverId, machineId: this.current, secret: this.secret.toString('base64url') }
    await writeFileDurably(this.file, JSON.stringify(state) + '\n', 0o600)
  }
}
