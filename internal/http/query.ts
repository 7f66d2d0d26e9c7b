import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { parseQuery, QueryRefusedError } from '../query/query.ts'
import { hourlyKeptSince } from '../store/retention.ts'
import type { Store } from '../store/store.ts'
import { parseJson } from './body.ts'
import type { Registry } from '../sites/registry.ts'
import type { Auth } from './auth.ts'
import { ApiError } from './errors.ts'
import { routeDocs } from './openapi.ts'

const QUERY_BODY_LIMIT = 64 * 1024

export type QueryRouteOptions = {
  maxFutureMs?: number
  hourRollupDays?: number
  /** Who may read which site; without it every caller may read every site. */
  auth?: Auth | null
  /** The sites registry's cache: each site's timezone. */
  registry?: Pick<Registry, 'site'> | null
}

/**
 * POST /v1/query: metrics over a date range, by at most one dimension and time, under
 * filters (see internal/query). A body that is not a query gets a 400 naming each problem; a
 * query the kept data cannot answer for its range gets a 422 with a stable code.
 */
export function queryRoutes(store: Store, { maxFutureMs = 5 * 60_000, hourRollupDays = 0, auth = null }: QueryRouteOptions = {}) {
  const tooLarge = () => {
    throw new ApiError(413, 'body_too_large', `a query body is at most ${QUERY_BODY_LIMIT} bytes`)
  }
  return new Hono().post('/v1/query', routeDocs.query, bodyLimit({ maxSize: QUERY_BODY_LIMIT, onError: tooLarge }), async (c) => {
    const parsed = parseQuery(parseJson(new Uint8Array(await c.req.arrayBuffer())))
    if (!parsed.ok) throw new ApiError(400, 'invalid_query', 'query is invalid', { details: parsed.problems })
    auth?.read(c, parsed.query.siteId)
    try {
      return c.json(await store.query(parsed.query, { maxFutureMs, hourlyFrom: hourlyKeptSince(hourRollupDays) }))
    } catch (err) {
      if (err instanceof QueryRefusedError) throw new ApiError(422, err.code, err.message)
      throw err
    }
  })
}
