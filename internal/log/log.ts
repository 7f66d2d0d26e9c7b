// Package log builds the structured JSON logger (pino) that every binary passes down.
import pino from 'pino'

export type Logger = pino.Logger

export type LoggerOptions = { level?: string; name?: string }

export function createLogger({ level = 'info', name }: LoggerOptions = {}): Logger {
  return pino({ level, name, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime })
}

/** A logger that drops everything, for tests. */
export const silentLogger = (): Logger => pino({ level: 'silent' })
