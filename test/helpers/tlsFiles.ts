import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

/** A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost, as PEM files. */
export interface TlsFiles {
  ca: string
  cert: string
  key: string
  /** A CA that signed nothing here: trusting it is as good as trusting nobody. */
  otherCa: string
}

function openssl (dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

function newCa (dir: string, name: string): void {
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`,
    '-days', '2', '-subj', `/CN=${name}`])
}

/** Made in `dir` with the openssl CLI (a few tens of ms). */
export function makeTlsFiles (dir: string): TlsFiles {
  fs.mkdirSync(dir, { recursive: true })
  newCa(dir, 'test-ca')
  newCa(dir, 'other-ca')
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n')
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=dfs test server'])
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'test-ca.pem', '-CAkey', 'test-ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext'])
  return { ca: path.join(dir, 'test-ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key'), otherCa: path.join(dir, 'other-ca.pem') }
}
