import assert from "node:assert/strict";
import type { WalStore } from "../wal/store.ts";
import { reportedParameters, showSetting, startupParameters } from "./settings.ts";

/** A store's identity as WAL of `major` gives it; nothing else is read. */
function walOf(major: number): Pick<WalStore, "identity"> {
  return {
    identity: {
      systemId: 7714477924572180598n,
      segmentSize: 16 << 20,
      blockSize: 8192,
      magic: 0,
      serverMajor: major,
    },
  };
}

const sender = { applicationName: "pg_receivewal", user: "repl" };

Deno.test("settings: 15 reports 13 parameters in alphabetical order, as a real 15 server", () => {
  assert.deepEqual(startupParameters(walOf(15), sender), [
    ["application_name", "pg_receivewal"],
    ["client_encoding", "SQL_ASCII"],
    ["DateStyle", "ISO, MDY"],
    ["default_transaction_read_only", "off"],
    ["in_hot_standby", "off"],
    ["integer_datetimes", "on"],
    ["IntervalStyle", "postgres"],
    ["is_superuser", "off"],
    ["server_encoding", "SQL_ASCII"],
    ["server_version", "15.0 (walrelay 0.1.0)"],
    ["session_authorization", "repl"],
    ["standard_conforming_strings", "on"],
    ["TimeZone", "Etc/UTC"],
  ]);
});

// The order captured from 17.12 and 18.6 (PROTOCOL.md §10.1).
const ORDER_17 = [
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

Deno.test("settings: 16 and 17 report 14 parameters in hash order, scram_iterations among them", () => {
  for (const major of [16, 17]) {
    const sent = startupParameters(walOf(major), sender);
    assert.deepEqual(sent.map(([name]) => name), ORDER_17);
    const values = new Map(sent);
    assert.equal(values.get("scram_iterations"), "4096");
    assert.equal(values.get("server_version"), `${major}.0 (walrelay 0.1.0)`);
  }
});

Deno.test("settings: 18 reports search_path after IntervalStyle, 15 in all", () => {
  const sent = startupParameters(walOf(18), sender);
  assert.deepEqual(sent.map(([name]) => name), [
    ...ORDER_17.slice(0, 4),
    "search_path",
    ...ORDER_17.slice(4),
  ]);
  assert.equal(new Map(sent).get("search_path"), '"$user", public');
});

/** `guc_name_hash` of PostgreSQL 16 and later: case-folded, rotate left 5, xor. */
function gucNameHash(name: string): number {
  let h = 0;
  for (const ch of name.toLowerCase()) h = (((h << 5) | (h >>> 27)) ^ ch.charCodeAt(0)) >>> 0;
  return h;
}

Deno.test("settings: the order is the GUC hash table's bucket order (how 16's is derived)", () => {
  // From 16, BeginReportingGUCOptions walks a dynahash table of next_pow2(1.25 × the number of
  // GUCs) buckets. The orders captured from 17 and 18 are those of 512 buckets; 16 has fewer GUCs
  // than 17 but well over 205, so 512 too. 15 walks its sorted array.
  for (const major of [16, 17, 18]) {
    const names = reportedParameters(major);
    const buckets = names.map((n) => gucNameHash(n) & 511);
    assert.equal(new Set(buckets).size, names.length, "no two share a bucket");
    assert.deepEqual([...buckets].sort((a, b) => a - b), buckets, `${major}: bucket order`);
  }
  const names15 = reportedParameters(15);
  assert.deepEqual(
    [...names15].sort((a, b) => a.toLowerCase() < b.toLowerCase() ? -1 : 1),
    names15,
  );
});

Deno.test("settings: SHOW knows scram_iterations from 16, search_path in every major", () => {
  assert.equal(showSetting("scram_iterations", walOf(15)), undefined);
  assert.deepEqual(showSetting("SCRAM_ITERATIONS", walOf(16)), {
    name: "scram_iterations",
    value: "4096",
  });
  for (const major of [15, 16, 17, 18]) {
    assert.equal(showSetting("search_path", walOf(major))?.value, '"$user", public');
    assert.equal(showSetting("server_version_num", walOf(major))?.value, `${major}0000`);
  }
});
