import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import {
  createTestDatabase,
  createTestRedis,
  envFor,
  eventually,
  freePort,
  spawnBinary,
  waitForReady,
  type Binary,
  type TestDatabase,
  type TestRedis,
  metricValue,
} from '../../internal/testkit/testkit.ts'

let db: TestDatabase
let r: TestRedis
let api: Binary
let base: string
let env: Record<string, string>
const running: Binary[] = []

beforeAll(async () => {
  ;[db, r] = await Promise.all([createTestDatabase(), createTestRedis()])
  const port = await freePort()
  base = `http://127.0.0.1:${port}`
  env = envFor(db, r, { PORT: String(port), STATS_TOKEN: 't', WORKER_BLOCK_MS: '100' })
  api = spawnBinary('api', env)
  running.push(api)
  await waitForReady(`${base}/readyz`, api)
}, 60_000)
afterAll(async () => {
  await Promise.all(running.map((b) => b.stop()))
  await r.cleanup()
  await db.drop()
})

const scrape = async (url: string) => (await fetch(url)).text()

describe('metrics', () => {
  test('the queue gauges rise when load arrives and fall when a worker drains it', async () => {
    const before = await scrape(`${base}/metrics`)
    expect(metricValue(before, 'sluice_queue_length')).toBe(0)
    for (let i = 0; i < 20; i++) {
      const events = Array.from({ length: 10 }, () => ({ site_id: 'm', event_type: 'pageview', timestamp: new Date().toISOString() }))
      expect((await fetch(`${base}/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(events) })).status).toBe(
        202,
      )
    }
    await fetch(`${base}/event`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    const loaded = await scrape(`${base}/metrics`)
    expect(metricValue(loaded, 'sluice_queue_length')).toBeGreaterThan(0)
    expect(metricValue(loaded, 'sluice_queue_undelivered')).toBeGreaterThan(0)
    expect(metricValue(loaded, 'sluice_events_accepted_total')).toBe(200)
    expect(metricValue(loaded, 'sluice_events_rejected_total', 'reason="invalid"')).toBe(1)
    expect(metricValue(loaded, 'sluice_http_requests_total', 'route="/events",status="202"')).toBe(20)
    expect(loaded).toContain('sluice_http_request_duration_seconds_bucket{')
    expect(loaded).toContain('process_resident_memory_bytes')

    const workerPort = await freePort()
    running.push(spawnBinary('worker', { ...env, WORKER_METRICS_PORT: String(workerPort) }))
    const drained = await eventually(async () => metricValue(await scrape(`${base}/metrics`).catch(() => ''), 'sluice_queue_length') === 0, {
      timeoutMs: 15_000,
    })
    expect(drained).toBe(true)
    const worker = await eventually(async () => {
      const text = await scrape(`http://127.0.0.1:${workerPort}/metrics`).catch(() => '')
      return metricValue(text, 'sluice_worker_events_stored_total') === 200 ? text : null
    })
    expect(worker).not.toBeNull()
    expect(metricValue(worker!, 'sluice_queue_pending')).toBe(0)
    expect(worker).toContain('sluice_worker_insert_duration_seconds_bucket{')
    expect(worker).toContain('sluice_worker_batch_events_bucket{')
  }, 60_000)

  test('cron serves rollup and retention metrics on its own port', async () => {
    const port = await freePort()
    running.push(spawnBinary('cron', { ...env, CRON_METRICS_PORT: String(port), CRON_ROLLUP: '* * * * * *' }))
    const text = await eventually(
      async () => {
        const t = await scrape(`http://127.0.0.1:${port}/metrics`).catch(() => '')
        return metricValue(t, 'sluice_rollup_events_total') > 0 ? t : null
      },
      { timeoutMs: 15_000 },
    )
    expect(text).not.toBeNull()
    expect(metricValue(text!, 'sluice_rollup_unrolled_events')).toBeGreaterThanOrEqual(0)
    expect(text).toContain('sluice_rollup_watermark_age_seconds')
    expect(text).toContain('sluice_rollup_duration_seconds_bucket{')
    expect(text).toContain('sluice_retention_partitions_dropped_total')
  }, 30_000)
})
