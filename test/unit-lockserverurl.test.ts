import t from 'tap'
import { DEFAULT_LOCK_URL } from '../src/shared/defaults'
import { isLoopbackHost, lockUrlFromDirectory } from '../src/shared/lockServerUrl'
import type { HealthAnswer } from '../src/shared/protocol'

/*
 * Which lock server a client uses when it is not told one: the one the directory names, a
 * loopback URL there seen from the client as the directory's host.
 */

const health = (lockUrl?: unknown): HealthAnswer => ({ service: 'directory', protocol: 2, ...(lockUrl !== undefined ? { lockUrl } : {}) })

t.test('loopback hosts', async (t) => {
  for (const host of ['localhost', 'LOCALHOST', 'a.localhost', '127.0.0.1', '127.1.2.3', '[::1]', '::1']) t.ok(isLoopbackHost(host), host)
  for (const host of ['dir.example', '10.0.0.1', '128.0.0.1', '127.0.0.1.example', '[::2]', '']) t.notOk(isLoopbackHost(host), host)
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
