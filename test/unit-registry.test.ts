import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { REGISTRY_FILE_NAME, RegistryStateError, ServerRegistry } from '../servers/directory/registry'
import { ConflictError, NotFoundError } from '../src/shared/errors'

const DOWN_AFTER_MS = 5000

function tempDir (t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-registry-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A registry on a clock the test steps by hand. */
async function registryAt (stateDir: string | null): Promise<{ registry: ServerRegistry, clock: { now: number } }> {
  const clock = { now: 1000 }
  const registry = await ServerRegistry.open({ stateDir, downAfterMs: DOWN_AFTER_MS, now: () => clock.now })
  return { registry, clock }
}

t.test('ids are bound to the serverId: the same id back at another URL, and after a reopen of the state file', async (t) => {
  const dir = tempDir(t)
  const { registry } = await registryAt(dir)
  t.equal((await registry.register('server-a', 'http://127.0.0.1:7080')).server.machineId, 1)
  t.equal((await registry.register('server-b', 'http://127.0.0.1:7081')).server.machineId, 2)
  const moved = await registry.register('server-a', 'http://10.0.0.5:7080')
  t.same([moved.server.machineId, moved.was], [1, 'moved'], 'a server at a new URL keeps its id')

  const { registry: reopened, clock } = await registryAt(dir)
  t.same(reopened.all().map((s) => [s.machineId, s.serverId, s.url, s.state]), [
    [1, 'server-a', 'http://10.0.0.5:7080', 'up'],
    [2, 'server-b', 'http://127.0.0.1:7081', 'up']
  ], 'the assignments survive, each with a fresh lease: a restart of the directory is no news about the file servers')
  t.throws(() => reopened.heartbeat(2, 'server-b'), NotFoundError, 'a heartbeat before it registered again is refused: it must report its files')
  clock.now += DOWN_AFTER_MS + 1
  t.same(reopened.all().map((s) => s.state), ['down', 'down'], 'one that does not register again within the lease is down')
  t.equal((await reopened.register('server-b', 'http://127.0.0.1:7081')).server.machineId, 2, 'a known server gets its id back')
  t.equal((await reopened.register('server-c', 'http://127.0.0.1:7082')).server.machineId, 3, 'a new one the next id')
})

t.test('a directory that lost its state gives a server the id it asks for, unless it is taken', async (t) => {
  const { registry } = await registryAt(null)
  t.equal((await registry.register('server-b', 'http://h:2', 2)).server.machineId, 2, 'the id asked for')
  t.equal((await registry.register('server-x', 'http://h:9', 2)).server.machineId, 3, 'taken: the next new id')
  t.equal((await registry.register('server-a', 'http://h:1')).server.machineId, 4, 'ids are never handed out twice')
})

t.test('liveness is a lease renewed by heartbeats; forget needs a server that is down', async (t) => {
  const { registry, clock } = await registryAt(null)
  await registry.register('server-a', 'http://h:1')
  t.equal(registry.stateOf(1), 'up', 'registration counts as a heartbeat')
  clock.now += DOWN_AFTER_MS
  t.equal(registry.stateOf(1), 'up', 'up for the whole down-after time')
  await t.rejects(registry.forget(1), ConflictError, 'a server that is up cannot be forgotten')
  clock.now += 1
  t.equal(registry.stateOf(1), 'down', 'down once it has passed without a heartbeat')
  t.same(registry.up(), [])
  t.equal(registry.status(1).sinceHeartbeatMs, DOWN_AFTER_MS + 1)
  t.same(registry.heartbeat(1, 'server-a').cameBack, true, 'a heartbeat brings it back')
  t.equal(registry.stateOf(1), 'up')
  t.throws(() => registry.heartbeat(1, 'server-b'), ConflictError, 'a heartbeat with another serverId is refused')
  t.throws(() => registry.heartbeat(7, 'server-a'), NotFoundError, 'so is one for an unknown id')

  await registry.register('server-b', 'http://h:1')
  t.equal(registry.stateOf(1), 'down', 'another server at its URL means it is not there any more')
  await registry.forget(1)
  t.notOk(registry.has(1))
  t.equal((await registry.register('server-a', 'http://h:3')).server.machineId, 3, 'a forgotten server that returns is a new one')
})

t.test('an unreadable state file stops the start instead of renumbering', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(path.join(dir, REGISTRY_FILE_NAME), '{"format":1,"nextMachineId":')
  await t.rejects(registryAt(dir), RegistryStateError)
})
