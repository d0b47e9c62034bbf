// A base backup the relay took before its upstream's promotion still makes a working standby
// afterwards: served from the store on its old timeline, with -X stream, the new standby follows
// the relay across the switch to timeline 2 and reaches the new primary's data.

import assert from "node:assert/strict";
import { join } from "node:path";
import { basebackup, startPrimary, startStandby, tempDir } from "./_pg.ts";
import { PGBENCH_DIGEST, startRelayMode, waitSame } from "./_relay_mode_util.ts";
import { pgBasebackupOk, verifyBackup } from "./_base_backup_util.ts";

Deno.test("relay mode: a backup stored before a promotion makes a standby that follows timeline 2", async () => {
  await using a = await startPrimary({ walSegSize: 1, conf: { fsync: "off" } });
  await a.pgbench(["-i", "-s", "1", "-q"]);
  await using bBackup = await basebackup(a);
  await using b = await startStandby({
    dataDir: bBackup.dataDir,
    primaryConninfo: a.conninfo({ application_name: "b" }),
  });
  await using dir = await tempDir("walrelay-bbpromote-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: `host=127.0.0.1,127.0.0.1 port=${a.port},${b.port} user=postgres ` +
      `target_session_attrs=read-write application_name=relay`,
  });
  const programs = a.programs;
  await using work = await programs.tempDir("walrelay-bbpromote-work-");
  // Read through from the primary, on timeline 1.
  await pgBasebackupOk(programs, relay.conninfo(), join(work.path, "before"), ["-X", "none"]);

  await a.pgbench(["-n", "-t", "200"]);
  await b.waitForReplay(await a.currentLsn());
  await a.stop("fast");
  await b.promote();
  await b.pgbench(["-n", "-t", "200"]);
  const last = await b.switchWal();
  assert.match(last, /^00000002/);

  // Served from the store (young enough), on its timeline 1.
  const after = join(work.path, "after");
  await pgBasebackupOk(programs, relay.conninfo(), after, ["-X", "stream", "-R"], relay.stderr());
  await verifyBackup(programs, after);
  assert.match(await Deno.readTextFile(join(after, "backup_label")), /START TIMELINE: 1/);
  await using standby = await startStandby({
    dataDir: after,
    primaryConninfo: relay.conninfo({ application_name: "late" }),
  });
  await b.pgbench(["-n", "-t", "100"]);
  await waitSame(standby, PGBENCH_DIGEST, await b.sql(PGBENCH_DIGEST), relay.stderr);
  // It streams timeline 2 from the relay.
  assert.equal(await standby.sql("SELECT received_tli FROM pg_stat_wal_receiver"), "2");
});
