/**
 * `walrelay status [URL]`: the senders of a running relay, printed as `psql` prints
 * `SELECT * FROM pg_stat_replication`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULTS } from "../defaults.ts";
import { readHttpTokenFile } from "./access.ts";
import type { RelayStatus, SenderStatus } from "./status.ts";

/** Where `walrelay status` looks without a URL (the default `--http` address). */
export const DEFAULT_STATUS_URL = `http://${DEFAULTS.httpHostname}:${DEFAULTS.httpPort}`;

/** A column of a psql table; `right` for the types psql aligns right (integers, oid, xid). */
export interface TableColumn {
  /** Header. */
  name: string;
  /** Right-aligned, as psql does for numeric types. */
  right?: boolean;
}

/** `pg_stat_replication`'s columns, in order, and how psql aligns them. */
export const PG_STAT_REPLICATION_COLUMNS: readonly TableColumn[] = [
  { name: "pid", right: true },
  { name: "usesysid", right: true },
  { name: "usename" },
  { name: "application_name" },
  { name: "client_addr" },
  { name: "client_hostname" },
  { name: "client_port", right: true },
  { name: "backend_start" },
  { name: "backend_xmin", right: true },
  { name: "state" },
  { name: "sent_lsn" },
  { name: "write_lsn" },
  { name: "flush_lsn" },
  { name: "replay_lsn" },
  { name: "write_lag" },
  { name: "flush_lag" },
  { name: "replay_lag" },
  { name: "sync_priority", right: true },
  { name: "sync_state" },
  { name: "reply_time" },
];

/**
 * Formats rows as psql's default aligned output: centered headers, a `-+-` separator line,
 * `|` between columns, and the `(N rows)` footer. `null` prints as nothing.
 *
 * @example
 * ```ts
 * import { formatTable } from "./status_command.ts";
 * import assert from "node:assert/strict";
 * const out = formatTable([{ name: "pid", right: true }, { name: "state" }], [[7, "streaming"]]);
 * assert.equal(out, " pid |   state   \n-----+-----------\n   7 | streaming\n(1 row)\n");
 * ```
 */
export function formatTable(
  columns: readonly TableColumn[],
  rows: readonly (readonly (string | number | null)[])[],
): string {
  const cells = rows.map((r) => columns.map((_, i) => (r[i] === null ? "" : String(r[i] ?? ""))));
  const widths = columns.map((c, i) => Math.max(width(c.name), ...cells.map((r) => width(r[i]!))));
  const last = columns.length - 1;
  const header = columns.map((c, i) => {
    const pad = widths[i]! - width(c.name);
    const left = Math.floor(pad / 2);
    return " " + " ".repeat(left) + c.name + " ".repeat(pad - left) + (i < last ? " |" : " ");
  });
  const sep = widths.map((w, i) => "-".repeat(w + 2) + (i < last ? "+" : ""));
  // As psql: the last column is not padded after a left-aligned value.
  const body = cells.map((r) =>
    r.map((v, i) => {
      const pad = " ".repeat(widths[i]! - width(v));
      if (columns[i]!.right) return " " + pad + v + (i < last ? " |" : "");
      return " " + v + (i < last ? pad + " |" : "");
    }).join("")
  );
  const n = rows.length;
  return [header.join(""), sep.join(""), ...body, `(${n} ${n === 1 ? "row" : "rows"})`].join("\n") +
    "\n";
}

/** Display width: code points (psql counts East Asian wide characters double; we do not). */
function width(s: string): number {
  return [...s].length;
}

/**
 * A timestamp as PostgreSQL prints `timestamptz` with `TimeZone = UTC`:
 * `2024-05-01 12:34:56.789+00`, trailing zeros of the fraction dropped.
 */
export function formatTimestamptz(iso: string | null): string | null {
  if (iso === null) return null;
  const d = new Date(iso);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const frac = p(d.getUTCMilliseconds(), 3).replace(/0+$/, "");
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}` +
    (frac ? `.${frac}` : "") + "+00";
}

/**
 * A lag in seconds as PostgreSQL prints the `interval` of `write_lag` and friends:
 * `00:00:01.234567` (hours may exceed 24; trailing zeros of the fraction dropped).
 *
 * @example
 * ```ts
 * import { formatInterval } from "./status_command.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatInterval(1.5), "00:00:01.5");
 * assert.equal(formatInterval(90061.000001), "25:01:01.000001");
 * ```
 */
export function formatInterval(seconds: number | null): string | null {
  if (seconds === null) return null;
  let us = Math.round(seconds * 1e6);
  const sign = us < 0 ? "-" : "";
  us = Math.abs(us);
  const h = Math.floor(us / 3_600_000_000);
  const m = Math.floor(us / 60_000_000) % 60;
  const s = Math.floor(us / 1_000_000) % 60;
  const frac = String(us % 1_000_000).padStart(6, "0").replace(/0+$/, "");
  const p = (n: number) => String(n).padStart(2, "0");
  return `${sign}${p(h)}:${p(m)}:${p(s)}${frac ? `.${frac}` : ""}`;
}

/** One sender as a `pg_stat_replication` row of text values. */
export function pgStatReplicationRow(s: SenderStatus): (string | number | null)[] {
  return [
    s.pid,
    s.usesysid,
    s.usename,
    s.application_name,
    s.client_addr,
    s.client_hostname,
    s.client_port,
    formatTimestamptz(s.backend_start),
    s.backend_xmin,
    s.state,
    s.sent_lsn,
    s.write_lsn,
    s.flush_lsn,
    s.replay_lsn,
    formatInterval(s.write_lag),
    formatInterval(s.flush_lag),
    formatInterval(s.replay_lag),
    s.sync_priority,
    s.sync_state,
    formatTimestamptz(s.reply_time),
  ];
}

/** The URL of the `/status` document for a base URL or `HOST:PORT` given on the command line. */
export function statusUrl(arg: string | undefined): URL {
  let text = arg ?? DEFAULT_STATUS_URL;
  if (!/^[a-z]+:\/\//i.test(text)) text = `http://${text}`;
  const url = new URL(text);
  if (!url.pathname.endsWith("/status")) {
    url.pathname = url.pathname.replace(/\/?$/, "/status");
  }
  return url;
}

/** Where {@linkcode runStatusCommand} writes. */
export interface StatusCommandIo {
  /** Standard output. */
  out(text: string): void;
  /** Standard error. */
  err(text: string): void;
}

const defaultIo: StatusCommandIo = {
  out: (t) => Deno.stdout.writeSync(new TextEncoder().encode(t)),
  err: (t) => Deno.stderr.writeSync(new TextEncoder().encode(t)),
};

/** The environment variable holding the bearer token when `--token` is not given. */
export const HTTP_TOKEN_ENV = "WALRELAY_HTTP_TOKEN";

const USAGE = "usage: walrelay status [URL] [--json] [--token FILE]\n";

/**
 * Runs `walrelay status [URL] [--json] [--token FILE]`: fetches `/status` from a relay's `--http`
 * address and prints its senders as psql prints `pg_stat_replication`, followed by an empty line
 * (as psql does). `--json` prints the whole document instead. A relay started with
 * `--http-token` wants its token: `--token` names a file read as the relay reads its own (the
 * same file serves both), else `WALRELAY_HTTP_TOKEN` holds the token itself; it goes out as
 * `Authorization: Bearer`.
 *
 * @returns The exit code: 0, 1 when the relay cannot be reached or refuses, 2 on bad arguments.
 *
 * @example
 * ```ts ignore
 * import { runStatusCommand } from "./status_command.ts";
 * Deno.exit(await runStatusCommand(["http://127.0.0.1:9433", "--token", "/etc/walrelay/http_token"]));
 * ```
 */
export async function runStatusCommand(
  args: string[],
  io: StatusCommandIo = defaultIo,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { json: { type: "boolean" }, token: { type: "string" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    io.err(`walrelay: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) {
    io.err(USAGE);
    return 2;
  }
  let url: URL;
  try {
    url = statusUrl(positionals[0]);
  } catch {
    io.err(`walrelay: invalid URL "${positionals[0]}"\n`);
    return 2;
  }
  let token: string | undefined;
  try {
    token = values.token !== undefined ? await readHttpTokenFile(values.token) : envToken();
  } catch (e) {
    io.err(`walrelay: ${(e as Error).message}\n`);
    return 2;
  }
  const headers: HeadersInit = token === undefined ? {} : { authorization: `Bearer ${token}` };
  let status: RelayStatus;
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
    if (!res.ok) {
      // The relay's one-line reason (a token missing or wrong, an access rule) says what to fix.
      const reason = res.headers.get("content-type")?.startsWith("text/plain")
        ? (await res.text()).split("\n")[0]!.slice(0, 200)
        : (await res.body?.cancel(), "");
      const hint = res.status === 401 && token === undefined
        ? `\nhint: give the relay's --http-token file with --token FILE, or the token in ${HTTP_TOKEN_ENV}`
        : "";
      io.err(
        `walrelay: ${url} answered ${res.status} ${res.statusText}` +
          (reason ? `: ${reason}` : "") + hint + "\n",
      );
      return 1;
    }
    status = await res.json() as RelayStatus;
  } catch (e) {
    io.err(`walrelay: could not get status from ${url}: ${(e as Error).message}\n`);
    return 1;
  }
  if (values.json) {
    io.out(JSON.stringify(status, null, 2) + "\n");
    return 0;
  }
  io.out(formatTable(PG_STAT_REPLICATION_COLUMNS, status.senders.map(pgStatReplicationRow)) + "\n");
  return 0;
}

/** The token in {@linkcode HTTP_TOKEN_ENV}; unset, empty or not readable is none. */
function envToken(): string | undefined {
  try {
    const t = Deno.env.get(HTTP_TOKEN_ENV)?.trim();
    return t === "" ? undefined : t;
  } catch {
    return undefined; // no --allow-env: as if unset
  }
}
