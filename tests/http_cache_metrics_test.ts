// /status and /metrics count the WAL block cache the senders share: a client reading WAL that
// another reader may also reach fills blocks (misses), the next one reading the same WAL finds
// them (hits). The bundled WAL's timeline 2 is two complete 1 MiB segments, 0/A00000..0/C00000,
// read in runs of RUN_MESSAGES 128 kB messages, one cache block each.

import assert from "node:assert/strict";
import { PgClient } from "../lib/pgwire/client.ts";
import { copyFiles, tempDir, TESTDATA, waitFor } from "./_pg.ts";
import { receiveUntil, startStatusRelay } from "./_status_relay.ts";
import { MAX_SEND_SIZE } from "../lib/stream/chunk.ts";
import { RUN_BUFFER_BYTES, RUN_MESSAGES } from "../lib/replication/streaming.ts";

/** Runs, so cache blocks, in the two segments. */
const BLOCKS = (2 << 20) / (RUN_MESSAGES * MAX_SEND_SIZE);

Deno.test("/metrics: the WAL block cache's hits, misses, evictions and bytes", async () => {
  await using dir = await tempDir("walrelay-cache-metrics-");
  await copyFiles(TESTDATA, dir.path);
  // One thread: every sender shares its one cache.
  await using r = await startStatusRelay({ walDir: dir.path, watch: false, workers: 1 });
  const connect = () =>
    PgClient.connect({
      hostname: "127.0.0.1",
      port: r.port,
      user: "postgres",
      params: { replication: "true" },
    });
  // A caught-up reader: with it, a second reader's blocks may be shared, so they go through
  // the cache (a lone reader reads into its own buffers).
  await using waiting = await connect();
  assert.equal(await waiting.startReplication("START_REPLICATION 0/C00000 TIMELINE 2"), "copy");
  // In COPY with nothing to send it is caught up, as PostgreSQL shows it; it joined the readers
  // on entering COPY.
  await waitFor(async () => (await r.status()).senders[0]?.state === "streaming", {
    message: "the first reader, caught up in COPY, is not streaming",
  });
  for (const expected of [{ hits: 0, misses: BLOCKS }, { hits: BLOCKS, misses: BLOCKS }]) {
    await using client = await connect();
    assert.equal(await client.startReplication("START_REPLICATION 0/A00000 TIMELINE 2"), "copy");
    await receiveUntil(client, 0xC00000n);
    const st = await r.status();
    assert.deepEqual(st.caches.wal_blocks, {
      ...expected,
      evictions: 0,
      bytes: BLOCKS * RUN_BUFFER_BYTES,
      max_bytes: 32 * 1024 * 1024,
    });
    const m = (await r.get("/metrics")).text;
    for (
      const line of [
        `walrelay_cache_hits_total{cache="wal_blocks"} ${expected.hits}`,
        `walrelay_cache_misses_total{cache="wal_blocks"} ${expected.misses}`,
        `walrelay_cache_evictions_total{cache="wal_blocks"} 0`,
        `walrelay_cache_bytes{cache="wal_blocks"} ${BLOCKS * RUN_BUFFER_BYTES}`,
        `walrelay_cache_max_bytes{cache="wal_blocks"} ${32 * 1024 * 1024}`,
        // Plain segment files: nothing decoded.
        `walrelay_cache_misses_total{cache="archive_segments"} 0`,
        `walrelay_cache_max_bytes{cache="archive_segments"} ${256 * 1024 * 1024}`,
        "walrelay_archive_decode_seconds_total 0",
        "# TYPE walrelay_cache_hits_total counter",
        "# TYPE walrelay_cache_bytes gauge",
      ]
    ) {
      assert.ok(m.includes(`${line}\n`), `missing: ${line}`);
    }
  }
});
