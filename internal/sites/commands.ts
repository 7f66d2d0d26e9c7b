import type { Sql } from '../clients/clients.ts'
import { createSites } from './sites.ts'
import { SitesError } from './errors.ts'
import { createTokens } from './tokens.ts'

export const SITES_USAGE = `  sites add <site_id> [--domain D]... [--timezone TZ] [--public]
                              register a site (domains: where its browser events may come from)
  sites list | sites show <site_id>
  sites update <site_id> [--domain D]... [--no-domains] [--timezone TZ] [--public | --private]
  sites remove <site_id>      remove a site and DELETE ALL ITS DATA (raw events, rollups, event ids, tokens)
  tokens create --kind read|admin [--site S] [--name N]
                              an API token for one site (or every site); printed once, stored hashed
  tokens list [--site S] | tokens revoke <id>
  links create --site S [--name N]
                              a shared read-only link to one site's dashboard; printed once
  links list [--site S] | links revoke <id>`

export const SITES_COMMANDS = ['sites', 'tokens', 'links'] as const

/** Options of the operator command that these subcommands read (node:util parseArgs's values). */
export type SitesArgs = {
  domain?: string[]
  'no-domains'?: boolean
  timezone?: string
  public?: boolean
  private?: boolean
  site?: string
  kind?: string
  name?: string
}

/** The parseArgs option table for these subcommands. */
export const SITES_OPTIONS = {
  domain: { type: 'string', multiple: true },
  'no-domains': { type: 'boolean' },
  timezone: { type: 'string' },
  public: { type: 'boolean' },
  private: { type: 'boolean' },
  site: { type: 'string' },
  kind: { type: 'string' },
  name: { type: 'string' },
} as const

/**
 * Runs `sites|tokens|links <action> [id]` against the registry and returns what to print as
 * JSON, or null when the arguments are not a known form (the caller prints the usage).
 * Bad input and missing sites throw SitesError with a stable code.
 */
export async function runSitesCommand(sql: Sql, command: string, [action, id, ...extra]: string[], args: SitesArgs): Promise<unknown> {
  const sites = createSites(sql)
  const tokens = createTokens(sql)
  if (extra.length) return null
  // Options that contradict each other are refused, not settled by which one wins.
  const conflict = (a: string, b: string) =>
    new SitesError('invalid_site', `--${a} and --${b} contradict each other: give one`, [{ field: a, message: `not with --${b}` }])
  if (args.public && args.private) throw conflict('public', 'private')
  if (args.domain?.length && args['no-domains']) throw conflict('domain', 'no-domains')
  const siteFields = () => ({
    ...(args.domain || args['no-domains'] ? { domains: args['no-domains'] ? [] : args.domain } : {}),
    ...(args.timezone !== undefined ? { timezone: args.timezone } : {}),
    ...(args.public || args.private ? { public: Boolean(args.public) } : {}),
  })
  const site = args.site ?? null
  switch (`${command} ${action ?? ''}${id === undefined ? '' : ' <id>'}`) {
    case 'sites add <id>':
      return sites.add({ site_id: id, ...siteFields() })
    case 'sites list':
      return sites.list()
    case 'sites show <id>':
      return sites.show(id!)
    case 'sites update <id>':
      return sites.update(id!, siteFields())
    case 'sites remove <id>':
      return sites.remove(id!)
    case 'tokens create':
      return tokens.create({ kind: args.kind, site_id: site, ...(args.name !== undefined ? { name: args.name } : {}) })
    case 'tokens list':
      return tokens.list({ siteId: site, kind: 'token' })
    case 'links create':
      return tokens.create({ kind: 'link', site_id: site, ...(args.name !== undefined ? { name: args.name } : {}) })
    case 'links list':
      return tokens.list({ siteId: site, kind: 'link' })
    // Each revokes its own kind: a link's id (lnk_) given to `tokens revoke` is not found there, and the other way round.
    case 'tokens revoke <id>':
      if (id!.startsWith('lnk_')) throw new SitesError('token_not_found', `${id} is a shared link: revoke it with \`links revoke\``)
      return tokens.revoke(id!)
    case 'links revoke <id>':
      if (id!.startsWith('tok_')) throw new SitesError('token_not_found', `${id} is a token: revoke it with \`tokens revoke\``)
      return tokens.revoke(id!)
    default:
      return null
  }
}
