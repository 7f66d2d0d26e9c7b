import type { Event } from '../event/event.ts'

/**
 * A stream entry that decoded: `count` events as a JSON array (`json`). Fields on the wire:
 * `n` (the count) and `b` (the array), so a worker can size batches and hand the array
 * text to Postgres without parsing it. Entries from before that held one event in `e`.
 */
export type Entry = { id: string; count: number; json: string }
/** A stream entry that did not decode; it can only be dead-lettered. */
export type BadEntry = { id: string; fields: string[]; reason: string }
export type Delivery = { entries: Entry[]; bad: BadEntry[] }
export type RawEntry = [id: string, fields: string[] | null]

/** The fields of one entry. The array is serialised once per entry, not once per event. */
export const encode = (events: Event[]): string[] => ['n', String(events.length), 'b', JSON.stringify(events)]

/** The fields that put an entry back on the stream as it was (for dead letters and replays). */
export const fieldsOf = (entry: Entry): string[] => ['n', String(entry.count), 'b', entry.json]

const MAX_COUNT = 10_000

/** Splits raw entries into well-formed ones (not parsed: see eventsOf) and bad ones. */
export function decode(raw: RawEntry[]): Delivery {
  const entries: Entry[] = []
  const bad: BadEntry[] = []
  for (const [id, fields] of raw) {
    // A pending entry that was deleted from the stream comes back without fields; nothing is left to store.
    if (fields === null) {
      bad.push({ id, fields: [], reason: 'entry was deleted from the stream before it was stored' })
      continue
    }
    const b = fieldOf(fields, 'b')
    const e = b === undefined ? fieldOf(fields, 'e') : undefined
    if (b !== undefined) {
      const count = Number(fieldOf(fields, 'n'))
      if (Number.isInteger(count) && count > 0 && count <= MAX_COUNT && b.startsWith('[') && b.endsWith(']')) entries.push({ id, count, json: b })
      else bad.push({ id, fields, reason: 'undecodable entry: "n" is not a count of 1 to 10000, or "b" is not a JSON array' })
    } else if (e !== undefined && e.startsWith('{')) {
      entries.push({ id, count: 1, json: `[${e}]` })
    } else {
      bad.push({ id, fields, reason: e === undefined ? 'undecodable entry: no "b" or "e" field' : 'undecodable entry: "e" is not a JSON object' })
    }
  }
  return { entries, bad }
}

/**
 * Parses an entry's events, checking what Postgres would choke on. Throws when the entry
 * is not what the API writes (hand-made or corrupted), so it can be set aside.
 */
export function eventsOf(entry: Entry): Event[] {
  let events: unknown
  try {
    events = JSON.parse(entry.json)
  } catch (err) {
    throw new Error(`undecodable entry: ${(err as Error).message}`)
  }
  if (!Array.isArray(events) || events.length !== entry.count) throw new Error(`undecodable entry: "b" does not hold ${entry.count} events`)
  return events.map(checkShape)
}

/** Joins entries' arrays into one JSON array, without parsing them. */
export const joinJson = (entries: Entry[]): string => (entries.length === 1 ? entries[0]!.json : `[${entries.map((e) => e.json.slice(1, -1)).join(',')}]`)

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
  return undefined
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function checkShape(e: Event): Event {
  const str = (x: unknown) => typeof x === 'string'
  const optional = (x: unknown) => x === null || str(x)
  if (
    !e || !UUID.test(e.event_id) || !str(e.site_id) || !str(e.event_type) || !optional(e.path) || !optional(e.user_id) ||
    !str(e.timestamp) || Number.isNaN(Date.parse(e.timestamp)) || !Number.isFinite(e.received_at)
  ) {
    throw new Error('undecodable entry: not a valid event')
  }
  return e
}
