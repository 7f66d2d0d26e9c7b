/** Every code a sites or tokens operation fails with; the API and the operator command branch on these. */
export type SitesErrorCode = 'invalid_site' | 'site_exists' | 'site_not_found' | 'invalid_token_request' | 'token_not_found' | 'too_many_tokens'

export type SitesProblem = { field: string; message: string }

/** A registry operation that cannot be done as asked: bad input, or a site or token that does (not) exist. */
export class SitesError extends Error {
  constructor(
    readonly code: SitesErrorCode,
    message: string,
    readonly details?: SitesProblem[],
  ) {
    super(message)
    this.name = 'SitesError'
  }
}
