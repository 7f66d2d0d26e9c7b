// Package metrics holds each binary's Prometheus metrics (prom-client) on a registry of
// its own, and serves them: on the API's /metrics, or on a small port for worker and cron.
import type { Logger } from '../log/log.ts'
import { collectDefaultMetrics, Counter, Gauge, Histogram, type Registry as RegistryType, Registry } from 'prom-client'
import type { Depth } from '../queue/queue.ts'

export type Role = 'api' | 'worker' | 'cron'

export function createMetrics(role: Role) {
  const registry = new Registry()
  registry.setDefaultLabels({ service: `sluice-${role}` })
  collectDefaultMetrics({ register: registry })
  const registers = [registry]
  const http = createRequestMetrics(registry)
  return {
    registry,
    role,
    /** Events answered 202, and events not accepted by reason: plain counts, read at scrape time. */
    events: http.events,
    worker: {
      batchSize: new Histogram({
        name: 'sluice_worker_batch_events',
        help: 'Events per insert statement',
        registers,
        buckets: [1, 10, 50, 100, 250, 500, 1000, 2000, 5000],
      }),
      insertDuration: new Histogram({
        name: 'sluice_worker_insert_duration_seconds',
        help: 'Time to insert one batch into Postgres',
        registers,
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      }),
      stored: new Counter({ name: 'sluice_worker_events_stored_total', help: 'Events inserted into Postgres', registers }),
      duplicates: new Counter({ name: 'sluice_worker_duplicates_total', help: 'Events skipped because their event_id was already stored', registers }),
      deadLettered: new Counter({ name: 'sluice_worker_dead_lettered_total', help: 'Entries or events moved to the dead-letter stream', registers }),
    },
    cron: {
      rollupDuration: new Histogram({
        name: 'sluice_rollup_duration_seconds',
        help: 'Duration of rollup runs',
        registers,
        buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
      }),
      rolledUp: new Counter({ name: 'sluice_rollup_events_total', help: 'Raw events counted into the rollups', registers }),
      setAside: new Counter({
        name: 'sluice_rollup_set_aside_events_total',
        help: 'Raw events the rollup could not count, moved to rollup_rejects',
        registers,
      }),
      partitionsDropped: new Counter({ name: 'sluice_retention_partitions_dropped_total', help: 'Raw hourly partitions dropped by retention', registers }),
      rowsDeleted: new Counter({ name: 'sluice_retention_rows_deleted_total', help: 'Rows deleted by retention, by table', labelNames: ['table'], registers }),
    },
    /** Counts one HTTP answer and its latency (no prom-client call on the request path). */
    observeRequest: http.observe,
    /** Text exposition for a scrape. */
    scrape: () => registry.metrics(),
    contentType: registry.contentType,
  }
}

export type Metrics = ReturnType<typeof createMetrics>

/**
 * Queue gauges read when scraped: stream length, pending (delivered, not acknowledged),
 * undelivered, the age of the oldest pending entry (the lag) and dead letters.
 */
export function registerQueueGauges(metrics: Metrics, queue: { depth(): Promise<Depth> }) {
  const registers = [metrics.registry]
  let reading: Promise<Depth | null> | null = null
  // One depth() per scrape, shared by the five gauges.
  const depth = () => {
    reading ??= queue
      .depth()
      .catch(() => null)
      .finally(() => setTimeout(() => (reading = null), 0))
    return reading
  }
  const gauge = (name: string, help: string, pick: (d: Depth) => number | null) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        const d = await depth()
        const v = d ? pick(d) : null
        if (v !== null) this.set(v)
      },
    })
  gauge('sluice_queue_length', 'Entries in the stream: pending plus undelivered', (d) => d.length)
  gauge('sluice_queue_pending', 'Entries delivered to a worker and not yet acknowledged', (d) => d.pending)
  gauge('sluice_queue_undelivered', 'Entries not yet delivered to any worker', (d) => d.undelivered)
  gauge('sluice_queue_oldest_pending_age_seconds', 'Age of the oldest unacknowledged entry: the lag', (d) => d.oldestPendingAgeMs / 1000)
  gauge('sluice_queue_dead_letters', 'Entries in the dead-letter stream', (d) => d.deadLetters)
}

/** A Gauge read when scraped, e.g. from Postgres. */
export function registerCollectedGauge(metrics: Metrics, name: string, help: string, read: () => Promise<number | null>) {
  new Gauge({
    name,
    help,
    registers: [metrics.registry],
    async collect() {
      const v = await read().catch(() => null)
      if (v !== null) this.set(v)
    },
  })
}

export type ServeMetricsOptions = {
  host?: string
  /** Ports to skip when looking for a free one: the other binaries' configured ports. */
  avoid?: readonly number[]
  /** How many ports after `port` to try when it is busy. */
  tries?: number
  log?: Pick<Logger, 'info' | 'warn'>
}

/**
 * Serves GET /metrics on its own port (worker and cron). Several workers or crons on one
 * host must all run, so a busy port is never fatal: the next free one of the following
 * `tries` ports is taken and logged, and if none is free the process runs without a
 * metrics listener, with a warning. Returns the server, or null (also when port is 0).
 */
export function serveMetrics(metrics: Metrics, port: number, { host = '0.0.0.0', avoid = [], tries = 20, log }: ServeMetricsOptions = {}) {
  if (port === 0) return null
  const fetch = async (req: Request) => {
    if (new URL(req.url).pathname !== '/metrics') return new Response('not found; try /metrics\n', { status: 404 })
    return new Response(await metrics.scrape(), { headers: { 'Content-Type': metrics.contentType } })
  }
  for (let p = port; p <= Math.min(65_535, port + tries); p++) {
    if (p !== port && avoid.includes(p)) continue
    try {
      const server = Bun.serve({ port: p, hostname: host, fetch })
      if (p === port) log?.info({ port: p }, 'metrics listening')
      else log?.warn({ port: p, configured_port: port }, 'metrics port was busy; serving metrics on the next free port')
      return server
    } catch (err) {
      if ((err as { code?: string }).code !== 'EADDRINUSE') throw err
    }
  }
  log?.warn({ configured_port: port, tried: tries + 1 }, 'no free metrics port; running without a metrics listener')
  return null
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/**
 * HTTP request counts, latency and event counts, kept as plain numbers on the request path
 * and turned into Prometheus metrics only when scraped. prom-client's labelled counters and
 * histograms cost several microseconds a request, a tenth of the ingest path's CPU.
 */
function createRequestMetrics(registry: RegistryType) {
  type Route = { buckets: Float64Array; sum: number; count: number; statuses: Map<number, number> }
  const routes = new Map<string, Route>()
  const events = { accepted: 0, rejected: { invalid: 0, unavailable: 0 } as Record<string, number>, bots: {} as Record<string, number> }

  function observe(route: string, status: number, seconds: number) {
    let r = routes.get(route)
    if (!r) {
      r = { buckets: new Float64Array(LATENCY_BUCKETS.length), sum: 0, count: 0, statuses: new Map() }
      routes.set(route, r)
    }
    r.statuses.set(status, (r.statuses.get(status) ?? 0) + 1)
    r.sum += seconds
    r.count++
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (seconds <= LATENCY_BUCKETS[i]!) {
        r.buckets[i]!++
        break
      }
    }
  }

  // Custom collectors: prom-client's registry formats whatever get() returns.
  type Sample = { labels: Record<string, string | number>; value: number; metricName?: string }
  const collector = (name: string, help: string, type: 'counter' | 'histogram', values: () => Sample[]) => ({
    name,
    help,
    type,
    aggregator: 'sum' as const,
    get: async () => ({ name, help, type, aggregator: 'sum' as const, values: values() }),
    reset() {},
  })
  registry.registerMetric(
    collector('sluice_http_requests_total', 'HTTP requests by route and status', 'counter', () =>
      [...routes].flatMap(([route, r]) => [...r.statuses].map(([status, value]) => ({ labels: { route, status }, value }))),
    ) as never,
  )
  registry.registerMetric(
    collector('sluice_http_request_duration_seconds', 'HTTP request latency by route', 'histogram', () =>
      [...routes].flatMap(([route, r]): Sample[] => {
        let cumulative = 0
        const buckets = LATENCY_BUCKETS.map((le, i) => {
          cumulative += r.buckets[i]!
          return { labels: { le, route }, value: cumulative, metricName: 'sluice_http_request_duration_seconds_bucket' }
        })
        return [
          ...buckets,
          { labels: { le: '+Inf', route }, value: r.count, metricName: 'sluice_http_request_duration_seconds_bucket' },
          { labels: { route }, value: r.sum, metricName: 'sluice_http_request_duration_seconds_sum' },
          { labels: { route }, value: r.count, metricName: 'sluice_http_request_duration_seconds_count' },
        ]
      }),
    ) as never,
  )
  registry.registerMetric(
    collector('sluice_events_accepted_total', 'Events answered 202 (Redis holds them)', 'counter', () => [{ labels: {}, value: events.accepted }]) as never,
  )
  registry.registerMetric(
    collector('sluice_events_rejected_total', 'Events not accepted, by reason', 'counter', () =>
      Object.entries(events.rejected).map(([reason, value]) => ({ labels: { reason }, value })),
    ) as never,
  )
  registry.registerMetric(
    collector('sluice_events_bots_dropped_total', 'Events from bots (crawlers, headless browsers): answered 202, not stored, by reason', 'counter', () =>
      Object.entries(events.bots).map(([reason, value]) => ({ labels: { reason }, value })),
    ) as never,
  )
  return { observe, events }
}
