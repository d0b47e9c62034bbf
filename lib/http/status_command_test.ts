import assert from "node:assert/strict";
import { formatInterval, formatTable, PG_STAT_REPLICATION_COLUMNS } from "./status_command.ts";

// `psql -X -c "SELECT * FROM (VALUES …) AS t(<pg_stat_replication's columns>)"` with PGTZ=UTC,
// captured from PostgreSQL 15's psql.
const PSQL_OUTPUT = [
  "  pid  | usesysid | usename  | application_name | client_addr | client_hostname | client_port |       backend_start        | backend_xmin |   state   | sent_lsn  | write_lsn | flush_lsn | replay_lsn | write_lag  | flush_lag |   replay_lag    | sync_priority | sync_state |       reply_time       ",
  "-------+----------+----------+------------------+-------------+-----------------+-------------+----------------------------+--------------+-----------+-----------+-----------+-----------+------------+------------+-----------+-----------------+---------------+------------+------------------------",
  "     7 |          | postgres | walreceiver      | 127.0.0.1   |                 |        5432 | 2024-05-01 12:34:56.789+00 |              | streaming | 0/3000148 | 0/3000148 |           | 0/3000148  | 00:00:01.5 |           | 25:01:01.000001 |             0 | async      | 2024-05-01 12:34:56+00",
  " 12345 |          | x        |                  | ::1         |                 |           1 |                            |            5 | s         |           |           |           |            |            |           |                 |             0 | async      | ",
  "(2 rows)",
  "",
  "",
].join("\n");

Deno.test("the status table is formatted exactly as psql prints it", () => {
  const rows = [
    [7, null, "postgres", "walreceiver", "127.0.0.1", null, 5432, "2024-05-01 12:34:56.789+00"]
      .concat([null, "streaming", "0/3000148", "0/3000148", null, "0/3000148"])
      .concat([formatInterval(1.5), null, formatInterval(90061.000001), 0, "async"])
      .concat(["2024-05-01 12:34:56+00"]),
    [12345, null, "x", "", "::1", null, 1, null, 5, "s", null, null, null, null, null, null, null]
      .concat([0, "async", null]),
  ];
  assert.equal(formatTable(PG_STAT_REPLICATION_COLUMNS, rows) + "\n", PSQL_OUTPUT);
});
