// The senders of one thread share their run buffers: a client that comes after another streams
// through the buffers the first one gave back, rather than a pool of its own that would stay
// allocated, idle, for as long as its connection lasts. A lone reader does not go through the
// block cache, so every run of the bundled WAL's timeline 2 (two 1 MiB segments) is read into a
// run buffer.

import assert from "node:assert/strict";
import { PgClient } from "../lib/pgwire/client.ts";
import { copyFiles, tempDir, TESTDATA } from "./_pg.ts";
import { receiveUntil, startStatusRelay } from "./_status_relay.ts";

Deno.test("run buffers: a second client streams through the buffers the first gave back", async () => {
  await using dir = await tempDir("walrelay-run-buffers-");
  await copyFiles(TESTDATA, dir.path);
  await using r = await startStatusRelay({ walDir: dir.path, watch: false, workers: 1 });
  const pool = r.relay.runBuffers;
  assert.ok(pool, "one thread: the relay's own senders share a pool");
  const stream = async () => {
    await using client = await PgClient.connect({
      hostname: "127.0.0.1",
      port: r.port,
      user: "postgres",
      params: { replication: "true" },
    });
    assert.equal(await client.startReplication("START_REPLICATION 0/A00000 TIMELINE 2"), "copy");
    await receiveUntil(client, 0xC00000n);
  };
  await stream();
  const first = pool.allocated;
  assert.ok(first > 0, "the first client's runs were read into run buffers");
  await stream();
  // Pools of their own would have had the second client allocate as many again.
  assert.ok(
    pool.allocated - first < first,
    `the second client allocated ${pool.allocated - first} buffers, the first ${first}`,
  );
});
