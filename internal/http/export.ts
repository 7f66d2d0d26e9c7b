import { zipSync } from 'fflate'
import { Hono } from 'hono'
import { cell, toCsv } from '../query/csv.ts'
import { DATE_RANGES } from '../query/query.ts'
import { PROPS_PREFIX, VISIT_PREFIX, visitRollupDim } from '../store/dimensions.ts'
import { ApiError } from './errors.ts'
import { routeDocs } from './openapi.ts'
import type { Answer } from './query.ts'

/**
 * The files of a dashboard export: the time series, then one breakdown per panel and tab.
 * How visitors came is counted by visit, as the dashboard does (visit:source): each visit
 * whole under its first event's source. Where visit figures cannot answer (a filter on
 * another dimension, a range not in whole UTC days or from before the upgrade that kept
 * them) and in realtime, those files count per page view (source), as their header says.
 */
const BREAKDOWNS: [file: string, dimension: string][] = [
  ['sources', 'visit:source'],
  ['channels', 'visit:channel'],
  ['referrers', 'visit:referrer'],
  ['utm_sources', 'visit:utm_source'],
  ['utm_mediums', 'visit:utm_medium'],
  ['utm_campaigns', 'visit:utm_campaign'],
  ['utm_contents', 'visit:utm_content'],
  ['utm_terms', 'visit:utm_term'],
  ['pages', 'path'],
  ['countries', 'country'],
  ['devices', 'device'],
  ['browsers', 'browser'],
  ['operating_systems', 'os'],
  ['event_types', 'event_type'],
]
const METRICS = ['visitors', 'pageviews', 'events']

/** The dashboard's chart granularity for a range: hours for a day, days up to 93, months beyond. */
function granularity(range: string | [string, string]): string {
  if (Array.isArray(range)) {
    const days = (Date.parse(range[1]) - Date.parse(range[0])) / 86_400_000 + 1
    return days <= 1 ? 'hour' : days <= 93 ? 'day' : 'month'
  }
  return range === 'day' ? 'hour' : ['7d', '30d', 'month'].includes(range) ? 'day' : 'month'
}

type Filter = [op: string, dimension: string, values: string[]]
type Body = { dimensions: string[]; filters?: Filter[]; order_by?: string[][]; limit?: number }
/** The refusals of visit figures that the same query per page view can answer. */
const PER_EVENT_CODES: string[] = ['visits_one_dimension', 'visits_whole_days', 'visits_not_recorded']

/**
 * GET /v1/export?site_id=&date_range=30d (or YYYY-MM-DD,YYYY-MM-DD)&f=dimension:value...
 * [&compare=previous_period|year_over_year]: the whole dashboard as a zip of CSV files,
 * each the CSV of one /v1/query (visitors.csv over time, then sources.csv, pages.csv,
 * countries.csv, ...). A file the kept data cannot answer for the range is left out and
 * listed in errors.csv with its code. Reads as /v1/query does: the same token rules.
 */
export function exportRoutes(answer: Answer) {
  return new Hono().get('/v1/export', routeDocs.export, async (c) => {
    const q = c.req.query()
    const problems: { field: string; message: string }[] = []
    const raw = q.date_range ?? '30d'
    const dateRange = raw.includes(',') ? (raw.split(',') as [string, string]) : raw
    if (!Array.isArray(dateRange) && !(DATE_RANGES as readonly string[]).includes(dateRange)) {
      problems.push({ field: 'date_range', message: `date_range must be one of ${DATE_RANGES.join(', ')}, or YYYY-MM-DD,YYYY-MM-DD` })
    }
    const filters = c.req.queries('f')?.map((f): Filter => {
      // A prefixed dimension's own colon is not the one before the value.
      const prefix = [PROPS_PREFIX, VISIT_PREFIX].find((p) => f.startsWith(p))
      const at = f.indexOf(':', prefix?.length ?? 0)
      if (at < 0) problems.push({ field: 'f', message: `a filter is dimension:value, not ${JSON.stringify(f)}` })
      return ['is', f.slice(0, at), [f.slice(at + 1)]]
    })
    if (problems.length) throw new ApiError(400, 'invalid_query', 'export query is invalid', { details: problems })
    const base = { site_id: q.site_id, date_range: dateRange, filters: filters ?? [] }
    const comparison = q.compare ? { include: { comparisons: { mode: q.compare } } } : {}
    const files: Record<string, Uint8Array> = {}
    const csv = (text: string) => new TextEncoder().encode(text)
    // Any answer can be 400, 401 or 403 for the whole export (the first one is); a 422 leaves its file out, listed in errors.csv.
    const errors: string[] = []
    // Where visit figures cannot answer, a file counts per page view, as the dashboard does:
    // visit:source as source, in its dimension and in the filters.
    const byVisit = (body: Body) => [...body.dimensions, ...(body.filters ?? base.filters).map(([, d]) => d)].some((d) => d !== visitRollupDim(d))
    const perEvent = (body: Body): Body => ({
      ...body,
      dimensions: body.dimensions.map(visitRollupDim),
      filters: base.filters.map(([op, d, values]) => [op, visitRollupDim(d), values]),
    })
    // Each retry below changes what made it (the hour, visit: or the comparison), so each runs once.
    const attempt = async (file: string, body: Body, compare = true): Promise<void> => {
      // Realtime is counted from raw events, per page view: visits are counted as the rollup merges them.
      if (dateRange === 'realtime' && byVisit(body)) return attempt(file, perEvent(body), compare)
      try {
        const { query, result } = await answer(c, { ...base, ...(compare ? comparison : {}), metrics: METRICS, ...body })
        files[file] = csv(toCsv(query, result))
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 422) throw err
        // A day past the hourly detail kept is one row of its day instead of 24 hours.
        if (err.code === 'hourly_detail_expired' && body.dimensions[0] === 'time:hour') return attempt(file, { ...body, dimensions: ['time:day'] }, compare)
        // The period before can be from before the upgrade that kept visitors by source: this
        // period by visit, as the dashboard's panel shows it, without the comparison.
        if (err.code === 'visits_not_recorded' && compare && 'include' in comparison && byVisit(body)) return attempt(file, body, false)
        if (PER_EVENT_CODES.includes(err.code) && byVisit(body)) return attempt(file, perEvent(body))
        errors.push([file, err.code, err.message].map(cell).join(','))
      }
    }
    // Realtime (the last five minutes) has no time buckets: its visitors.csv is one row of totals.
    const time = dateRange === 'realtime' ? null : granularity(dateRange)
    await attempt('visitors.csv', { dimensions: time ? [`time:${time}`] : [] })
    for (const [file, dimension] of BREAKDOWNS) {
      await attempt(`${file}.csv`, { dimensions: [dimension], order_by: [['visitors', 'desc']], limit: 10_000 })
    }
    if (errors.length) files['errors.csv'] = csv(`file,code,message\r\n${errors.join('\r\n')}\r\n`)
    const name = `${String(q.site_id).replace(/[^A-Za-z0-9._-]/g, '_')}-${Array.isArray(dateRange) ? dateRange.join('_') : dateRange}`
    return c.body(zipSync(files, { level: 6 }), 200, {
      'Content-Type': 'application/zip',
      'Content-Disposition': `attachment; filename="${name}.zip"`,
    })
  })
}
