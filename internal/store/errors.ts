/**
 * SQLSTATE classes that mean "this data can never be stored or counted", as opposed to
 * "try again later": 22 data exception, 23 integrity constraint violation, and 54 program
 * limit exceeded (e.g. a value too large for an index row).
 */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && /^(22|23|54)/.test(code)
}
