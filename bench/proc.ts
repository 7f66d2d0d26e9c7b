// CPU time of processes and of the host, read from /proc: steadier than requests per
// second on a shared machine, where another tenant's load changes the rate but not the
// work each request costs.
import { readFileSync } from 'node:fs'

const TICK_US = 1_000_000 / 100 // USER_HZ is 100 on Linux

/** User plus system CPU time of a process so far, in microseconds. */
export function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces) start at the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * TICK_US // utime, stime (fields 14 and 15)
}

/** The host's CPU counters so far, in microseconds: all time, and time stolen by the hypervisor. */
export function hostCpuUs(): { total: number; steal: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  return { total: cpu.reduce((a, b) => a + b, 0) * TICK_US, steal: (cpu[7] ?? 0) * TICK_US }
}

/** Peak resident set size of a process (VmHWM), in MB. */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN
}

/** Starts measuring; the returned function gives each pid's CPU µs since then, and the host's steal share. */
export function cpuSince(pids: Record<string, number>) {
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuUs(pid)]))
  const host = hostCpuUs()
  return () => {
    const now = hostCpuUs()
    const used = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuUs(pid) - start[k]!]))
    return { used, stealShare: now.total > host.total ? (now.steal - host.steal) / (now.total - host.total) : 0 }
  }
}
