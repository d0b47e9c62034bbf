// Real standbys streaming from `walrelay serve` over an archive copy: catching up after a base
// backup, and following a timeline switch (1 → 2) through the relay.

import assert from "node:assert/strict";
import {
  basebackup,
  copyFiles,
  isSegmentName,
  type PgCluster,
  startPrimary,
  startRelay,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { waitArchived } from "./_relay_util.ts";

// A digest of the table every node must agree on.
const DIGEST =
  "SELECT count(*), sum(x), md5(string_agg(x::text || ':' || v, ',' ORDER BY x)) FROM t";

/** Waits until the standby's table digest equals `want`; throws with its log otherwise. */
async function waitDigest(standby: PgCluster, want: string, relayErr: () => string) {
  let last = "";
  await waitFor(
    async () => (last = await standby.sql(DIGEST)) === want,
    { timeoutMs: 60_000, message: "standby did not reach the primary's data" },
  ).catch(async (e) => {
    throw new Error(
      `${(e as Error).message}\nwant ${want}\ngot  ${last}\n--- standby log ---\n${await standby
        .log()}\n--- relay ---\n${relayErr()}`,
    );
  });
}

Deno.test("a standby from a base backup catches up from an archive copy through the relay", async () => {
  await using pg = await startPrimary({ walSegSize: 1, archive: true });
  await pg.sql("CREATE TABLE t (x int PRIMARY KEY, v text)");
  await pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
  await using backup = await basebackup(pg);

  // Written after the backup: the standby can only get this from the relay.
  await pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1001, 30000) g");
  await pg.sql("UPDATE t SET v = upper(v) WHERE x % 7 = 0");
  const want = await pg.sql(DIGEST);
  await waitArchived(pg, await pg.switchWal());

  await using walDir = await tempDir("walrelay-archive-copy-");
  const copied = await copyFiles(pg.archiveDir!, walDir.path, isSegmentName);
  assert.ok(copied.length >= 3, `archive holds ${copied.join(", ")}`);
  await using relay = await startRelay({ walDir: walDir.path });

  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: relay.conninfo({ application_name: "relay_standby" }),
  });
  await waitDigest(standby, want, relay.stderr);
  assert.equal(await standby.sql("SELECT pg_is_in_recovery()"), "t");
  // The data came over streaming replication from the relay (no restore_command exists).
  await waitFor(
    async () =>
      (await standby.sql("SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver")) ===
        `streaming|127.0.0.1|${relay.port}`,
    { timeoutMs: 10_000, message: "pg_stat_wal_receiver does not show the relay streaming" },
  );

  // SIGTERM: the relay waits for the standby's confirmation, ends with COPY 0 and exits 0; the
  // walreceiver sees a controlled end, not a broken connection.
  assert.equal((await relay.stop("SIGTERM", 15_000)).code, 0, relay.stderr());
  await waitFor(async () => /replication terminated by primary server/.test(await standby.log()), {
    timeoutMs: 10_000,
    message: "the standby did not see the stream end with COPY 0",
  });
  assert.doesNotMatch(await standby.log(), /could not receive data from WAL stream/);
});

Deno.test("a standby on timeline 1 follows the switch to timeline 2 through the relay", async () => {
  // P1 archives timeline 1. B is the backup of the standby under test; S is a second standby of
  // P1 that gets promoted to timeline 2 and archives it into the same archive.
  await using p1 = await startPrimary({ walSegSize: 1, archive: true });
  const archive = p1.archiveDir!;
  await p1.sql("CREATE TABLE t (x int PRIMARY KEY, v text)");
  await p1.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
  await using b = await basebackup(p1);
  await using sBackup = await basebackup(p1);
  // S inherits P1's archive_command; archive_mode=on archives only once S is promoted.
  await using s = await startStandby({
    dataDir: sBackup.dataDir,
    primaryConninfo: p1.conninfo({ application_name: "to_promote" }),
    conf: { archive_mode: "on" },
  });

  await p1.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1001, 20000) g");
  await s.waitForReplay(await p1.currentLsn());
  // A fast shutdown sends S everything and archives every complete timeline-1 segment.
  await p1.stop("fast");
  await s.promote();
  assert.match(await s.sql("SELECT pg_walfile_name(pg_current_wal_lsn())"), /^00000002/);

  await s.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(20001, 40000) g");
  await s.sql("DELETE FROM t WHERE x % 5 = 0");
  const want = await s.sql(DIGEST);
  const last = await s.switchWal();
  assert.match(last, /^00000002/);
  await waitArchived(s, last);

  await using walDir = await tempDir("walrelay-tli-archive-");
  const copied = await copyFiles(archive, walDir.path);
  assert.ok(copied.includes("00000002.history"), copied.join(", "));
  assert.ok(copied.some((n) => /^00000001.*\.partial$/.test(n)), copied.join(", "));
  await using relay = await startRelay({ walDir: walDir.path });

  await using standby = await startStandby({
    dataDir: b.dataDir,
    primaryConninfo: relay.conninfo({ application_name: "tli_follower" }),
  });
  await waitDigest(standby, want, relay.stderr);
  await waitFor(
    async () =>
      (await standby.sql(
        "SELECT status, received_tli, sender_port FROM pg_stat_wal_receiver",
      )) === `streaming|2|${relay.port}`,
    { timeoutMs: 10_000, message: "the standby is not streaming timeline 2 from the relay" },
  );
  // The standby fetched the history file from the relay (TIMELINE_HISTORY) and switched.
  assert.match(await standby.log(), /new target timeline is 2/);
  // It streamed timeline 1 up to the switch point from the relay, then timeline 2.
  assert.match(relay.stderr(), /starting replication .*timeline=1/);
  assert.match(relay.stderr(), /starting replication .*timeline=2/);
});
