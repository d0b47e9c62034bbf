// The receiver's periodic duties against a real primary: status updates at the status interval
// while nothing flows, and a silent upstream dropped at the receive timeout (after a ping), then
// a new connection that keeps streaming. The connection is silenced by a TCP forwarder that stops
// passing the primary's bytes on (SIGSTOP on the walsender would also stop other backends on
// the locks it holds).

import assert from "node:assert/strict";
import { startPrimary, tempDir, waitFor } from "./_pg.ts";
import { forwarder } from "./_forwarder.ts";
import { startUpstream } from "../lib/upstream/receiver.ts";
import { parseLsn } from "../lib/wal/lsn.ts";

Deno.test("upstream receiver: status interval, receive timeout and reconnection", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await using dir = await tempDir("walrelay-timeout-");
  await using fwd = await forwarder(pg.port);
  const lines: string[] = [];
  const upstream = await startUpstream({
    dir: dir.path,
    conninfo: pg.conninfo({ application_name: "timeout_relay", port: String(fwd.port) }),
    statusIntervalMs: 300,
    receiveTimeoutMs: 3000,
    reconnectMs: { initial: 200, max: 500 },
    logger: { log: (level, message) => lines.push(`${level}: ${message}`) },
  });
  try {
    const walsender = () =>
      pg.sql("SELECT pid FROM pg_stat_replication WHERE application_name = 'timeout_relay'");
    const pid = Number(await waitFor(async () => (await walsender()) || undefined));

    // Idle: the reply time on the primary still moves, at the status interval.
    const replyTime = () =>
      pg.sql(
        "SELECT extract(epoch FROM reply_time) FROM pg_stat_replication " +
          "WHERE application_name = 'timeout_relay'",
      );
    const first = Number(await replyTime());
    await waitFor(async () => Number(await replyTime()) > first || undefined, {
      timeoutMs: 3000,
      message: "no status update within 3 s at a 300 ms status interval",
    });

    // Silence: nothing more from the primary; the receiver pings, then drops the connection and
    // connects again.
    fwd.silence();
    const t0 = Date.now();
    await waitFor(
      () => lines.some((l) => l.includes("terminating upstream connection due to timeout")),
      { timeoutMs: 15_000, message: `no receive timeout:\n${lines.join("\n")}` },
    );
    const waited = Date.now() - t0;
    assert.ok(waited >= 2500, `dropped after ${waited} ms, before the 3 s timeout`);
    const pid2 = Number(
      await waitFor(async () => {
        const p = Number(await walsender());
        return p && p !== pid ? p : undefined;
      }, { timeoutMs: 15_000, message: `no new connection:\n${lines.join("\n")}` }),
    );
    assert.notEqual(pid2, pid);

    // And WAL keeps arriving on the new connection.
    await pg.sql("CREATE TABLE t AS SELECT generate_series(1, 1000) x");
    const target = parseLsn(await pg.currentLsn())!;
    await waitFor(() => (upstream.status.flushedLsn ?? 0n) >= target || undefined, {
      timeoutMs: 15_000,
      message: "WAL did not arrive after reconnecting",
    });
  } finally {
    await upstream.close();
  }
});
