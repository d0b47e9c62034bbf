/**
 * The settings a replication connection can `SHOW`, with the values PostgreSQL would report for
 * the WAL being served.
 *
 * @module
 */

import type { WalStore } from "../wal/store.ts";
import type { Sender } from "./registry.ts";

/** The version of walrelay, reported beside the PostgreSQL version. */
export const WALRELAY_VERSION = "0.1.0";

/** A setting's display name and value. */
export interface Setting {
  /** The name as PostgreSQL spells it in the column header (`DateStyle`, …). */
  name: string;
  /** The value as `SHOW` prints it. */
  value: string;
}

/**
 * Formats a byte count as PostgreSQL's GUC units do for `wal_segment_size`: `16MB`, `1GB`.
 * pg_receivewal parses exactly this shape.
 *
 * @example
 * ```ts
 * import { formatSegmentSize } from "./settings.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatSegmentSize(16 * 1024 * 1024), "16MB");
 * assert.equal(formatSegmentSize(1024 * 1024 * 1024), "1GB");
 * ```
 */
export function formatSegmentSize(bytes: number): string {
  const gb = 1024 * 1024 * 1024;
  if (bytes % gb === 0) return `${bytes / gb}GB`;
  return `${bytes / (1024 * 1024)}MB`;
}

/**
 * The value of a setting for `SHOW`, or `undefined` for one walrelay does not know (42704).
 * Names are matched case-insensitively, as GUC names are. What exists, and its value, is what a
 * server of the WAL's major reports: `scram_iterations` from 16 on.
 *
 * @example
 * ```ts ignore
 * showSetting("wal_segment_size", store); // { name: "wal_segment_size", value: "16MB" }
 * ```
 */
export function showSetting(
  name: string,
  store: Pick<WalStore, "identity">,
  sender?: Pick<Sender, "applicationName" | "user">,
): Setting | undefined {
  const major = store.identity.serverMajor;
  const values: Record<string, [string, string]> = {
    wal_segment_size: ["wal_segment_size", formatSegmentSize(store.identity.segmentSize)],
    wal_block_size: ["wal_block_size", String(store.identity.blockSize)],
    block_size: ["block_size", "8192"],
    data_directory_mode: ["data_directory_mode", "0700"],
    // The major of the WAL served, so clients of that major accept us; the minor is unknown.
    server_version: ["server_version", `${major}.0 (walrelay ${WALRELAY_VERSION})`],
    server_version_num: ["server_version_num", String(major * 10000)],
    integer_datetimes: ["integer_datetimes", "on"],
    server_encoding: ["server_encoding", "SQL_ASCII"],
    client_encoding: ["client_encoding", "SQL_ASCII"],
    datestyle: ["DateStyle", "ISO, MDY"],
    intervalstyle: ["IntervalStyle", "postgres"],
    timezone: ["TimeZone", "Etc/UTC"],
    standard_conforming_strings: ["standard_conforming_strings", "on"],
    default_transaction_read_only: ["default_transaction_read_only", "off"],
    transaction_read_only: ["transaction_read_only", "off"],
    in_hot_standby: ["in_hot_standby", "off"],
    is_superuser: ["is_superuser", "off"],
    search_path: ["search_path", '"$user", public'],
    ...(major >= 16 ? { scram_iterations: ["scram_iterations", "4096"] } : {}),
    application_name: ["application_name", sender?.applicationName ?? ""],
    session_authorization: ["session_authorization", sender?.user ?? ""],
    wal_level: ["wal_level", "replica"],
    full_page_writes: ["full_page_writes", "on"],
  };
  const hit = values[name.toLowerCase()];
  return hit ? { name: hit[0], value: hit[1] } : undefined;
}

/**
 * The `GUC_REPORT` parameters of 15, in the order `BeginReportingGUCOptions` walks them: the
 * sorted GUC array, so alphabetical without regard to case.
 */
const REPORTED_15: readonly string[] = [
  "application_name",
  "client_encoding",
  "DateStyle",
  "default_transaction_read_only",
  "in_hot_standby",
  "integer_datetimes",
  "IntervalStyle",
  "is_superuser",
  "server_encoding",
  "server_version",
  "session_authorization",
  "standard_conforming_strings",
  "TimeZone",
];

/**
 * From 16 the GUCs live in a hash table of 512 buckets keyed by `guc_name_hash`, and are reported
 * in bucket order; 16 adds `scram_iterations`. No two reported names share a bucket, so 16 and
 * 17 send the same order.
 */
const REPORTED_16: readonly string[] = [
  "in_hot_standby",
  "integer_datetimes",
  "TimeZone",
  "IntervalStyle",
  "is_superuser",
  "application_name",
  "default_transaction_read_only",
  "scram_iterations",
  "DateStyle",
  "standard_conforming_strings",
  "session_authorization",
  "client_encoding",
  "server_version",
  "server_encoding",
];

/** 18 reports `search_path` too; its bucket falls between IntervalStyle and is_superuser. */
const REPORTED_18: readonly string[] = [
  ...REPORTED_16.slice(0, 4),
  "search_path",
  ...REPORTED_16.slice(4),
];

/**
 * The names of the parameters a server of `major` reports after authentication, in the order it
 * sends them.
 *
 * @example
 * ```ts
 * import { reportedParameters } from "./settings.ts";
 * import assert from "node:assert/strict";
 * assert.equal(reportedParameters(15).length, 13);
 * assert.equal(reportedParameters(17)[7], "scram_iterations");
 * assert.equal(reportedParameters(18).length, 15);
 * ```
 */
export function reportedParameters(major: number): readonly string[] {
  if (major <= 15) return REPORTED_15;
  if (major <= 17) return REPORTED_16;
  return REPORTED_18;
}

/**
 * The ParameterStatus values a replication connection reports after authentication: the set and
 * the order of a server of the WAL's major.
 *
 * @example
 * ```ts
 * import { startupParameters } from "./settings.ts";
 * import { WalStore } from "../wal/store.ts";
 * import assert from "node:assert/strict";
 * const store = await WalStore.open("testdata/wal");
 * const sent = new Map(startupParameters(store, { applicationName: "walreceiver", user: "repl" }));
 * assert.equal(sent.get("server_version"), "15.0 (walrelay 0.1.0)");
 * assert.equal(sent.get("session_authorization"), "repl");
 * ```
 */
export function startupParameters(
  store: Pick<WalStore, "identity">,
  sender: Pick<Sender, "applicationName" | "user">,
): [string, string][] {
  return reportedParameters(store.identity.serverMajor).map((name) => {
    const setting = showSetting(name, store, sender)!;
    return [setting.name, setting.value];
  });
}
