import { isEventShape, type Event } from '../event/event.ts'

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

/** The fields of one event set aside on its own (the one-event form, `e`). */
export const eventFields = (event: Event): string[] => ['e', JSON.stringify(event)]

/** A dead letter's fields (as a record) made back into a stream entry, or null when it holds no event. */
export function replayFields(fields: Record<string, string>): string[] | null {
  if (fields.b !== undefined) return ['n', fields.n ?? '1', 'b', fields.b]
  if (fields.e !== undefined) return ['e', fields.e]
  return null
}

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
    } else if (e?.startsWith('{')) {
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
  for (const e of events) if (!isEventShape(e)) throw new Error('undecodable entry: not a valid event')
  return events
}

/** How many events entries hold, from their counts (nothing is parsed). */
export const countEvents = (entries: Entry[]): number => entries.reduce((n, e) => n + e.count, 0)

/** Joins entries' arrays into one JSON array, without parsing them. */
export const joinJson = (entries: Entry[]): string => (entries.length === 1 ? entries[0]!.json : `[${entries.map((e) => e.json.slice(1, -1)).join(',')}]`)

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
  return undefined
}
