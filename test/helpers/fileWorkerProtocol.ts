/** What the test process sends a file worker (test/helpers/fileWorker.ts), one JSON line each. */
export type WorkerCommand =
  | { op: 'open', path: string, flags: string | number }
  /** data in base64; position null writes at the handle's own position (O_APPEND: the end). */
  | { op: 'write', fd: number, data: string, position: number | null }
  | { op: 'truncate', fd: number, size: number }
  | { op: 'read', fd: number }
  | { op: 'readPath', path: string }
  | { op: 'size', fd: number }
  | { op: 'sync', fd: number }
  | { op: 'close', fd: number }

/** A worker's answer: ok with what the command gives back, or the error's code (EIO, ENOENT). */
export interface WorkerAnswer {
  seq: number
  ok: boolean
  fd?: number
  /** base64 */
  data?: string
  size?: number
  code?: string
  message?: string
}
