// A base backup being read through from an upstream that goes silent mid-COPY: given up at the
// stall timeout, as a walreceiver gives up at wal_receiver_timeout, with an error for the
// readers waiting on it and nothing half-written left in the store. The silence is a TCP
// forwarder that stops passing the primary's bytes on.

import assert from "node:assert/strict";
import { startPrimary, tempDir, waitFor } from "./_pg.ts";
import { forwarder } from "./_forwarder.ts";
import { BackupStore } from "../lib/backup/store.ts";
import { upstreamTaker } from "../lib/backup/upstream_backup.ts";
import { silentLogger } from "../lib/log.ts";

Deno.test("base backup from a silent upstream: given up at the stall timeout", async () => {
  await using pg = await startPrimary();
  await pg.pgbench(["-i", "-s", "2", "-q"]);
  await using fwd = await forwarder(pg.port);
  await using dir = await tempDir("walrelay-bb-stall-");
  const store = await BackupStore.open(dir.path);
  const backup = upstreamTaker({
    conninfo: pg.conninfo({ port: String(fwd.port) }),
    log: silentLogger,
    // Slow enough that the silence falls in the middle of the COPY.
    maxRateKb: 1024,
    stallTimeoutMs: 1500,
  })(store);
  // A client being served from it meanwhile.
  const reading = (async () => {
    let n = 0;
    for await (const piece of backup.archive("base.tar")) n += piece.length;
    return n;
  })();
  reading.catch(() => {}); // asserted below
  await waitFor(() => backup.bytesReceived > 0 || undefined, {
    timeoutMs: 30_000,
    message: "no byte of the backup arrived",
  });
  fwd.silence();
  const t0 = Date.now();
  // Bounded, so a relay that waits for good fails here rather than hanging the suite.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("the backup was not given up")), 30_000);
  });
  await assert.rejects(
    Promise.race([backup.done, bound]).finally(() => clearTimeout(timer)),
    /could not take base backup from upstream: terminating base backup from upstream due to timeout/,
  );
  // Not before the timeout.
  assert.ok(Date.now() - t0 >= 1000, `gave up after ${Date.now() - t0} ms`);
  await assert.rejects(reading, /due to timeout/);
  // Nothing stored, nothing half-written left behind.
  await store.refresh();
  assert.deepEqual(store.list(), []);
  const left = await Array.fromAsync(Deno.readDir(store.root));
  assert.deepEqual(left.map((e) => e.name), []);
});
