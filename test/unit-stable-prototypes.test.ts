import fs from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { finishApp, listen, newApp, silentLogger } from '../servers/common/http'
import type { RunningServer } from '../servers/common/http'
import { stablePrototypeClasses } from '../servers/common/stablePrototypes'
import { makeTlsFiles } from './helpers/tlsFiles'

/*
 * The servers make their requests and responses with Express's prototypes from the start
 * (servers/common/stablePrototypes.ts), so Express's prototype swap changes nothing; and
 * everything Express gives them still works, over http and https.
 */

/** An app whose route answers what its request and response were made as, using Express's methods on both. */
function probeApp (): ReturnType<typeof newApp> {
  const app = newApp('file')
  app.get('/probe', (req, res) => {
    res.set('X-Probe', 'yes').status(201).json({
      request: req.constructor.name,
      response: res.constructor.name,
      header: req.get('x-asked') ?? null,
      query: req.query.q ?? null,
      path: req.path,
      hasApp: req.app === app
    })
  })
  finishApp(app, silentLogger)
  return app
}

const expected = { request: 'DfsIncomingMessage', response: 'DfsServerResponse', header: 'hello', query: 'a b', path: '/probe', hasApp: true }

t.test('a new object of the classes already has the prototype Express would give it', async (t) => {
  const app = newApp()
  const classes = stablePrototypeClasses(app)
  const request = new classes.IncomingMessage(new net.Socket())
  t.equal(Object.getPrototypeOf(request), app.request, 'the swap has nothing to change')
  t.equal(typeof (request as unknown as { get: unknown }).get, 'function', 'Express\'s req.get is reachable')
  t.equal(app.response, classes.ServerResponse.prototype, 'responses alike')
  t.equal(typeof (classes.ServerResponse.prototype as unknown as { json: unknown }).json, 'function', 'Express\'s res.json is reachable')
})

t.test('over http, a server made by listen() answers with Express\'s methods on objects of its own classes', async (t) => {
  const server = await listen(probeApp(), 0)
  t.teardown(async () => await server.close())
  const res = await fetch(`${server.url}/probe?q=a%20b`, { headers: { 'X-Asked': 'hello' } })
  t.equal(res.status, 201)
  t.equal(res.headers.get('x-probe'), 'yes')
  t.same(await res.json(), expected)
  const missing = await fetch(`${server.url}/nothing`)
  t.equal(missing.status, 404, 'finishApp\'s error handler answers too')
  t.match(await missing.json(), { error: { code: 'NOT_FOUND' } })
})

t.test('over https the same', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfs-prototypes-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const tls = makeTlsFiles(dir)
  const server: RunningServer = await listen(probeApp(), 0, '127.0.0.1', { cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) })
  t.teardown(async () => await server.close())
  const body = await new Promise<string>((resolve, reject) => {
    https.get(`${server.url}/probe?q=a%20b`, { ca: fs.readFileSync(tls.ca), headers: { 'X-Asked': 'hello' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve(text))
    }).on('error', reject)
  })
  t.same(JSON.parse(body), expected)
})
