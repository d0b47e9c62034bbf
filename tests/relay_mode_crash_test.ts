// Crash safety of relay mode: the relay is killed with SIGKILL five times while the primary is
// under pgbench load, and restarted on the same directory each time. Nothing is lost and nothing
// is corrupted: the standby behind the relay reaches the primary's data, and every complete
// segment the relay and a pg_receivewal behind it hold is byte-identical to the primary's.

import assert from "node:assert/strict";
import {
  assertSegmentsMatch,
  basebackup,
  delay,
  freePort,
  pgBin,
  type RelayProcess,
  spawnBackground,
  startPrimary,
  startStandby,
  tempDir,
} from "./_pg.ts";
import { spawnReceivewal, waitForFiles } from "./_relay_util.ts";
import { PGBENCH_DIGEST, startRelayMode, waitSame } from "./_relay_mode_util.ts";

Deno.test("relay mode: kill -9 of the relay five times under load loses and corrupts nothing", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await using dir = await tempDir("walrelay-crash-");
  const port = await freePort();
  let relay: RelayProcess | undefined = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    port,
  });
  let logs = "";
  try {
    await using backup = await basebackup(pg);
    await using standby = await startStandby({
      dataDir: backup.dataDir,
      primaryConninfo: `host=127.0.0.1 port=${port} user=postgres application_name=crash_follower`,
      conf: { wal_retrieve_retry_interval: "200ms" },
    });
    await using out = await tempDir("walrelay-crash-rw-");
    await using rw = await spawnReceivewal(port, ["-D", out.path]);
    await using bench = await spawnBackground([
      await pgBin("pgbench"),
      "-h",
      pg.host,
      "-p",
      String(pg.port),
      "-U",
      "postgres",
      "-c",
      "2",
      "-T",
      "14",
      "-n",
      "postgres",
    ]);
    for (let i = 0; i < 5; i++) {
      await delay(1200 + 300 * i);
      relay.kill("SIGKILL");
      assert.equal((await relay.status).signal, "SIGKILL");
      logs += relay.stderr();
      relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo(), port });
    }
    const status = await bench.status;
    assert.ok(status.success, bench.stderr());
    const want = await pg.sql(PGBENCH_DIGEST);
    const r = relay;
    await waitSame(standby, PGBENCH_DIGEST, want, () => logs + r.stderr(), 90_000);

    const last = await pg.switchWal();
    await waitForFiles(out.path, [last], { proc: rw, sizes: 1 << 20, timeoutMs: 90_000 });
    await waitForFiles(dir.path, [last], { sizes: 1 << 20 });
    const relaySegs = await assertSegmentsMatch(dir.path, pg.walDir);
    await assertSegmentsMatch(out.path, pg.walDir);
    // No gap: the relay's segments are consecutive from the first to the last.
    const numbers = relaySegs.map((n) => parseInt(n.slice(16), 16));
    for (let i = 1; i < numbers.length; i++) assert.equal(numbers[i], numbers[i - 1]! + 1);
    assert.ok(relaySegs.length >= 5, relaySegs.join(", "));
    assert.match(logs + relay.stderr(), /resuming from the WAL directory/);
  } finally {
    await relay[Symbol.asyncDispose]();
  }
});
