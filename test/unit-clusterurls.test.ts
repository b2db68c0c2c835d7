import t from 'tap'
import { DEFAULT_LOCK_URL } from '../src/shared/defaults'
import { isLoopbackHost, lockUrlFromDirectory, registeredUrlOf, seenVia } from '../src/shared/clusterUrls'
import { FileServerPool } from '../src/shared/api'
import { serverDownError } from '../src/client/locator'
import type { HealthAnswer } from '../src/shared/protocol'

/*
 * Where a machine reaches servers nobody named addresses for: the lock server the directory
 * names, and file servers the directory hands out, a loopback URL among them seen as the
 * directory's host; and the URL the directory records for a file server that registers a
 * loopback one from another machine.
 */

const health = (lockUrl?: unknown): HealthAnswer => ({ service: 'directory', protocol: 2, ...(lockUrl !== undefined ? { lockUrl } : {}) })

t.test('loopback hosts', async (t) => {
  for (const host of ['localhost', 'LOCALHOST', 'a.localhost', '127.0.0.1', '127.1.2.3', '[::1]', '::1', '::ffff:127.0.0.1']) t.ok(isLoopbackHost(host), host)
  for (const host of ['dir.example', '10.0.0.1', '128.0.0.1', '127.0.0.1.example', '[::2]', '::ffff:10.0.0.1', '']) t.notOk(isLoopbackHost(host), host)
})

t.test('the URL the directory names', async (t) => {
  t.equal(lockUrlFromDirectory(health('http://locks.example:9000'), 'http://dir.example:7070'), 'http://locks.example:9000', 'a URL of another machine as named')
  t.equal(lockUrlFromDirectory(health('http://127.0.0.1:7071'), 'http://dir.example:7070'), 'http://dir.example:7071', 'loopback: the directory\'s host, the lock server\'s port')
  t.equal(lockUrlFromDirectory(health('https://localhost:7071/'), 'https://10.1.2.3:7070'), 'https://10.1.2.3:7071/', 'scheme and a trailing slash kept')
  t.equal(lockUrlFromDirectory(health('http://127.0.0.1:7071'), 'http://[fd00::5]:7070'), 'http://[fd00::5]:7071', 'an IPv6 directory')
  t.equal(lockUrlFromDirectory(health('http://127.0.0.1:41234'), 'http://127.0.0.1:7070'), 'http://127.0.0.1:41234', 'both on this machine: as named')
  t.equal(lockUrlFromDirectory(health('http://localhost:7071'), 'http://127.0.0.1:7070'), 'http://localhost:7071')
})

t.test('a directory that names none, or nothing usable', async (t) => {
  t.equal(lockUrlFromDirectory(health(), 'http://127.0.0.1:7070'), DEFAULT_LOCK_URL, 'the default')
  t.equal(lockUrlFromDirectory(health(), 'http://dir.example:7070'), `http://dir.example:${new URL(DEFAULT_LOCK_URL).port}`, 'the default, on the directory\'s machine')
  t.equal(lockUrlFromDirectory(health(42), 'http://127.0.0.1:7070'), DEFAULT_LOCK_URL, 'not a string: the default')
  t.equal(lockUrlFromDirectory(health('not a url'), 'http://dir.example:7070'), 'not a url', 'not a URL: as named, for the transport to refuse in one line')
})

t.test('file server URLs the directory hands out, as seen by a machine that reaches it', async (t) => {
  t.equal(seenVia('http://127.0.0.1:7080', 'http://machine-a:7070'), 'http://machine-a:7080', 'a server on the directory\'s machine')
  t.equal(seenVia('http://machine-b:7080', 'http://machine-a:7070'), 'http://machine-b:7080', 'a server named by its own address')
  t.equal(seenVia('http://127.0.0.1:7080', 'http://127.0.0.1:7070'), 'http://127.0.0.1:7080', 'this machine is the directory\'s')
  t.equal(seenVia('not a url', 'http://machine-a:7070'), 'not a url')

  const pool = new FileServerPool(1000, {}, 'http://machine-a:7070')
  t.equal(pool.of({ machineId: 1, url: 'http://127.0.0.1:7080' }).transport.baseUrl, 'http://machine-a:7080', 'a client\'s pool calls the directory\'s machine')
  t.equal(pool.of({ machineId: 2, url: 'http://10.0.0.2:7080' }).transport.baseUrl, 'http://10.0.0.2:7080')
  t.equal(new FileServerPool(1000).of({ machineId: 1, url: 'http://127.0.0.1:7080' }).transport.baseUrl, 'http://127.0.0.1:7080', 'the directory\'s own pools: as recorded')
  const down = { machineId: 1, url: 'http://127.0.0.1:7080', state: 'down' as const }
  t.match(serverDownError(down, '/a.txt', pool.urlOf(down)).message, /^file server 1 at machine-a:7080 is down/, 'errors name the server where this machine calls it')
})

t.test('the URL the directory records for a registering file server', async (t) => {
  t.equal(registeredUrlOf('http://127.0.0.1:7080', '192.168.1.11'), 'http://192.168.1.11:7080', 'a loopback URL from another machine: the address it came from')
  t.equal(registeredUrlOf('https://localhost:7443', '::ffff:192.168.1.11'), 'https://192.168.1.11:7443', 'an IPv4-mapped peer, scheme and port kept')
  t.equal(registeredUrlOf('http://127.0.0.1:7080', 'fd00::11'), 'http://[fd00::11]:7080', 'an IPv6 peer')
  t.equal(registeredUrlOf('http://127.0.0.1:7080', '127.0.0.1'), 'http://127.0.0.1:7080', 'from this machine: as sent')
  t.equal(registeredUrlOf('http://127.0.0.1:7080', '::ffff:127.0.0.1'), 'http://127.0.0.1:7080')
  t.equal(registeredUrlOf('http://machine-b:7080', '192.168.1.11'), 'http://machine-b:7080', 'a public URL: as sent')
  t.equal(registeredUrlOf('http://127.0.0.1:7080', undefined), 'http://127.0.0.1:7080', 'no peer known: as sent')
})
