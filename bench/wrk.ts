// Runs wrk and reads its report.
import { join } from 'node:path'

export type WrkResult = { requests: number; rps: number; p50Ms: number; p99Ms: number; non2xx: number; errors: number }

export async function wrk(
  url: string,
  {
    script,
    seconds,
    connections = 50,
    threads = 2,
    env = {},
  }: { script: string; seconds: number; connections?: number; threads?: number; env?: Record<string, string> },
): Promise<WrkResult> {
  const proc = Bun.spawn(['wrk', `-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', '-s', join(import.meta.dir, 'wrk', script), url], {
    env: { ...process.env, ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const out = await new Response(proc.stdout).text()
  if ((await proc.exited) !== 0) throw new Error(`wrk failed: ${await new Response(proc.stderr).text()}`)
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0)
  const ms = (label: string) => {
    const m = new RegExp(`^\\s*${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out)
    if (!m) return Number.NaN
    return Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[m[2]!]!
  }
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  return {
    requests: num(/(\d+) requests in/),
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: ms('50'),
    p99Ms: ms('99'),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    errors: errs ? errs.slice(1).reduce((s, x) => s + Number(x), 0) : 0,
  }
}
