import type { DirectoryApi, FileApi, LockApi } from '../../src/shared/api'
import { ServerUnavailableError } from '../../src/shared/errors'
import type { FileServerStats, ServerInfo } from '../../src/shared/protocol'
import type { Logger } from '../common/http'
import type { CallbackTable } from './callbacks'
import type { FileStore } from './fileStore'
import type { KeyRemovals } from './keyRemovals'
import type { LeaseGuard } from './leaseGuard'
import type { RenameIntents } from './renameIntents'

/** What the routes that change the namespace or a file's bytes need of their file server. */
export interface MutationContext {
  store: FileStore
  lock: LockApi
  leases: LeaseGuard
  stats: FileServerStats
  log: Logger
  /** The directory server, and who this server is there, once it has joined. */
  directory: () => DirectoryApi
  self: () => ServerInfo
  /** Another file server's API (a rename across servers). */
  peer: (server: ServerInfo) => FileApi
  /** Promises to clients that they hear of a change before it is acknowledged. */
  callbacks: CallbackTable
  /** File renames under way, on disk, so a crash between their steps is ended at the next start. */
  renames: RenameIntents
  /** Lock keys of files removed under a kept lease, removed a little later unless the path is made again. */
  keyRemovals: KeyRemovals
}

/**
 * The context's directory and identity, or 503 before the server has joined a cluster, and
 * while it reports its files there (`reporting`): the report replaces what the directory
 * holds of this server, so a name claimed or dropped between the scan and the report would
 * be lost or come back. Every change of a name asks for `self()` first; a client waits and
 * tries again, as for a server down.
 */
export function joined (directory: DirectoryApi | null, self: () => ServerInfo | null, reporting: () => boolean = () => false): Pick<MutationContext, 'directory' | 'self'> {
  const notJoined = (): never => { throw new ServerUnavailableError('this file server has not joined a directory server yet') }
  return {
    directory: () => directory ?? notJoined(),
    self: () => {
      if (reporting()) throw new ServerUnavailableError('this file server is reporting its files to the directory server: try again in a moment')
      return self() ?? notJoined()
    }
  }
}
