import { createHash, randomBytes } from 'node:crypto'
import * as v from 'valibot'
import type { Sql } from '../clients/clients.ts'
import { textProblem } from '../event/event.ts'
import { SitesError } from './errors.ts'
import { SiteIdSchema } from './sites.ts'

/** read: stats; admin: stats and managing sites and tokens; link: a shared dashboard link (read, one site). */
export const TOKEN_KINDS = ['read', 'admin', 'link'] as const
export type TokenKind = (typeof TOKEN_KINDS)[number]

/** A token as listed: never its secret, which exists only in the answer to its creation. */
export type TokenInfo = { id: string; kind: TokenKind; site_id: string | null; name: string; created_at: string; revoked_at: string | null }
export type CreatedToken = TokenInfo & { token: string; path?: string }

/** A token's or link's id, as create makes them: anything else is no token's. */
const TOKEN_ID = /^(tok|lnk)_[0-9a-f]{12}$/
/**
 * Most tokens and links not revoked of one site, and most all-sites tokens (of no site):
 * every API process holds them in memory (the registry), so each site adds at most this many.
 */
export const MAX_ACTIVE_TOKENS = 100
/**
 * Most tokens and links of one site (or all-sites tokens) kept at once, revoked ones included
 * (they are listed for REVOKED_TOKEN_DAYS, then deleted): past it, a creation deletes the
 * oldest revoked ones first. Without it, creating and revoking in a loop would grow the
 * registry's table, and every listing, without bound.
 */
export const MAX_KEPT_TOKENS = 1000
/** Advisory lock space (a 32-bit key; the site is the second) for counting a site's tokens while one is created. */
const TOKEN_COUNT_LOCK = 728_341_002
const notFound = (id: string) => new SitesError('token_not_found', `no token or link has the id ${JSON.stringify(id)}`)

/** The SHA-256 of a secret: what is stored and what the registry looks presented tokens up by. */
export const hashToken = (secret: string): Buffer => createHash('sha256').update(secret).digest()

/** Where a shared link opens the dashboard; the secret rides in the fragment, which browsers never send to a server. */
export const linkPath = (siteId: string, secret: string) => `/share/${encodeURIComponent(siteId)}#link=${secret}`

const NewTokenSchema = v.pipe(
  v.strictObject(
    {
      kind: v.picklist(TOKEN_KINDS, `kind must be one of ${TOKEN_KINDS.join(', ')}`),
      site_id: v.optional(v.nullable(SiteIdSchema), null),
      name: v.optional(
        v.pipe(
          v.string('name must be a string'),
          v.maxLength(200, 'name must be at most 200 characters'),
          v.check((s) => textProblem('name', s) === null, 'name must not contain NUL characters or lone surrogates'),
        ),
        '',
      ),
    },
    (i) => `unknown field ${i.received} (fields: kind, site_id, name)`,
  ),
  v.forward(
    v.check((t) => t.kind !== 'link' || t.site_id !== null, 'a shared link is for one site: give site_id'),
    ['site_id'],
  ),
)
export type NewToken = v.InferInput<typeof NewTokenSchema>

export type Tokens = ReturnType<typeof createTokens>

/** API tokens and shared links: created with a random secret shown once, stored as its hash, revoked by id. */
export function createTokens(sql: Sql) {
  const info = (r: Record<string, unknown>): TokenInfo => ({
    id: r.id as string,
    kind: r.kind as TokenKind,
    site_id: (r.site_id as string | null) ?? null,
    name: r.name as string,
    created_at: (r.created_at as Date).toISOString(),
    revoked_at: r.revoked_at ? (r.revoked_at as Date).toISOString() : null,
  })

  async function create(input: unknown): Promise<CreatedToken> {
    const r = v.safeParse(NewTokenSchema, input)
    if (!r.success) {
      throw new SitesError(
        'invalid_token_request',
        'the token request is invalid',
        r.issues.map((i) => ({ field: v.getDotPath(i) ?? 'token', message: i.message })),
      )
    }
    const t = r.output
    const notFound = () => new SitesError('site_not_found', `site ${JSON.stringify(t.site_id)} is not registered`)
    const secret = `sl_${randomBytes(24).toString('base64url')}`
    const id = `${t.kind === 'link' ? 'lnk' : 'tok'}_${randomBytes(6).toString('hex')}`
    const row = await sql.begin(async (tx) => {
      // The site, locked against its removal until the token is in (a removal under way waits
      // to take it, then finds it gone): never the foreign key's own error.
      if (t.site_id !== null) {
        const [site] = await tx`select 1 from sites where site_id = ${t.site_id} for key share`
        if (!site) throw notFound()
      }
      // Creations for one site take turns, so that two at once cannot both pass the count.
      await tx`select pg_advisory_xact_lock(${TOKEN_COUNT_LOCK}, hashtext(coalesce(${t.site_id}::text, '')))`
      // `= site` or `is null`, not `is not distinct from`, which no index serves.
      const scope = t.site_id === null ? tx`site_id is null` : tx`site_id = ${t.site_id}`
      const [{ active, kept }] = (await tx`
        select count(*) filter (where revoked_at is null)::int as active, count(*)::int as kept
        from access_tokens where ${scope}`) as unknown as [{ active: number; kept: number }]
      if (active >= MAX_ACTIVE_TOKENS) {
        const whose = t.site_id === null ? 'all sites' : `site ${JSON.stringify(t.site_id)}`
        throw new SitesError(
          'too_many_tokens',
          `${whose} already has ${active} tokens and links that are not revoked (at most ${MAX_ACTIVE_TOKENS}): revoke some first`,
        )
      }
      // Past MAX_KEPT_TOKENS the oldest revoked ones make room (at most MAX_ACTIVE_TOKENS are not revoked, so there are some).
      if (kept >= MAX_KEPT_TOKENS) {
        await tx`
          delete from access_tokens where id in (
            select id from access_tokens where ${scope} and revoked_at is not null order by revoked_at, id limit ${kept - MAX_KEPT_TOKENS + 1})`
      }
      const [inserted] = await tx`
        insert into access_tokens (id, hash, kind, site_id, name) values (${id}, ${hashToken(secret)}, ${t.kind}, ${t.site_id}, ${t.name})
        returning *`
      return inserted!
    })
    const created: CreatedToken = { ...info(row), token: secret }
    if (t.kind === 'link') created.path = linkPath(t.site_id!, secret)
    return created
  }

  /** Tokens and links, newest first; of one site (plus all-sites tokens when `withGlobal`), or all. */
  async function list({ siteId = null, kind = null }: { siteId?: string | null; kind?: TokenKind | 'token' | null } = {}): Promise<TokenInfo[]> {
    const rows = await sql`
      select * from access_tokens
      where (${siteId}::text is null or site_id = ${siteId})
        and (${kind}::text is null or kind = ${kind} or (${kind} = 'token' and kind <> 'link'))
      order by created_at desc, id`
    return rows.map(info)
  }

  async function show(id: string): Promise<TokenInfo> {
    if (!TOKEN_ID.test(id)) throw notFound(id)
    const [row] = await sql`select * from access_tokens where id = ${id}`
    if (!row) throw notFound(id)
    return info(row)
  }

  /** Revokes a token or link; every API process stops accepting it within REGISTRY_REFRESH_MS. Revoking twice changes nothing. */
  async function revoke(id: string): Promise<TokenInfo> {
    if (!TOKEN_ID.test(id)) throw notFound(id)
    const [row] = await sql`update access_tokens set revoked_at = coalesce(revoked_at, now()) where id = ${id} returning *`
    if (!row) throw notFound(id)
    return info(row)
  }

  return { create, list, show, revoke }
}
