// The status server in relay mode: the upstream link on /status, /metrics and /healthz, ready
// while the upstream is connected, not ready while it is down.

import assert from "node:assert/strict";
import { freePort, startPrimary, tempDir, waitFor } from "./_pg.ts";
import { startRelayMode } from "./_relay_mode_util.ts";
import { parseLsn } from "../lib/wal/lsn.ts";

Deno.test("relay mode: /status shows the upstream link and /healthz follows it", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await using dir = await tempDir("walrelay-status-");
  const httpPort = await freePort();
  await using _relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo({ password: "hunter2" }),
    args: ["--http", `127.0.0.1:${httpPort}`, "--http-ready-max-lag", "5"],
  });
  const url = `http://127.0.0.1:${httpPort}`;
  await pg.sql("CREATE TABLE t AS SELECT generate_series(1, 1000) x");
  const lsn = await pg.currentLsn();
  const status = await waitFor(async () => {
    const s = await (await fetch(`${url}/status`)).json();
    const flushed = s.upstream?.flushed_lsn ? parseLsn(s.upstream.flushed_lsn) : undefined;
    return s.upstream?.connected && flushed !== undefined && flushed >= parseLsn(lsn)! &&
        parseLsn(s.store.valid_end_lsn)! >= parseLsn(lsn)!
      ? s
      : undefined;
  }, { timeoutMs: 20_000, message: "the upstream never showed as connected" });
  assert.doesNotMatch(JSON.stringify(status.upstream), /hunter2/, "no password on the page");
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /walrelay_upstream_flushed_lsn_bytes \d+/);
  // The WAL came through writes and syncs, counted and timed as pg_stat_wal counts them.
  const u = status.upstream;
  assert.ok(u.wal_syncs >= 1 && u.wal_writes >= u.wal_syncs, JSON.stringify(u));
  assert.ok(u.wal_sync_seconds > 0 && u.wal_write_seconds > 0, JSON.stringify(u));
  const counter = (name: string) => Number(metrics.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1]);
  assert.ok(counter("walrelay_upstream_wal_syncs_total") >= u.wal_syncs);
  assert.ok(counter("walrelay_upstream_wal_writes_total") >= u.wal_writes);
  assert.ok(counter("walrelay_upstream_wal_sync_seconds_total") >= u.wal_sync_seconds);
  assert.ok(counter("walrelay_upstream_wal_write_seconds_total") >= u.wal_write_seconds);
  let health = await fetch(`${url}/healthz`);
  assert.equal(health.status, 200);
  await health.body?.cancel();

  await pg.stop("fast");
  await waitFor(async () => {
    health = await fetch(`${url}/healthz`);
    await health.body?.cancel();
    return health.status === 503 || undefined;
  }, { timeoutMs: 20_000, message: "/healthz stayed ready with the upstream down" });
});
