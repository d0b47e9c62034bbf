// Relay mode end to end: a primary under pgbench load → the relay → a real standby and a
// pg_receivewal downstream at once. The standby reaches the primary's data; every complete
// segment in the relay's directory and in pg_receivewal's is byte-identical to the primary's.

import assert from "node:assert/strict";
import { assertSegmentsMatch, basebackup, startPrimary, startStandby, tempDir } from "./_pg.ts";
import { spawnReceivewal, waitForFiles } from "./_relay_util.ts";
import { PGBENCH_DIGEST, startRelayMode, waitSame } from "./_relay_mode_util.ts";

Deno.test("relay mode: pgbench on the primary reaches a standby and pg_receivewal through the relay", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await using dir = await tempDir("walrelay-relaymode-");
  await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo() });
  // After the relay started, so the backup's WAL is in the relay's directory.
  await using backup = await basebackup(pg);
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: relay.conninfo({ application_name: "behind_relay" }),
  });
  await using out = await tempDir("walrelay-relaymode-rw-");
  await using rw = await spawnReceivewal(relay.port, ["-D", out.path]);

  await pg.pgbench(["-c", "2", "-T", "4", "-n"]);
  const want = await pg.sql(PGBENCH_DIGEST);
  await waitSame(standby, PGBENCH_DIGEST, want, relay.stderr);

  // Complete the segment in progress so pg_receivewal and the relay both finish it.
  const last = await pg.switchWal();
  await waitForFiles(out.path, [last], { proc: rw, sizes: 1 << 20 });
  await waitForFiles(dir.path, [last], { sizes: 1 << 20 });
  const relaySegs = await assertSegmentsMatch(dir.path, pg.walDir);
  const rwSegs = await assertSegmentsMatch(out.path, pg.walDir);
  assert.ok(relaySegs.length >= 3, relaySegs.join(", "));
  assert.ok(rwSegs.includes(last), rwSegs.join(", "));
  assert.match(relay.stderr(), /connected to upstream/);
  // The primary sees the relay as a streaming standby named walrelay.
  assert.equal(
    await pg.sql("SELECT application_name, state FROM pg_stat_replication ORDER BY 1 LIMIT 1"),
    "walrelay|streaming",
  );
});
