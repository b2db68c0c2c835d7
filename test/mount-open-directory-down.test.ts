import fs from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { outcome, sh } from './helpers/mount'
import { startProcessCluster } from './helpers/processCluster'
import { within } from './helpers/waitFor'

/*
 * A hard mount waits for the directory as it waits for a file server: `echo >>` started
 * while the directory is dead (its open needs the file's place) waits for the directory's
 * return and then succeeds, and its line is there once. Where a shell sees the error of an
 * open, an EIO there would be a failed echo the program did not have to see. The folders
 * were just listed: a stat then asks for the listing again, which must wait as well.
 */

/** Long enough that only a hang hits it. */
const DONE_MS = 60_000
/** How long the directory stays dead before the echo: longer than the mount's and the kernel's memory of names. */
const DEAD_MS = 2500

t.test('echo >> started while the directory is dead waits for it and lands once', async (t) => {
  const c = await startProcessCluster(t, { trees: [{ 'logs/app.log': 'start\n' }] })
  const mount = await c.mount()
  const file = mount.at('/logs/app.log')
  const first = await sh(`echo before >> '${file}'`, { timeoutMs: DONE_MS })
  t.equal(first.code, 0, outcome(first))
  // Listed folders: a stat soon after is answered from a listing (ls -l costs one request).
  const listed = await sh(`ls -l '${mount.mountpoint}' '${mount.at('/logs')}'`, { timeoutMs: DONE_MS })
  t.equal(listed.code, 0, outcome(listed))

  await c.directory.kill()
  // The mount's remembered lookups and attributes run out meanwhile.
  await new Promise((resolve) => setTimeout(resolve, DEAD_MS))
  const during = sh(`echo during >> '${file}'`, { timeoutMs: DONE_MS })
  t.notOk(await within(during, 1000), 'the echo waits for the directory instead of failing')
  await c.directory.restart()
  await c.directory.waitHealthy()
  const done = await during
  t.equal(done.code, 0, `the echo succeeded once the directory was back: ${outcome(done)}`)
  t.equal(await fs.readFile(path.join(c.files[0].root as string, 'logs', 'app.log'), 'utf8'), 'start\nbefore\nduring\n', 'the line is there once')
})
