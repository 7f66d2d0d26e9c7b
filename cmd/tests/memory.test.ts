import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import type { Socket } from 'bun'
import { loadConfig } from '../../internal/config/config.ts'
import { eventually, pipeline } from '../../internal/testkit/testkit.ts'

// The API's memory is bounded by INGEST_IN_FLIGHT_BYTES however many slow, large uploads
// are open at once, and ordinary events keep being answered meanwhile.

const MB = 1024 * 1024
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024

describe('memory under slow uploads', () => {
  const p = pipeline({ STATS_PUBLIC: 'true' })

  test('300 connections holding 1 MB bodies keep the API within its bound, and other clients are still answered', async () => {
    const pid = p.api.proc.pid
    const port = Number(new URL(p.base).port)
    const post = (i: number) =>
      fetch(`${p.base}/event`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ site_id: 'ordinary', event_type: 'pageview', path: `/${i}`, timestamp: '2025-11-14T10:00:00Z' }),
      })
    for (let i = 0; i < 20; i++) expect((await post(i)).status).toBe(202) // warm
    const before = rssMb(pid)
    // The bound README.md documents (INGEST_IN_FLIGHT_BYTES): bodies held are at most
    // max(M, L + M/4), and while they are held the RSS stays within idle plus twice that.
    const { inFlightBytes: m, bodyLimitBytes: l } = loadConfig(p.env).ingest
    const boundMb = before + (2 * Math.max(m, l + m / 4)) / MB

    const declared = 1_000_013
    const body = Buffer.alloc(declared - 1, 'a')
    const answers: string[] = []
    const sockets: Socket[] = []
    await Promise.all(
      Array.from({ length: 300 }, () =>
        Bun.connect({
          hostname: '127.0.0.1',
          port,
          socket: {
            open(sock) {
              sockets.push(sock)
              sock.write(`POST /event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n`)
              sock.write(body)
            },
            data: (_sock, chunk) => void answers.push(chunk.toString().split('\r\n')[0]!),
            error() {},
          },
        }),
      ),
    )
    await Bun.sleep(1500) // let every connection deliver what it sends
    const held = rssMb(pid)

    // Ordinary events from another client are answered while the uploads hang.
    const during = await Promise.all(Array.from({ length: 50 }, (_, i) => post(100 + i)))
    expect(during.map((r) => r.status)).toEqual(Array(50).fill(202))
    const peak = Math.max(held, rssMb(pid))
    for (const s of sockets) s.end()

    // Most uploads were refused at once with a 503; a few hold the budget until their deadline.
    expect(answers.filter((a) => a.startsWith('HTTP/1.1 503')).length).toBeGreaterThan(250)
    console.log(
      `API RSS: ${before.toFixed(0)} MB before, ${peak.toFixed(0)} MB with 300 slow 1 MB uploads open (bound ${boundMb.toFixed(0)} MB); ${answers.length} answered at once`,
    )
    expect(peak).toBeLessThan(boundMb)
    const stored = await eventually(async () => ((await p.db.sql`select count(*)::int as n from events where site_id = 'ordinary'`)[0]!.n as number) === 70)
    expect(stored).toBe(true)
  })
})
