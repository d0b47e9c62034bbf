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
 * Names are matched case-insensitively, as GUC names are.
 *
 * @example
 * ```ts ignore
 * showSetting("wal_segment_size", store); // { name: "wal_segment_size", value: "16MB" }
 * ```
 */
export function showSetting(
  name: string,
  store: WalStore,
  sender?: Sender,
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
    application_name: ["application_name", sender?.applicationName ?? ""],
    session_authorization: ["session_authorization", sender?.user ?? ""],
    wal_level: ["wal_level", "replica"],
    full_page_writes: ["full_page_writes", "on"],
  };
  const hit = values[name.toLowerCase()];
  return hit ? { name: hit[0], value: hit[1] } : undefined;
}

/**
 * The ParameterStatus values a replication connection reports after authentication, in the order
 * PostgreSQL sends them (alphabetical, as the GUC table is). `scram_iterations` exists from 16.
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
  store: WalStore,
  sender: Pick<Sender, "applicationName" | "user">,
): [string, string][] {
  const major = store.identity.serverMajor;
  return [
    ["application_name", sender.applicationName],
    ["client_encoding", "SQL_ASCII"],
    ["DateStyle", "ISO, MDY"],
    ["default_transaction_read_only", "off"],
    ["in_hot_standby", "off"],
    ["integer_datetimes", "on"],
    ["IntervalStyle", "postgres"],
    ["is_superuser", "off"],
    ...(major >= 16 ? [["scram_iterations", "4096"] as [string, string]] : []),
    ["server_encoding", "SQL_ASCII"],
    ["server_version", showSetting("server_version", store)!.value],
    ["session_authorization", sender.user],
    ["standard_conforming_strings", "on"],
    ["TimeZone", "Etc/UTC"],
  ];
}
