import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { Logger } from '../log/log.ts'

/** Where a client went wrong (or Redis could not take the write): a status, a stable code and a message. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly details?: unknown[],
    readonly headers?: Record<string, string>,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

export type ErrorBody = { error: string; code: string; details?: unknown[] }

export const RETRY_AFTER_SECONDS = '1'

export const queueUnavailable = () =>
  new ApiError(503, 'queue_unavailable', 'the event queue cannot take writes right now; retry later', undefined, {
    'Retry-After': RETRY_AFTER_SECONDS,
  })

/** The JSON body an ApiError is answered with. */
export function errorBody(err: ApiError): ErrorBody {
  return err.details ? { error: err.message, code: err.code, details: err.details } : { error: err.message, code: err.code }
}

/** Maps ApiError and HTTPException to their status with a JSON body; anything else is a logged 500. */
export function errorHandler(log: Logger) {
  return function onError(err: Error, c: Context): Response {
    if (err instanceof ApiError) return c.json(errorBody(err), err.status, err.headers)
    if (err instanceof HTTPException) {
      const res = err.getResponse()
      if (res.headers.get('content-type')?.includes('application/json')) return res
      const headers = Object.fromEntries(res.headers)
      delete headers['content-type']
      return c.json({ error: err.message || res.statusText || 'request failed', code: codeFor(err.status) }, err.status, headers)
    }
    log.error({ err, method: c.req.method, path: c.req.path, request_id: c.get('requestId' as never) }, 'unhandled error')
    return c.json({ error: 'internal error', code: 'internal' }, 500)
  }
}

function codeFor(status: number): string {
  return ({ 400: 'bad_request', 401: 'unauthorized', 413: 'body_too_large' } as Record<number, string>)[status] ?? 'error'
}
