// The status server's pages against a relay serving the bundled WAL: /status, /metrics,
// /healthz with and without an upstream, and `walrelay status`. The pieces behind them have unit
// tests beside their code (the lag tracker, psql's table format, conninfo redaction).

import assert from "node:assert/strict";
import { PgClient } from "../lib/pgwire/client.ts";
import type { UpstreamStatus } from "../lib/http/status.ts";
import { runStatusCommand } from "../lib/http/status_command.ts";
import { copyFiles, tempDir, TESTDATA, waitFor } from "./_pg.ts";

import { startStatusRelay } from "./_status_relay.ts";

/** A relay over a copy of the bundled WAL with its status server. */
async function bundledRelay(upstream?: UpstreamStatus, readyMaxLagSeconds?: number) {
  const dir = await tempDir("walrelay-http-");
  try {
    await copyFiles(TESTDATA, dir.path);
    const r = await startStatusRelay({
      walDir: dir.path,
      watch: false,
      ...(upstream ? { upstream: { status: () => upstream } } : {}),
      ...(readyMaxLagSeconds === undefined ? {} : { readyMaxLagSeconds }),
    });
    const stop = r[Symbol.asyncDispose];
    return Object.assign(r, {
      async [Symbol.asyncDispose]() {
        try {
          await stop();
        } finally {
          await dir.remove();
        }
      },
    });
  } catch (e) {
    await dir.remove();
    throw e;
  }
}

Deno.test("/status, /metrics and walrelay status show a streaming client as it reports", async () => {
  await using r = await bundledRelay();
  const client = await PgClient.connect({
    hostname: "127.0.0.1",
    port: r.port,
    user: "repl",
    params: { replication: "true", application_name: "probe" },
  });
  try {
    // An error with a SQLSTATE, to be counted.
    await assert.rejects(client.query("SELECT 1"));
    assert.equal(await client.startReplication("START_REPLICATION 0/A00000 TIMELINE 2"), "copy");
    await client.sendStatus(0xB00000n, 0xA80000n, 0xA40000n, false, 1n);
    const row = await waitFor(async () => {
      const s = (await r.status()).senders[0];
      return s?.flush_lsn === "0/A80000" && s.flush_lag !== null && s.state === "streaming" &&
        s;
    }, { timeoutMs: 10_000, message: "/status does not show the client's report" });
    assert.equal(row.application_name, "probe");
    assert.equal(row.usename, "repl");
    assert.equal(row.client_addr, "127.0.0.1");
    assert.equal(row.sent_lsn, "0/C00000");
    assert.equal(row.write_lsn, "0/B00000");
    assert.equal(row.replay_lsn, "0/A40000");
    assert.equal(row.sync_state, "async");
    assert.equal(row.bytes_sent, 0xC00000 - 0xA00000);
    assert.equal(row.catchup.bytes_behind, 0);
    assert.equal(row.source, "disk");
    assert.equal(row.timeline, 2);

    const st = await r.status();
    assert.equal(st.store.valid_end_lsn, "0/C00000");
    assert.equal(st.store.timeline, 2);
    assert.deepEqual(st.store.timelines.map((t) => t.timeline), [1, 2]);
    assert.equal(st.store.oldest_segment, "000000010000000000000006");
    assert.equal(st.store.newest_segment, "00000002000000000000000B");
    assert.equal(st.store.bytes_on_disk, 7 * 1048576);
    assert.equal(st.upstream, null);
    assert.equal(st.totals.errors["0A000"], 1);
    // Tests run with --allow-all, which lets the CPU's CRC instructions be loaded.
    assert.equal(st.crc32c, "native");
    // The process holds at least its heap; a relay this small holds well under 1 GiB.
    assert.ok(
      st.memory.heap_used_bytes > 0 && st.memory.heap_used_bytes <= st.memory.heap_total_bytes,
    );
    assert.ok(st.memory.rss_bytes > st.memory.heap_total_bytes, JSON.stringify(st.memory));
    assert.ok(st.memory.rss_bytes < 1 << 30, JSON.stringify(st.memory));

    const m = await r.get("/metrics");
    assert.equal(m.status, 200);
    assert.match(m.type, /^text\/plain; version=0\.0\.4/);
    // Every line is a comment or a well-formed sample.
    for (const line of m.text.trimEnd().split("\n")) {
      assert.match(
        line,
        /^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{([a-z_][a-z0-9_]*="([^"\\]|\\.)*",?)+\})? -?[0-9.e+]+)$/,
      );
    }
    const labels = `pid="${row.pid}",application_name="probe",client_addr="127.0.0.1"`;
    assert.ok(m.text.includes(`walrelay_sender_flush_lsn_bytes{${labels}} ${0xA80000}\n`));
    assert.ok(m.text.includes(`walrelay_sender_sent_lsn_bytes{${labels}} ${0xC00000}\n`));
    assert.match(
      m.text,
      new RegExp(`walrelay_sender_flush_lag_seconds\\{${labels}\\} [0-9.e-]+\n`),
    );
    assert.ok(m.text.includes(`walrelay_store_valid_end_lsn_bytes ${0xC00000}\n`));
    assert.ok(m.text.includes('walrelay_errors_total{sqlstate="0A000"} 1\n'));
    assert.ok(m.text.includes("walrelay_connections_authorized_total 1\n"));
    assert.match(m.text, /\nwalrelay_info\{version="[^"]+",crc32c="native",/);
    assert.ok(m.text.includes('walrelay_senders{state="streaming"} 1\n'));
    assert.match(m.text, /\nwalrelay_resident_memory_bytes [1-9][0-9]{6,}\n/);
    assert.match(m.text, /\nwalrelay_heap_memory_bytes\{kind="external"\} [0-9]+\n/);

    // `walrelay status` prints it as psql prints pg_stat_replication.
    let out = "";
    const code = await runStatusCommand([r.url], { out: (t) => out += t, err: (t) => out += t });
    assert.equal(code, 0, out);
    const lines = out.split("\n");
    assert.match(lines[0]!, /^ +pid +\| usesysid \| usename \| application_name \| client_addr /);
    assert.match(lines[1]!, /^-+\+-+\+/);
    assert.match(
      lines[2]!,
      new RegExp(`^ ${row.pid} \\| +\\| repl +\\| probe +\\| 127\\.0\\.0\\.1 `),
    );
    assert.match(lines[2]!, / streaming \| 0\/C00000 +\| 0\/B00000 +\| 0\/A80000 +\| 0\/A40000 /);
    assert.equal(lines[3], "(1 row)");
    assert.equal(out.slice(-2), "\n\n");
  } finally {
    await client.terminate();
  }
  // Gone from the table once disconnected; counted in the totals.
  await waitFor(async () => (await r.status()).senders.length === 0, { timeoutMs: 5000 });
  const totals = (await r.status()).totals;
  assert.equal(totals.disconnections, 1);
  assert.equal(totals.wal_bytes_sent, 0xC00000 - 0xA00000);
  let out = "";
  assert.equal(
    await runStatusCommand([r.url.replace(/^http:\/\//, "")], {
      out: (t) => out += t,
      err: (t) => out += t,
    }),
    0,
  );
  assert.match(out, /\n\(0 rows\)\n\n$/);
});

Deno.test("/healthz: ready with a readable store, or with upstream connected and within lag", async () => {
  {
    await using r = await bundledRelay();
    const h = await r.get("/healthz");
    assert.equal(h.status, 200, h.text);
    assert.equal(JSON.parse(h.text).ready, true);
    assert.equal((await r.get("/healthz/live")).status, 200);
    assert.equal((await r.get("/nothing")).status, 404);
    const page = await r.get("/");
    assert.equal(page.status, 200);
    assert.match(page.type, /^text\/html/);
  }
  const upstream: UpstreamStatus = {
    conninfo: "host=primary user=repl password=hunter2",
    connected: false,
    state: "connecting",
    receivedLsn: undefined,
    flushedLsn: undefined,
    lagSeconds: undefined,
  };
  await using r = await bundledRelay(upstream, 5);
  let h = await r.get("/healthz");
  assert.equal(h.status, 503);
  assert.match(JSON.parse(h.text).reasons[0], /upstream not connected \(connecting\)/);
  assert.equal((await r.get("/healthz/live")).status, 200, "alive while not ready");

  Object.assign(upstream, {
    connected: true,
    state: "streaming",
    receivedLsn: 0xC00010n,
    flushedLsn: 0xC00000n,
    lagSeconds: 9,
    walIo: { writes: 12, writeSeconds: 0.0015, syncs: 7, syncSeconds: 0.0042 },
  });
  h = await r.get("/healthz/ready");
  assert.equal(h.status, 503);
  assert.match(JSON.parse(h.text).reasons[0], /upstream lag 9\.0 s exceeds 5 s/);
  upstream.lagSeconds = 0.25;
  assert.equal((await r.get("/healthz")).status, 200);

  const st = await r.status();
  assert.deepEqual(st.upstream, {
    conninfo: "host=primary user=repl",
    connected: true,
    state: "streaming",
    received_lsn: "0/C00010",
    flushed_lsn: "0/C00000",
    lag_seconds: 0.25,
    last_message_time: null,
    server: null,
    wal_writes: 12,
    wal_write_seconds: 0.0015,
    wal_syncs: 7,
    wal_sync_seconds: 0.0042,
    divergence: null,
  });
  const m = (await r.get("/metrics")).text;
  assert.ok(m.includes("walrelay_upstream_wal_writes_total 12\n"));
  assert.ok(m.includes("walrelay_upstream_wal_write_seconds_total 0.0015\n"));
  assert.ok(m.includes("walrelay_upstream_wal_syncs_total 7\n"));
  assert.ok(m.includes("walrelay_upstream_wal_sync_seconds_total 0.0042\n"));
  assert.ok(m.includes("walrelay_upstream_connected 1\n"));
  assert.ok(m.includes(`walrelay_upstream_flushed_lsn_bytes ${0xC00000}\n`));
  assert.ok(m.includes("walrelay_upstream_lag_seconds 0.25\n"));
  assert.ok(!m.includes("hunter2") && !JSON.stringify(st).includes("hunter2"));
});

Deno.test("walrelay status fails cleanly when no relay answers", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  let err = "";
  const code = await runStatusCommand([`http://127.0.0.1:${port}`], {
    out: () => {},
    err: (t) => err += t,
  });
  assert.equal(code, 1);
  assert.match(err, new RegExp(`could not get status from http://127\\.0\\.0\\.1:${port}/status`));
  assert.equal(await runStatusCommand(["a", "b"], { out: () => {}, err: () => {} }), 2);
});
