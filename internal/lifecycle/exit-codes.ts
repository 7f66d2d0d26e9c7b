/** Every exit code a Sluice binary uses, from sysexits.h where one fits. */
export const EXIT = {
  ok: 0,
  /** A crash, a failed job, or a shutdown step that failed. */
  failed: 1,
  /** Bad command-line arguments (EX_USAGE). */
  usage: 64,
  /** A dependency could not be reached or is not ready, e.g. Redis down or migrations missing (EX_UNAVAILABLE). */
  unavailable: 69,
  /** Bad configuration (EX_CONFIG). */
  config: 78,
  /** Stopped at once by a second stop signal, or a one-shot command by its first (128 + SIGINT). */
  interrupted: 130,
  /** A one-shot command stopped by SIGTERM (128 + SIGTERM). */
  terminated: 143,
} as const
