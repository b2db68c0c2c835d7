import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import type { ErrorRequestHandler, Express, Request } from 'express'
import { asDfsError, BadRequestError, NotFoundError } from '../../src/shared/errors'
import { normalizePath } from '../../src/shared/paths'

/** A running server: where it listens and how to stop it. */
export interface RunningServer {
  url: string
  port: number
  close: () => Promise<void>
}

export type Logger = (line: string) => void

export const silentLogger: Logger = () => {}

/** express.json with a size bound; malformed JSON becomes a 400 through the error handler. */
export const jsonBody = express.json({ limit: '16mb' })

/** The canonical path named by `?path=`; a missing or bad one is a 400. */
export function pathParam (req: Request, name = 'path'): string {
  return normalizePath(req.query[name])
}

/** A whole number named by `?name=`, at least `min`; undefined when absent and optional. */
export function integerParam (req: Request, name: string, opts: { min?: number, optional: true }): number | undefined
export function integerParam (req: Request, name: string, opts?: { min?: number, optional?: false }): number
export function integerParam (req: Request, name: string, opts: { min?: number, optional?: boolean } = {}): number | undefined {
  const value = req.query[name]
  if (value === undefined || value === '') {
    if (opts.optional === true) return undefined
    throw new BadRequestError(`${name} is missing`)
  }
  const number = Number(value)
  if (typeof value !== 'string' || !Number.isSafeInteger(number) || number < (opts.min ?? Number.MIN_SAFE_INTEGER)) {
    throw new BadRequestError(`${name} must be a whole number${opts.min === undefined ? '' : ` of at least ${opts.min}`}`, { [name]: value })
  }
  return number
}

/** Unknown routes and every thrown error become the JSON error body of docs/protocol.md. */
export function finishApp (app: Express, log: Logger): void {
  app.use((req, _res, next) => next(new NotFoundError(`no route ${req.method} ${req.path}`)))
  const onError: ErrorRequestHandler = (err, _req, res, _next) => {
    const bodyProblem = (err as { type?: string }).type
    const error = bodyProblem === 'entity.parse.failed'
      ? new BadRequestError('request body is not valid JSON')
      : bodyProblem === 'entity.too.large' ? new BadRequestError('request body is too large') : asDfsError(err)
    if (error.status >= 500) log(`error: ${error.message}`)
    if (res.headersSent) {
      res.destroy()
      return
    }
    res.status(error.status).json(error.toBody())
  }
  app.use(onError)
}

/** Listens on host:port (0 picks a free port) and reads back the port it got. */
export async function listen (app: Express, port: number, host = '127.0.0.1'): Promise<RunningServer> {
  const server = http.createServer(app)
  server.keepAliveTimeout = 65_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const bound = (server.address() as AddressInfo).port
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  return {
    url: `http://${shownHost}:${bound}`,
    port: bound,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    }
  }
}
