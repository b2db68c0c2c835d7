import { spawn } from 'node:child_process'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { findProgram } from './sshfs'
import type { WorkloadResult } from './workload'

/*
 * The database workload of issue #12: one-row transactions on a 50 MB sqlite database, in
 * sqlite's default rollback journal (DELETE) mode through one connection, as the sqlite3 CLI
 * runs them. Each transaction makes the journal file, writes and fsyncs it, writes the
 * changed pages into the database and fsyncs it, then unlinks the journal, all under
 * sqlite's fcntl locks: what any program with a small embedded database does per commit.
 * The sqlite3 process is the workload's child process, so the benchmark process, which
 * serves the cluster, never touches the mount itself.
 */

/** Rows the database starts with, of ROW_BYTES random bytes each: about 52 MB on disk. */
export const SQLITE_ROWS = 50_000
const ROW_BYTES = 1000
/** One-row transactions timed, each `begin; insert; commit`. */
export const SQLITE_TRANSACTIONS = 1000
const SQLITE_DEADLINE_MS = 900_000

/** Why the database workload cannot run here, or null. */
export function sqliteMissing (): string | null {
  return findProgram('sqlite3') === null ? 'no database workload: the sqlite3 CLI is not installed (apt-get install sqlite3)' : null
}

/** `sqlite3 FILE` reading `script` on stdin; answers its stdout, fails with its stderr. */
async function sqlite3 (file: string, script: string, timeoutMs = SQLITE_DEADLINE_MS): Promise<string> {
  const child = spawn('sqlite3', ['-batch', '-bail', file], { stdio: ['pipe', 'pipe', 'pipe'] })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  child.stdin.on('error', () => {})
  child.stdin.end(script)
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (exitCode, signal) => resolve(exitCode ?? (signal === null ? null : -1)))
    })
    if (code !== 0) throw new Error(`sqlite3 ${file} failed (exit ${code ?? 'unknown'}): ${stderr.trim()}`)
    return stdout
  } finally {
    clearTimeout(timer)
  }
}

/** Writes the starting database (rollback journal mode, 4 KiB pages) at `file`, before any server runs. */
export async function createDatabase (file: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true })
  await sqlite3(file, [
    'pragma page_size = 4096;',
    'pragma journal_mode = delete;',
    'create table t (id integer primary key, v blob);',
    `with recursive n(i) as (select 1 union all select i + 1 from n where i < ${SQLITE_ROWS}) insert into t (v) select randomblob(${ROW_BYTES}) from n;`,
    ''
  ].join('\n'))
}

/** Rows in the database at `file` (through whichever file system holds it). */
export async function databaseRows (file: string): Promise<number> {
  return Number((await sqlite3(file, 'select count(*) from t;\n')).trim())
}

/**
 * `count` one-row transactions in one sqlite3 process on the database at `file`, timed from
 * the process's start to its exit (its start and the database's open are a few ms of it).
 */
export async function sqliteTransactions (file: string, count = SQLITE_TRANSACTIONS): Promise<WorkloadResult> {
  const script = Array.from({ length: count }, () => `begin; insert into t (v) values (randomblob(${ROW_BYTES})); commit;`).join('\n') + '\n'
  const start = process.hrtime.bigint()
  await sqlite3(file, script)
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  return { workload: 'sqlite', runsMs: [ms], ops: count, bytes: count * ROW_BYTES }
}
