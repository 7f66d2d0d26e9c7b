import { describe, expect, test } from 'bun:test'
import { envFor, eventually, freePort, isolated, spawnBinary, waitForReady, type Binary, metricValue } from '../../internal/testkit/testkit.ts'

// Several workers and crons on one host, with default settings: a busy metrics port moves
// the next one along, and nothing stops a worker from draining.

const env = isolated()

/** The ports a binary logged for its metrics listener (JSON log lines). */
const metricsPort = (b: Binary) =>
  b
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; port?: number })
    .find((l) => l.port && l.msg.includes('metrics'))?.port

const scrape = async (port: number, metric: string) => metricValue(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), metric)

describe('several binaries on one host', () => {
  test('two workers and two crons with default settings all stay up, both workers drain, and every accepted event is stored', async () => {
    const port = await freePort()
    const settings = envFor(env.db, env.r, { PORT: String(port), LOG_LEVEL: 'info', WORKER_BLOCK_MS: '100' })
    // The defaults, as a new user has them.
    delete settings.WORKER_METRICS_PORT
    delete settings.CRON_METRICS_PORT
    const api = spawnBinary('api', { ...settings, STATS_PUBLIC: 'true' })
    const workers = [spawnBinary('worker', settings), spawnBinary('worker', settings)]
    const crons = [spawnBinary('cron', settings), spawnBinary('cron', settings)]
    const all = [api, ...workers, ...crons]
    try {
      await waitForReady(`http://127.0.0.1:${port}/readyz`, api)
      const ports = await eventually(async () => {
        const found = [...workers, ...crons].map(metricsPort)
        return found.every(Boolean) ? (found as number[]) : null
      })
      expect(ports).not.toBeNull()
      expect(new Set(ports).size).toBe(4)

      let accepted = 0
      const send = async (client: number) => {
        for (let i = 0; i < 60; i++) {
          const batch = Array.from({ length: 20 }, (_, j) => ({
            site_id: 'many',
            event_type: 'pageview',
            path: `/c${client}/${i}/${j}`,
            timestamp: '2025-11-14T10:00:00Z',
          }))
          const res = await fetch(`http://127.0.0.1:${port}/events`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(batch),
          })
          if (res.status === 202) accepted += batch.length
        }
      }
      await Promise.all(Array.from({ length: 8 }, (_, c) => send(c)))
      expect(accepted).toBe(8 * 60 * 20)
      const stored = await eventually(
        async () => {
          const n = (await env.db.sql`select count(*)::int as n from events`)[0]!.n as number
          return n === accepted ? n : 0
        },
        { timeoutMs: 20_000 },
      )
      expect(stored).toBe(accepted)

      const perWorker = await Promise.all(ports!.slice(0, 2).map((p) => scrape(p, 'sluice_worker_events_stored_total')))
      expect(perWorker[0]! + perWorker[1]!).toBe(accepted)
      expect(perWorker.every((n) => n > 0)).toBe(true)
      for (const b of all) expect(b.proc.exitCode).toBeNull()
    } finally {
      const codes = await Promise.all(all.map((b) => b.stop()))
      expect(codes).toEqual([0, 0, 0, 0, 0])
    }
  })

  test('two APIs on one port both start and stay up (reusePort)', async () => {
    const port = await freePort()
    const settings = envFor(env.db, env.r, { PORT: String(port), STATS_PUBLIC: 'true' })
    const apis = [spawnBinary('api', settings), spawnBinary('api', settings)]
    try {
      await waitForReady(`http://127.0.0.1:${port}/readyz`, apis[0]!)
      await Bun.sleep(500)
      for (const a of apis) expect(a.proc.exitCode).toBeNull()
    } finally {
      expect(await Promise.all(apis.map((a) => a.stop()))).toEqual([0, 0])
    }
  })
})
