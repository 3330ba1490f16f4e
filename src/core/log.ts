/**
 * Logging: one line per event on stderr, with time, level and where it comes from (`main`
 * or `shard-k`), filtered by `--log_level`.
 *
 * @module
 */

/** Log levels, least severe first. */
export type Level = "debug" | "info" | "warn" | "error";

/** Writes one log line. */
export type Log = (level: Level, message: string) => void;

const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A logger for `source` that drops lines below `threshold`. */
export function createLog(source: string, threshold: Level): Log {
  return (level, message) => {
    if (RANK[level] < RANK[threshold]) return;
    console.error(`${new Date().toISOString()} ${level.toUpperCase()} ${source}: ${message}`);
  };
}
