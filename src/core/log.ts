/**
 * Logging: one line per event on stderr, filtered by `--log_level`, in one of two forms
 * (`--log_format`):
 *
 * - `text`: `2026-12-01T10:00:00.000Z WARN shard-0 node1: message`, for people;
 * - `json`: one JSON object a line, for log shippers:
 *   `{"time":"...","level":"warn","component":"shard-0","node":"node1","message":"...",...}`,
 *   with the event's fields (which the message also says in words) beside the standard keys,
 *   which a field cannot overwrite.
 *
 * @module
 */

/** Log levels, least severe first. */
export type Level = "debug" | "info" | "warn" | "error";

/** The forms a log line can take. */
export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = typeof LOG_FORMATS[number];

/** What an event's message says, as values for machines (`redis_url`, `port` ...). */
export type Fields = Record<string, string | number | boolean>;

/** Writes one log line. */
export type Log = (level: Level, message: string, fields?: Fields) => void;

/** Where a log's lines come from, and how they are written. */
export interface LogOptions {
  /** The thread: `main` or `shard-k`. */
  component: string;
  /** The node's id (`--node_id`). */
  node: string;
  /** Lines below this level are dropped. */
  threshold: Level;
  format: LogFormat;
  /** Where a line goes; stderr by default. */
  write?: (line: string) => void;
}

const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A logger for one thread. */
export function createLog(options: LogOptions): Log {
  const { component, node, threshold, format, write = console.error } = options;
  return (level, message, fields) => {
    if (RANK[level] < RANK[threshold]) return;
    const time = new Date().toISOString();
    if (format === "json") {
      write(JSON.stringify({ ...fields, time, level, component, node, message }));
      return;
    }
    write(`${time} ${level.toUpperCase()} ${component} ${node}: ${message}`);
  };
}
