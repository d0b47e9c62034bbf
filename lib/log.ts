/**
 * Log lines for operators: text (PostgreSQL-like `LOG:`/`WARNING:` prefixes) or JSON, on stderr.
 *
 * @module
 */

/** Severity of a log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Structured context of a log line. */
export type LogFields = Record<string, string | number | bigint | boolean | undefined | null>;

/** Where log lines go. */
export interface Logger {
  /** Writes a line at `level`. */
  log(level: LogLevel, message: string, fields?: LogFields): void;
}

const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const TEXT_PREFIX: Record<LogLevel, string> = {
  debug: "DEBUG",
  info: "LOG",
  warn: "WARNING",
  error: "ERROR",
};

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** `text` (default) or `json`. */
  format?: "text" | "json";
  /** The lowest level written. Default `info`. */
  level?: LogLevel;
  /** Receives each formatted line; default stderr. */
  write?: (line: string) => void;
}

/**
 * Creates a logger. Text lines read like PostgreSQL's (`LOG:  …`) followed by `key=value` pairs;
 * JSON lines carry `time`, `level`, `msg` and the fields. LSN-like bigints print as numbers.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * import assert from "node:assert/strict";
 * const lines: string[] = [];
 * const log = createLogger({ format: "json", write: (l) => lines.push(l) });
 * log.log("info", "connection received", { host: "127.0.0.1" });
 * assert.equal(JSON.parse(lines[0]!).host, "127.0.0.1");
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = LEVELS[options.level ?? "info"];
  const encoder = new TextEncoder();
  const write = options.write ?? ((line: string) => {
    try {
      Deno.stderr.writeSync(encoder.encode(line + "\n"));
    } catch { /* stderr gone: nothing to do */ }
  });
  const json = options.format === "json";
  return {
    log(level, message, fields = {}) {
      if (LEVELS[level] < min) return;
      if (json) {
        const out: Record<string, unknown> = {
          time: new Date().toISOString(),
          level,
          msg: message,
        };
        for (const [k, v] of Object.entries(fields)) {
          if (v !== undefined) out[k] = typeof v === "bigint" ? v.toString() : v;
        }
        write(JSON.stringify(out));
      } else {
        const parts = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) =>
          `${k}=${typeof v === "string" && /[\s"]/.test(v) ? JSON.stringify(v) : String(v)}`
        );
        write(
          `${new Date().toISOString()} ${TEXT_PREFIX[level]}:  ${message}` +
            (parts.length ? ` ${parts.join(" ")}` : ""),
        );
      }
    },
  };
}

/**
 * A logger that drops everything, for embedding and tests.
 *
 * @example
 * ```ts
 * import { silentLogger } from "./log.ts";
 * silentLogger.log("info", "nothing happens");
 * ```
 */
export const silentLogger: Logger = { log() {} };
