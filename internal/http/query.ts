import { type Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { withComparison } from '../query/compare.ts'
import { toCsv } from '../query/csv.ts'
import { parseQuery, type Query, type QueryResult, QueryRefusedError } from '../query/query.ts'
import type { Registry } from '../sites/registry.ts'
import { hourlyKeptSince } from '../store/retention.ts'
import type { Store } from '../store/store.ts'
import type { Auth } from './auth.ts'
import { parseJson } from './body.ts'
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
  /** What one request's statements may take together (a comparison, an export's files); 0: no limit. */
  timeoutMs?: number
}

/** Answers parsed queries: in the site's time zone, with a comparison when asked; a 422 where the kept data cannot answer. */
export type Answer = (c: Context, body: unknown) => Promise<{ query: Query; result: QueryResult }>

export function createAnswer(
  store: Store,
  { maxFutureMs = 5 * 60_000, hourRollupDays = 0, auth = null, registry = null, timeoutMs = 0 }: QueryRouteOptions,
): Answer {
  // One deadline per request, however many answers it takes (an export asks for sixteen).
  const deadlines = new WeakMap<Request, number>()
  const deadlineOf = (c: Context) => {
    if (timeoutMs <= 0) return undefined
    const at = deadlines.get(c.req.raw) ?? Date.now() + timeoutMs
    deadlines.set(c.req.raw, at)
    return at
  }
  return async function answer(c, body) {
    const siteId = (body as { site_id?: unknown } | null)?.site_id
    const timezone = (typeof siteId === 'string' && registry?.site(siteId)?.timezone) || 'UTC'
    const parsed = parseQuery(body, { timezone })
    if (!parsed.ok) throw new ApiError(400, 'invalid_query', 'query is invalid', { details: parsed.problems })
    auth?.read(c, parsed.query.siteId)
    try {
      const options = { maxFutureMs, hourlyFrom: hourlyKeptSince(hourRollupDays), deadline: deadlineOf(c) }
      return { query: parsed.query, result: await withComparison(parsed.query, (q) => store.query(q, options)) }
    } catch (err) {
      if (err instanceof QueryRefusedError) throw new ApiError(422, err.code, err.message)
      throw err
    }
  }
}

/** Whether the caller asked for CSV: `Accept: text/csv`, or `?format=csv` for plain links. */
function wantsCsv(c: Context): boolean {
  const format = c.req.query('format')
  if (format !== undefined && format !== 'csv' && format !== 'json') throw new ApiError(400, 'invalid_query', 'format must be csv or json')
  return format === 'csv' || (format === undefined && /(^|,)\s*text\/csv/.test(c.req.header('accept') ?? ''))
}

export const csvHeaders = (name: string) => ({
  'Content-Type': 'text/csv; charset=utf-8',
  'Content-Disposition': `attachment; filename="${name.replace(/[^A-Za-z0-9._-]/g, '_')}.csv"`,
})

/**
 * POST /v1/query: metrics over a date range, by at most one dimension and time, under
 * filters (see internal/query). GET /v1/query?query=<the same JSON> answers the same, for
 * plain links. CSV with `Accept: text/csv` or `?format=csv`. A body that is not a query gets
 * a 400 naming each problem; a query the kept data cannot answer gets a 422 with a stable code.
 */
export function queryRoutes(store: Store, options: QueryRouteOptions = {}) {
  const answer = createAnswer(store, options)
  const tooLarge = () => {
    throw new ApiError(413, 'body_too_large', `a query body is at most ${QUERY_BODY_LIMIT} bytes`)
  }
  const respond = async (c: Context, body: unknown) => {
    const csv = wantsCsv(c)
    const { query, result } = await answer(c, body)
    return csv ? c.body(toCsv(query, result), 200, csvHeaders(`${query.siteId}-query`)) : c.json(result)
  }
  return new Hono()
    .post('/v1/query', routeDocs.query, bodyLimit({ maxSize: QUERY_BODY_LIMIT, onError: tooLarge }), async (c) =>
      respond(c, parseJson(new Uint8Array(await c.req.arrayBuffer()))),
    )
    .get('/v1/query', routeDocs.queryGet, async (c) => {
      const text = c.req.query('query')
      if (text === undefined) throw new ApiError(400, 'invalid_query', 'GET /v1/query needs ?query=<the query as JSON>, as POST takes it')
      if (text.length > QUERY_BODY_LIMIT) tooLarge()
      return respond(c, parseJson(new TextEncoder().encode(text)))
    })
}
