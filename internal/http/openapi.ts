import { toJsonSchema } from '@valibot/to-json-schema'
import type { Hono } from 'hono'
import { describeRoute, openAPIRouteHandler, resolver } from 'hono-openapi'
import * as v from 'valibot'
import { EventSchema, type Problem } from '../event/event.ts'
import { METRICS, OPERATORS, QuerySchema, REFUSAL_CODES } from '../query/query.ts'
import { GRANULARITIES } from '../store/buckets.ts'
import { DIMENSIONS, PROPS_PREFIX, VISIT_ONLY_DIMENSIONS } from '../store/dimensions.ts'

// Response shapes, as valibot schemas so the OpenAPI document is generated, not written.
const ProblemSchema = v.object({ field: v.string(), message: v.string() }) satisfies v.GenericSchema<Problem>
const ErrorSchema = v.object({ error: v.string(), code: v.string(), details: v.optional(v.array(ProblemSchema)) })
const AcceptedSchema = v.object({ status: v.literal('accepted'), event_id: v.pipe(v.string(), v.uuid()) })
const BatchSchema = v.object({
  status: v.picklist(['accepted', 'partial', 'rejected', 'unavailable']),
  accepted: v.number(),
  rejected: v.number(),
  failed: v.number(),
  results: v.array(
    v.object({
      index: v.number(),
      status: v.picklist(['accepted', 'rejected', 'failed']),
      event_id: v.optional(v.string()),
      code: v.optional(v.string()),
      details: v.optional(v.array(ProblemSchema)),
    }),
  ),
})
const PathViews = v.object({ path: v.string(), views: v.number() })
const StatsSchema = v.object({
  site_id: v.string(),
  date: v.nullable(v.string()),
  event_type: v.nullable(v.string()),
  total_views: v.number(),
  unique_users: v.number(),
  top_paths: v.array(PathViews),
})
const RangeStatsSchema = v.object({
  site_id: v.string(),
  from: v.string(),
  to: v.string(),
  granularity: v.picklist(GRANULARITIES),
  event_type: v.nullable(v.string()),
  totals: v.object({ views: v.number(), unique_users: v.number() }),
  series: v.array(v.object({ bucket: v.string(), views: v.number(), unique_users: v.number() })),
  top_paths: v.array(PathViews),
  top_paths_max_error: v.number(),
})

const ignore = { errorMode: 'ignore' } as const
const json = (schema: v.GenericSchema, description: string) => ({ description, content: { 'application/json': { schema: resolver(schema as never, ignore) } } })
const error = (description: string) => json(ErrorSchema, description)

/** Query parameters from a valibot object schema (the one the handler validates with). */
function queryParameters(schema: v.GenericSchema) {
  const s = toJsonSchema(schema, ignore) as { properties?: Record<string, object & { description?: string }>; required?: string[] }
  return Object.entries(s.properties ?? {}).map(([name, prop]) => ({ name, in: 'query' as const, required: s.required?.includes(name) ?? false, schema: prop }))
}

const ingestBody = (schema: v.GenericSchema, summary: string) => ({
  content: {
    'application/json': { schema: resolver(schema as never, ignore) },
    'text/plain': { schema: resolver(schema as never, ignore), description: 'the same JSON, as navigator.sendBeacon sends it' },
  },
  required: true,
  description: summary,
})
const ingestErrors = {
  400: error(
    'Invalid JSON, invalid UTF-8, an empty body, or an invalid event: `details` names every problem; invalid_content_length: a Content-Length that is not one whole number',
  ),
  403: error('origin_not_allowed (the whole request), or site_not_allowed (one event; in a batch such an event is a `rejected` result)'),
  408: error('body_timeout: the body did not arrive within INGEST_BODY_TIMEOUT_MS'),
  413: error('Body or batch too large'),
  415: error('Content-Type is not application/json or text/plain'),
  429: error('Rate limited; see Retry-After (a batch counts as its number of events)'),
  503: error(
    'Redis cannot take the write or give the day’s visitor-id salt, the backlog is full (queue_full), or bodies in progress fill INGEST_IN_FLIGHT_BYTES (server_busy); see Retry-After',
  ),
}
/** What every stats route may also answer besides 200 and 400. */
const readErrors = {
  401: error('No or wrong token'),
  403: error('A token of another site'),
  503: error('query_timeout (Retry-After: 30): cancelled at QUERY_TIMEOUT_MS; or database_unavailable (Retry-After: 5)'),
}
const REFUSALS = `The kept data cannot answer this for the range: ${REFUSAL_CODES.join(', ')} (docs/query.md says when each applies)`

export const routeDocs = {
  event: describeRoute({
    tags: ['ingest'],
    summary: 'Send one event',
    description:
      'Answers 202 only once Redis holds the event. When `event_id` is absent the API assigns a UUIDv7; clients that retry should send their own. When `user_id` is absent the API sets it to the day’s visitor id, a hash of the site, client IP and user agent (see README, visitor identity).',
    requestBody: ingestBody(EventSchema, 'One event'),
    responses: { 202: json(AcceptedSchema, 'Accepted: Redis holds the event'), ...ingestErrors },
  }),
  events: describeRoute({
    tags: ['ingest'],
    summary: 'Send up to 1000 events',
    description: 'A JSON array of events, or `{"events": [...]}`. The answer has a result per event, in order, so a client can retry just those not accepted.',
    requestBody: ingestBody(v.union([v.array(EventSchema), v.object({ events: v.array(EventSchema) })]), 'A batch of events'),
    responses: { 202: json(BatchSchema, 'Every event accepted'), 207: json(BatchSchema, 'Some accepted; see each result'), ...ingestErrors },
  }),
  stats: (query: v.GenericSchema) =>
    describeRoute({
      tags: ['stats'],
      summary: 'Views, unique users and top paths for one UTC day, or all time',
      security: [{ bearer: [] }],
      parameters: queryParameters(query),
      responses: { 200: json(StatsSchema, 'Stats'), 400: error('Invalid query; `details` names the parameter'), ...readErrors },
    }),
  rangeStats: (query: v.GenericSchema) =>
    describeRoute({
      tags: ['stats'],
      summary: 'Totals, a time series and top paths for any range',
      description: 'Combines rollups and raw events not yet rolled up, in one snapshot. `from` and `to` must fall on whole UTC hours.',
      security: [{ bearer: [] }],
      parameters: queryParameters(query),
      responses: {
        200: json(RangeStatsSchema, 'Stats'),
        400: error('Invalid query; `details` names the parameter'),
        ...readErrors,
        422: error('hourly_detail_expired: the range needs hourly rollups older than ROLLUP_HOUR_RETENTION_DAYS'),
      },
    }),
  query: describeRoute({
    tags: ['stats'],
    summary: 'Metrics by dimension and time, under filters (shaped like Plausible Stats API v2)',
    description: `Metrics (${METRICS.join(', ')}) over a date range, broken down by at most one dimension (${[...DIMENSIONS, ...VISIT_ONLY_DIMENSIONS].join(', ')}, ${PROPS_PREFIX}<key>) and time:${GRANULARITIES.join('|')}, under ${OPERATORS.join('/')} filters. Answers from rollups, plus raw events not yet rolled up; two dimensions at once need raw events (kept RAW_RETENTION_HOURS). See docs/query.md.`,
    security: [{ bearer: [] }],
    requestBody: { content: { 'application/json': { schema: resolver(QuerySchema as never, ignore) } }, required: true, description: 'The query' },
    responses: {
      200: { description: '`{"results": [{"dimensions": [...], "metrics": [...]}], "meta": {...}}`' },
      400: error('Not a valid query; `details` names every problem'),
      ...readErrors,
      413: error('Body over 64 KiB'),
      422: error(REFUSALS),
    },
  }),
  queryGet: describeRoute({
    tags: ['stats'],
    summary: 'The same as POST /v1/query, with the query as JSON in ?query=, for plain links',
    description: 'Answers CSV with `Accept: text/csv` or `?format=csv` (as POST does): the dimensions as asked and the metrics as columns, RFC 4180.',
    security: [{ bearer: [] }],
    parameters: [
      { name: 'query', in: 'query', required: true, schema: { type: 'string' }, description: 'the query body, as JSON' },
      { name: 'format', in: 'query', required: false, schema: { type: 'string', enum: ['json', 'csv'] } },
    ],
    responses: {
      200: { description: 'The answer, JSON or CSV' },
      400: error('Not a valid query'),
      ...readErrors,
      422: error(REFUSALS),
    },
  }),
  export: describeRoute({
    tags: ['stats'],
    summary: 'The whole dashboard as a zip of CSV files',
    description:
      'visitors.csv over time, then one CSV per breakdown (sources, channels, referrers, UTM tags, pages, countries, devices, browsers, operating systems, event types) under the filters; breakdowns the kept data cannot answer are listed in errors.csv.',
    security: [{ bearer: [] }],
    parameters: [
      { name: 'site_id', in: 'query', required: true, schema: { type: 'string' } },
      { name: 'date_range', in: 'query', required: false, schema: { type: 'string' }, description: 'a preset (default 30d) or YYYY-MM-DD,YYYY-MM-DD' },
      { name: 'f', in: 'query', required: false, schema: { type: 'array', items: { type: 'string' } }, description: 'filters, dimension:value' },
      { name: 'compare', in: 'query', required: false, schema: { type: 'string', enum: ['previous_period', 'year_over_year'] } },
    ],
    responses: {
      200: { description: 'application/zip' },
      400: error('Invalid parameters'),
      ...readErrors,
    },
  }),
  admin: (summary: string, description = '') =>
    describeRoute({
      tags: ['admin'],
      summary,
      ...(description ? { description } : {}),
      security: [{ bearer: [] }],
      responses: {
        200: { description: 'JSON, as the operator command prints it' },
        201: { description: 'Created' },
        400: error('Invalid input; `details` names each field'),
        401: error('No or wrong token'),
        403: error('Not an admin token, or one of another site'),
        404: error('No such site or token'),
        409: error('site_exists: the site is registered already; or too_many_tokens: 100 not revoked for the site (or all-sites tokens)'),
      },
    }),
  healthz: describeRoute({ tags: ['health'], summary: 'Answers while the process lives', responses: { 200: { description: 'Alive' } } }),
  readyz: describeRoute({
    tags: ['health'],
    summary: 'Checks Redis and Postgres; 503 while shutting down',
    responses: { 200: { description: 'Ready' }, 503: { description: 'Not ready, or stopping' } },
  }),
}

/** GET /openapi.json, generated from the routes' descriptions, and GET /docs, which renders it. */
export function documentation(app: Hono) {
  app.get(
    '/openapi.json',
    openAPIRouteHandler(app, {
      documentation: {
        info: { title: 'Sluice', version: '1', description: 'Event ingestion and web analytics. Errors are `{"error", "code", "details"?}`.' },
        components: {
          securitySchemes: {
            bearer: { type: 'http', scheme: 'bearer', description: 'STATS_TOKEN, ADMIN_TOKEN, or an API token or shared link from the registry' },
          },
        },
      },
      exclude: ['/openapi.json', '/docs', '/metrics', '/dashboard', '/t.js', '/assets/*'],
    }),
  )
  app.get('/docs', (c) => c.html(DOCS_PAGE))
}

const DOCS_PAGE = `<!doctype html><meta charset="utf-8"><title>Sluice API</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}code,pre{font:13px ui-monospace,monospace;background:#f5f5f5}
pre{padding:.6rem;overflow:auto}.m{font-weight:700;text-transform:uppercase;margin-right:.5rem}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}</style>
<h1>Sluice API</h1><p>Rendered from <a href="/openapi.json">/openapi.json</a>.</p><div id="api">Loading…</div>
<script>
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])
fetch('/openapi.json').then((r) => r.json()).then((doc) => {
  let html = '<p>' + esc(doc.info.description) + '</p>'
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) {
    html += '<h2><span class="m">' + esc(method) + '</span><code>' + esc(path) + '</code></h2><p>' + esc(op.summary) + '</p>'
    if (op.description) html += '<p>' + esc(op.description) + '</p>'
    if (op.security) html += '<p>Needs <code>Authorization: Bearer &lt;token&gt;</code>' + (op.tags?.includes('admin') ? ' of an admin.' : ' that reads the site (none for a public site).') + '</p>'
    if (op.parameters?.length) html += '<table><tr><th>parameter</th><th>required</th><th>schema</th></tr>' + op.parameters.map((p) => '<tr><td><code>' + esc(p.name) + '</code></td><td>' + (p.required ? 'yes' : 'no') + '</td><td><code>' + esc(JSON.stringify(p.schema)) + '</code></td></tr>').join('') + '</table>'
    const body = op.requestBody?.content?.['application/json']?.schema
    if (body) html += '<p>Body:</p><pre>' + esc(JSON.stringify(body, null, 2)) + '</pre>'
    html += '<table><tr><th>status</th><th>meaning</th></tr>' + Object.entries(op.responses ?? {}).map(([s, r]) => '<tr><td>' + esc(s) + '</td><td>' + esc(r.description) + '</td></tr>').join('') + '</table>'
  }
  document.getElementById('api').innerHTML = html
})
</script>`
