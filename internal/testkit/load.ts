/**
 * A steady load of single events against POST /event from `clients` concurrent clients.
 * Every event carries its own event_id, and every 202 is recorded, so a test can check that
 * Postgres ends up holding exactly the acknowledged events.
 */
export function startLoad(baseUrl: () => string, { clients = 8, pauseMs = 2, site = 'fault-site' } = {}) {
  const accepted = new Map<string, number>() // event_id -> when the 202 arrived
  const failed = new Map<string, number | string>() // event_id -> the status (or 'network') it got instead
  const statuses = new Map<number | string, number>()
  let stopping = false
  let sent = 0

  async function client() {
    while (!stopping) {
      const id = crypto.randomUUID()
      const body = JSON.stringify({
        event_id: id,
        site_id: site,
        event_type: 'pageview',
        path: `/p/${sent % 50}`,
        user_id: `u${sent % 1000}`,
        timestamp: new Date().toISOString(),
      })
      sent++
      try {
        const res = await fetch(`${baseUrl()}/event`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
        await res.arrayBuffer()
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        if (res.status === 202) accepted.set(id, Date.now())
        else failed.set(id, res.status)
      } catch {
        failed.set(id, 'network')
        statuses.set('network', (statuses.get('network') ?? 0) + 1)
        await Bun.sleep(20)
      }
      if (pauseMs) await Bun.sleep(pauseMs)
    }
  }
  const running = Promise.all(Array.from({ length: clients }, client))
  return {
    accepted,
    failed,
    statuses,
    sent: () => sent,
    async stop() {
      stopping = true
      await running
    },
  }
}

export type Load = ReturnType<typeof startLoad>
