import type { Request } from 'express'
import { BadPathError, BadRequestError } from '../../src/shared/errors'
import { normalizePath } from '../../src/shared/paths'
import { Headers } from '../../src/shared/protocol'
import type { EntryKind, MetaKind } from '../../src/shared/protocol'

interface Bounds { min?: number, max?: number }

/**
 * Reads and checks a request's fields, from its query string or its JSON body alike: every
 * route reads its input through one of these, so a missing, mistyped or out-of-range field
 * is always a 400 that names the field, never a 500 or a value taken on trust.
 */
export class Fields {
  constructor (private readonly values: Record<string, unknown>, private readonly where: 'query' | 'body') {}

  has (name: string): boolean {
    const value = this.values[name]
    return value !== undefined && value !== null && value !== ''
  }

  /** A path in canonical form (see paths.ts): no '..', no NUL, within Linux's limits. */
  path (name = 'path'): string {
    if (!this.has(name)) throw new BadPathError(`${name} is missing`)
    return normalizePath(this.values[name])
  }

  paths (name: string): string[] {
    const value = this.required(name)
    if (!Array.isArray(value)) throw new BadRequestError(`${name} must be a list of paths`)
    return value.map((item) => normalizePath(item))
  }

  int (name: string, bounds: Bounds = {}): number {
    const value = this.required(name)
    const number = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN
    if (!Number.isSafeInteger(number) || number < (bounds.min ?? Number.MIN_SAFE_INTEGER) || number > (bounds.max ?? Number.MAX_SAFE_INTEGER)) {
      const range = bounds.max !== undefined ? ` from ${bounds.min ?? 0} to ${bounds.max}` : bounds.min !== undefined ? ` of at least ${bounds.min}` : ''
      throw new BadRequestError(`${name} must be a whole number${range}`, { [name]: String(value).slice(0, 64) })
    }
    return number
  }

  optionalInt (name: string, bounds: Bounds = {}): number | undefined {
    return this.has(name) ? this.int(name, bounds) : undefined
  }

  string (name: string, maxLength = 1024): string {
    const value = this.required(name)
    if (typeof value !== 'string' || value.length > maxLength) throw new BadRequestError(`${name} must be a string of at most ${maxLength} characters`)
    return value
  }

  /** An id chosen by a peer (a file server's serverId): 1 to 64 letters, digits, '-' or '_'. */
  identifier (name: string): string {
    const value = this.required(name)
    if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(value)) {
      throw new BadRequestError(`${name} must be 1 to 64 letters, digits, '-' or '_'`, { [name]: String(value).slice(0, 64) })
    }
    return value
  }

  kind (name = 'kind', fallback?: EntryKind): EntryKind {
    const value = this.has(name) ? this.values[name] : fallback
    if (value !== 'file' && value !== 'dir') throw new BadRequestError(`${name} must be 'file' or 'dir', not ${String(value).slice(0, 16)}`)
    return value
  }

  /** A kind a file server may create: a file, a folder or a symbolic link. */
  metaKind (name = 'kind', fallback?: MetaKind): MetaKind {
    const value = this.has(name) ? this.values[name] : fallback
    if (value !== 'symlink') return this.kind(name, value as EntryKind)
    return value
  }

  flag (name: string): boolean {
    const value = this.values[name]
    if (value === undefined || value === false || value === 'false') return false
    if (value === true || value === 'true') return true
    throw new BadRequestError(`${name} must be true or false`)
  }

  /** The raw value, for fields with a shape of their own (a list of objects). */
  raw (name: string): unknown {
    return this.required(name)
  }

  private required (name: string): unknown {
    if (!this.has(name)) throw new BadRequestError(`${name} is missing${this.where === 'body' ? ' from the request body' : ''}`)
    return this.values[name]
  }
}

/** The change id a client chose (X-Dfs-Change-Id): up to 64 letters, digits, '-' or '_'. */
export function changeIdOf (req: Request): string | undefined {
  const id = req.get(Headers.changeId)
  if (id === undefined) return undefined
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new BadRequestError(`${Headers.changeId} must be 1 to 64 letters, digits, '-' or '_'`)
  return id
}

export function queryOf (req: Request): Fields {
  return new Fields(req.query as Record<string, unknown>, 'query')
}

export function bodyOf (req: Request): Fields {
  const body: unknown = req.body
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('the request body must be a JSON object')
  return new Fields(body as Record<string, unknown>, 'body')
}
