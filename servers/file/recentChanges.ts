/** Change ids remembered per file and client: a client's retry is of one of its latest changes. */
export const CHANGES_KEPT_PER_CLIENT = 16
/** Clients remembered per file; the one that changed the file longest ago is forgotten first. */
export const CLIENTS_KEPT_PER_FILE = 64

/**
 * The ids of the changes last applied to each file (X-Dfs-Change-Id), so that a client's retry
 * of a change whose answer it lost is told it was applied instead of applied twice.
 *
 * Kept per client, not per file: a client names its changes with a prefix of its own and a
 * count (`PREFIX-N`, src/client/dfsClient.ts), and the ids are grouped by that prefix. A
 * window of the file's last 64 ids let a retry that waited out a restart find its id gone
 * when other clients changed the file 64 times meanwhile (the fault suite: two mounts
 * appending to one file, one of them retrying after its backoff), and the retry was applied
 * again. A mount sends one change of a path at a time (its flushes of a path take turns), so
 * its retry is of its latest change there, which stays on record until it makes 16 more.
 */
export class RecentChanges {
  /** Per file, per client, the ids oldest first; a Map keeps its clients in the order they last changed the file. */
  private readonly files = new Map<string, Map<string, string[]>>()

  remember (filePath: string, changeId: string): void {
    let clients = this.files.get(filePath)
    if (clients === undefined) this.files.set(filePath, clients = new Map())
    const client = clientOf(changeId)
    const ids = clients.get(client) ?? []
    // Moved to the end: the clients of a file in the order they last changed it.
    clients.delete(client)
    clients.set(client, ids)
    // Once: a compacted version log may name a change twice (its file's ids, and an append's line carried along).
    if (ids.includes(changeId)) return
    ids.push(changeId)
    if (ids.length > CHANGES_KEPT_PER_CLIENT) ids.shift()
    if (clients.size > CLIENTS_KEPT_PER_FILE) clients.delete(clients.keys().next().value as string)
  }

  applied (filePath: string, changeId: string): boolean {
    return this.files.get(filePath)?.get(clientOf(changeId))?.includes(changeId) === true
  }

  /** A change found not applied after all (its bytes never reached the disk). */
  forget (filePath: string, changeId: string): void {
    const ids = this.files.get(filePath)?.get(clientOf(changeId))
    const at = ids?.indexOf(changeId) ?? -1
    if (at >= 0) ids?.splice(at, 1)
  }

  /** The file left this server: nothing of it is remembered. */
  drop (filePath: string): void {
    this.files.delete(filePath)
  }

  /** A file's ids, client by client (the least recent first), each client's oldest first: remember() them in this order to rebuild. */
  idsOf (filePath: string): string[] | undefined {
    const clients = this.files.get(filePath)
    return clients === undefined ? undefined : [...clients.values()].flat()
  }
}

/** The client part of a change id: all before its last '-' (an id without one is a client of its own). */
function clientOf (changeId: string): string {
  const dash = changeId.lastIndexOf('-')
  return dash <= 0 ? changeId : changeId.slice(0, dash)
}
