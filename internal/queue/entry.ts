import type { Event } from '../event/event.ts'

/** A stream entry that decoded into events: field `b` holds a JSON array of up to QUEUE_ENTRY_MAX_EVENTS events. */
export type Entry = { id: string; events: Event[] }
/** A stream entry that did not decode; it can only be dead-lettered. */
export type BadEntry = { id: string; fields: string[]; reason: string }
export type Delivery = { entries: Entry[]; bad: BadEntry[] }
export type RawEntry = [id: string, fields: string[] | null]

/** The fields of one entry. The array is serialised once per entry, not once per event. */
export const encode = (events: Event[]): string[] => ['b', JSON.stringify(events)]

/**
 * Decodes entries: `b` (an array of events) or, from before entries held several events,
 * `e` (one event). Anything else, or anything Postgres would choke on, comes back in `bad`.
 */
export function decode(raw: RawEntry[]): Delivery {
  const entries: Entry[] = []
  const bad: BadEntry[] = []
  for (const [id, fields] of raw) {
    // A pending entry that was deleted from the stream comes back without fields; nothing is left to store.
    if (fields === null) {
      bad.push({ id, fields: [], reason: 'entry was deleted from the stream before it was stored' })
      continue
    }
    try {
      const b = fieldOf(fields, 'b')
      const e = b === undefined ? fieldOf(fields, 'e') : undefined
      if (b === undefined && e === undefined) throw new Error('no "b" or "e" field')
      const parsed: unknown = JSON.parse((b ?? e)!)
      const events = b !== undefined ? parsed : [parsed]
      if (!Array.isArray(events) || events.length === 0) throw new Error('"b" is not a non-empty array')
      entries.push({ id, events: events.map(checkShape) })
    } catch (err) {
      bad.push({ id, fields, reason: `undecodable entry: ${(err as Error).message}` })
    }
  }
  return { entries, bad }
}

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
  return undefined
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * The API validated the event before writing it; this re-checks only what Postgres would
 * choke on, so a hand-written or corrupted entry is set aside instead of retried forever.
 */
function checkShape(e: Event): Event {
  const str = (x: unknown) => typeof x === 'string'
  const optional = (x: unknown) => x === null || str(x)
  if (
    !e || !UUID.test(e.event_id) || !str(e.site_id) || !str(e.event_type) || !optional(e.path) || !optional(e.user_id) ||
    !str(e.timestamp) || Number.isNaN(Date.parse(e.timestamp)) || !Number.isFinite(e.received_at)
  ) {
    throw new Error('not a valid event')
  }
  return e
}
