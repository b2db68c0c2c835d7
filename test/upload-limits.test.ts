import fs from 'node:fs'
import fsp from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { finishApp, listen, newApp } from '../servers/common/http'
import { FileStore } from '../servers/file/fileStore'
import { uploadLimits } from '../servers/file/uploadLimits'
import type { UploadLimitOptions } from '../servers/file/uploadLimits'
import { waitFor } from './helpers/waitFor'

/*
 * The file server's upload limits on a real store behind a real HTTP server: an upload
 * without a Content-Length is capped as it streams, and one slower than the minimum rate is
 * cut, while one that keeps moving is not. The limits here are small so a test takes seconds.
 */

async function appendServer (t: Test, limits: UploadLimitOptions): Promise<{ url: string, root: string }> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'dfs-uploads-'))
  fs.writeFileSync(path.join(root, 'a.txt'), 'start\n')
  const store = await FileStore.open(root)
  const app = newApp()
  app.post('/append', uploadLimits(store, limits), async (req, res) => {
    res.json(await store.append('/a.txt', req))
  })
  finishApp(app, () => {})
  const running = await listen(app, 0)
  t.teardown(async () => {
    await running.close()
    await store.close()
    await fsp.rm(root, { recursive: true, force: true })
  })
  return { url: running.url, root }
}

/** POSTs chunks without a Content-Length (chunked), `gapMs` apart; how it ended. */
async function chunkedUpload (url: string, chunks: Buffer[], gapMs: number): Promise<{ status: number | null, error: string | null }> {
  return await new Promise((resolve) => {
    const req = http.request(`${url}/append`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' } }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? null, error: null }))
    })
    req.on('error', (err) => resolve({ status: null, error: (err as NodeJS.ErrnoException).code ?? err.message }))
    let i = 0
    const next = (): void => {
      if (req.destroyed) return
      if (i === chunks.length) {
        req.end()
        return
      }
      req.write(chunks[i++])
      setTimeout(next, gapMs)
    }
    next()
  })
}

const fileOf = (root: string): string => fs.readFileSync(path.join(root, 'a.txt'), 'utf8')

t.test('an upload without a Content-Length is cut once it passes the cap; the file stays as it was', async (t) => {
  const { url, root } = await appendServer(t, { maxBytes: 1024 * 1024 })
  const chunks = Array.from({ length: 64 }, () => Buffer.alloc(64 * 1024, 'x')) // 4 MiB
  const outcome = await chunkedUpload(url, chunks, 5)
  t.equal(outcome.status, null, `the upload did not get an answer (${JSON.stringify(outcome)})`)
  // The store cuts a failed append back once it sees the body fail, which may be after the client saw the reset.
  await waitFor('the cut upload to be taken back', async () => fileOf(root) === 'start\n')
  t.equal(fileOf(root), 'start\n', 'no byte of it stayed in the file')
  const small = await chunkedUpload(url, [Buffer.from('small\n')], 0)
  t.equal(small.status, 200, 'an upload under the cap goes through')
  t.equal(fileOf(root), 'start\nsmall\n')
})

t.test('an upload slower than the minimum rate is cut; a moving one is not', async (t) => {
  const { url, root } = await appendServer(t, { minBytesPerSecond: 10_000, rateWindowMs: 1000 })
  // 16 bytes every 300 ms: about 50 bytes a second, far under 10,000.
  const trickle = await chunkedUpload(url, Array.from({ length: 40 }, () => Buffer.from('trickle trickle\n')), 300)
  t.equal(trickle.status, null, `the trickle was cut (${JSON.stringify(trickle)})`)
  await waitFor('the cut trickle to be taken back', async () => fileOf(root) === 'start\n')
  t.equal(fileOf(root), 'start\n', 'and left nothing')
  // 64 KiB every 20 ms for about 3 s: far over the minimum in every window.
  const moving = await chunkedUpload(url, Array.from({ length: 150 }, () => Buffer.alloc(64 * 1024, 'm')), 20)
  t.equal(moving.status, 200, `a moving upload longer than several windows is not cut (${JSON.stringify(moving)})`)
  t.equal(fs.statSync(path.join(root, 'a.txt')).size, 6 + 150 * 64 * 1024)
})
