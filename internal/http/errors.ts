import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { Logger } from '../log/log.ts'

/** Every code an API error answer can carry: clients branch on these, never on the message. */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'bad_authorization'
  | 'not_found'
  | 'method_not_allowed'
  | 'error'
  | 'internal'
  | 'unsupported_media_type'
  | 'body_too_large'
  | 'body_timeout'
  | 'invalid_content_length'
  | 'invalid_utf8'
  | 'empty_body'
  | 'invalid_json'
  | 'invalid_event'
  | 'invalid_batch'
  | 'empty_batch'
  | 'batch_too_large'
  | 'origin_not_allowed'
  | 'site_not_allowed'
  | 'rate_limited'
  | 'queue_full'
  | 'queue_unavailable'
  | 'identity_unavailable'
  | 'server_busy'
  | 'invalid_query'
  | 'hourly_detail_expired'
  | 'needs_raw_events'
  | 'visits_one_dimension'
  | 'visits_one_value'
  | 'visits_whole_days'
  | 'visits_not_recorded'
  | 'dimensions_not_recorded'
  | 'forbidden'
  | 'query_timeout'
  | 'database_unavailable'
  | 'invalid_site'
  | 'site_exists'
  | 'site_not_found'
  | 'invalid_token_request'
  | 'token_not_found'
  | 'too_many_tokens'

export type ApiErrorOptions = {
  /** Problems with single fields, as `details` in the answer. */
  details?: unknown[]
  headers?: Record<string, string>
  /** Further fields of the answer's JSON body, e.g. the event_id a client should retry with. */
  extra?: Record<string, unknown>
}

/** Where a client went wrong (or Redis could not take the write): a status, a stable code and a message. */
export class ApiError extends Error {
  readonly details?: unknown[]
  readonly headers?: Record<string, string>
  readonly extra?: Record<string, unknown>
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    { details, headers, extra }: ApiErrorOptions = {},
  ) {
    super(message)
    this.name = 'ApiError'
    this.details = details
    this.headers = headers
    this.extra = extra
  }
}

export type ErrorBody = { error: string; code: ErrorCode; details?: unknown[] } & Record<string, unknown>

export const RETRY_AFTER_SECONDS = '1'

/**
 * What a client is told when Redis did not confirm a write in time. The write may still
 * have happened (a frozen Redis can wake and apply it), so the event is not "refused":
 * the client should retry with the same event_id, which is stored once however often it
 * arrives within the dedup window.
 */
export const QUEUE_UNCONFIRMED =
  'the event queue did not confirm the write: it may or may not have been stored. Retry with the same event_id; it is stored once'

export const queueUnavailable = (eventId: string) =>
  new ApiError(503, 'queue_unavailable', QUEUE_UNCONFIRMED, { headers: { 'Retry-After': RETRY_AFTER_SECONDS }, extra: { event_id: eventId } })

/**
 * Redis could not give the day's salt, so no visitor id could be derived: nothing of the
 * request was stored, and the client retries it as it would after queue_unavailable.
 */
export const identityUnavailable = (): never => {
  throw new ApiError(503, 'identity_unavailable', `the visitor-id salt could not be read from Redis: nothing was stored; retry in ${RETRY_AFTER_SECONDS} s`, {
    headers: { 'Retry-After': RETRY_AFTER_SECONDS },
  })
}

/** The JSON body an ApiError is answered with. */
export function errorBody(err: ApiError): ErrorBody {
  return { error: err.message, code: err.code, ...(err.details ? { details: err.details } : {}), ...err.extra }
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
    const pg = postgresTrouble(err)
    if (pg) {
      log.warn({ err: err.message, method: c.req.method, path: c.req.path }, pg.error)
      return c.json(pg, 503, { 'Retry-After': pg.code === 'database_unavailable' ? '5' : '30' })
    }
    log.error({ err, method: c.req.method, path: c.req.path, request_id: c.get('requestId' as never) }, 'unhandled error')
    return c.json({ error: 'internal error', code: 'internal' satisfies ErrorCode }, 500)
  }
}

/**
 * A query Postgres cancelled for running past the statement timeout (SQLSTATE 57014), or a
 * Postgres that cannot be reached or went away: the server's trouble, answered 503 with a
 * code, never 500. Connection errors are postgres.js's own codes and the socket's.
 */
function postgresTrouble(err: Error): { error: string; code: ErrorCode } | null {
  const code = (err as { code?: unknown }).code
  if (code === '57014') {
    return { error: 'the query ran longer than QUERY_TIMEOUT_MS and was cancelled: ask for a shorter range or fewer breakdowns', code: 'query_timeout' }
  }
  if (
    typeof code === 'string' &&
    (/^(08|57P0[1-3])/.test(code) ||
      [
        'CONNECTION_CLOSED',
        'CONNECTION_ENDED',
        'CONNECTION_DESTROYED',
        'CONNECT_TIMEOUT',
        'ECONNREFUSED',
        'ECONNRESET',
        'ETIMEDOUT',
        'EHOSTUNREACH',
        'ENOTFOUND',
      ].includes(code))
  ) {
    return { error: 'Postgres cannot be reached: try again shortly', code: 'database_unavailable' }
  }
  return null
}

function codeFor(status: number): ErrorCode {
  return ({ 400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 413: 'body_too_large' } as Record<number, ErrorCode>)[status] ?? 'error'
}
