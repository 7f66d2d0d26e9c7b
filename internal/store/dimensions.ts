import type postgres from 'postgres'
import type { Sql } from '../clients/clients.ts'

/** The dimensions that say how a visitor came. */
export const ACQUISITION = ['source', 'referrer', 'channel', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term'] as const
/**
 * The dimensions kept in the rollups, each a column of events. A value that was absent is
 * kept as '' and shown as NONE. Custom properties are dimensions too, named props:<key>.
 */
export const DIMENSIONS = [...ACQUISITION, 'country', 'browser', 'os', 'device', 'path', 'event_type'] as const
/**
 * The dimensions that describe the visitor and how they came (all but path and event_type):
 * a visit takes them from its first event, and they rarely change within a visitor's day.
 */
export const ATTRIBUTES = DIMENSIONS.filter((d): d is Exclude<(typeof DIMENSIONS)[number], 'path' | 'event_type'> => d !== 'path' && d !== 'event_type')
/**
 * Pairs [a, b] of dimensions also counted together, so that a breakdown by one filtered by
 * the other (top sources of one country, say) is answered from rollups for any range. Each
 * value of b is kept as a dimension of its own, `a&b=<value of b>` ('' where absent), whose
 * values are a's: so ROLLUP_DIM_CAP keeps the top values of a for each value of b, and a
 * small country keeps its sources beside a big one's. docs/query.md gives the storage.
 */
export const PAIRS = [['source', 'country']] as const satisfies readonly (readonly [(typeof ATTRIBUTES)[number], (typeof ATTRIBUTES)[number]])[]
/** The prefix of a pair's dimension names in the rollups: `a&b=`. */
export const pairPrefix = (pair: readonly [string, string]) => `${pair[0]}&${pair[1]}=`
/** The kept pair of exactly these two dimensions, in either order, if there is one. */
export const pairOf = (dims: readonly string[]): (typeof PAIRS)[number] | undefined =>
  dims.length === 2 ? PAIRS.find(([a, b]) => (dims[0] === a && dims[1] === b) || (dims[0] === b && dims[1] === a)) : undefined
/** The prefix of the visit attribute dimensions: `visit:source` is the source of a visit's first event. */
export const VISIT_PREFIX = 'visit:'
/**
 * How the visit came, as a visit takes it from its first event, as Plausible's `visit:source`.
 * `source` counts each event under its own referrer and tags, so the later page views of a
 * visit (the tracker leaves out a referrer from the same site) count as "Direct / None";
 * `visit:source` counts the whole visit, its visitor, page views and events, under the
 * source it came from. Country, browser, OS and device belong to the visitor and rarely
 * change within a visit: they stay counted per event.
 */
export const VISIT_ATTRIBUTES = ACQUISITION.map((a) => `${VISIT_PREFIX}${a}` as const)
/**
 * Dimensions of visits only, counted from the visit rollups: the first and last page viewed,
 * and the visit's attributes.
 */
export const VISIT_ONLY_DIMENSIONS = ['entry_page', 'exit_page', ...VISIT_ATTRIBUTES] as const
export type Dimension = (typeof DIMENSIONS)[number] | (typeof VISIT_ONLY_DIMENSIONS)[number] | `props:${string}`
export const isVisitOnly = (d: string): boolean => (VISIT_ONLY_DIMENSIONS as readonly string[]).includes(d)
/** The dimension a visit-only dimension is kept under in the visit rollups: `visit:source` under `source`. */
export const visitRollupDim = (d: string): string => (d.startsWith(VISIT_PREFIX) ? d.slice(VISIT_PREFIX.length) : d)

/** Dimension rollups are kept per day, month and year; hours come from raw events. */
export const DIM_GRANULARITIES = ['day', 'month', 'year'] as const
export type DimGranularity = (typeof DIM_GRANULARITIES)[number]

/** How an absent value is shown, and named in filters. */
export const NONE = '(none)'
export const PROPS_PREFIX = 'props:'

/** The event types counted as page views: the tracker sends pageview, many servers page_view. */
export const PAGEVIEW_TYPES = ['pageview', 'page_view'] as const

export const isDimension = (s: string): s is Dimension =>
  (DIMENSIONS as readonly string[]).includes(s) || isVisitOnly(s) || (s.startsWith(PROPS_PREFIX) && s.length > PROPS_PREFIX.length)

/**
 * The value of `dim` for a raw event row, as the rollups keep it: '' when absent. A property
 * an event does not have is null: such an event has no value for that dimension at all.
 */
export function dimensionValue(sql: Sql | postgres.TransactionSql, dim: Dimension): postgres.PendingQuery<postgres.Row[]> {
  if (dim.startsWith(PROPS_PREFIX)) return sql`(props ->> ${dim.slice(PROPS_PREFIX.length)})`
  return sql`coalesce(${sql(dim)}, '')`
}
