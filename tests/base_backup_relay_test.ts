// Relay mode reads base backups through from the upstream: for 15, 17 and 18, three downstream
// pg_basebackups cost the primary one BASE_BACKUP (its log says so), each passes
// pg_verifybackup, and a standby built from the relay's backup converges under pgbench while
// streaming from the relay. For 15: two clients at once share one upstream backup, and a kill -9
// of the relay during a read-through leaves nothing that is served; the next request works.

import assert from "node:assert/strict";
import { join } from "node:path";
import { basebackup, startPrimary, startStandby, tempDir, waitFor } from "./_pg.ts";
import { PGBENCH_DIGEST, startRelayMode, waitSame } from "./_relay_mode_util.ts";
import { pgBasebackup, pgBasebackupOk, verifyBackup } from "./_base_backup_util.ts";
import { replPsql } from "./_relay_util.ts";

/** BASE_BACKUP commands the primary received, from its log (log_replication_commands). */
function upstreamBackups(log: string): number {
  return log.split("\n").filter((l) => /received replication command: BASE_BACKUP/.test(l)).length;
}

async function storedBackups(walDir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(join(walDir, ".walrelay", "backups"))))
      .map((e) => e.name).sort();
  } catch {
    return [];
  }
}

for (const major of [15, 17, 18]) {
  Deno.test(`relay mode: three pg_basebackup ${major} from the relay cost the primary one backup; a standby from it converges`, async () => {
    await using pg = await startPrimary({ major, walSegSize: 1, conf: { fsync: "off" } });
    await pg.pgbench(["-i", "-s", "1", "-q"]);
    await using dir = await tempDir("walrelay-bbrelay-");
    await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo() });
    const programs = pg.programs;
    await using work = await programs.tempDir("walrelay-bbrelay-work-");
    const ctx = () => `--- relay ---\n${relay.stderr()}`;
    const conninfo = relay.conninfo();

    // The first one reads through: streamed to the client while stored.
    const first = join(work.path, "first");
    await pgBasebackupOk(programs, conninfo, first, ["-X", "stream", "-R", "-P"], ctx());
    await verifyBackup(programs, first);
    // Stored once complete and fsynced, which may be just after the client is done.
    const stored = await waitFor(async () => {
      const names = await storedBackups(dir.path);
      return names.length === 1 && !names[0]!.startsWith(".tmp-") ? names : undefined;
    }, { timeoutMs: 30_000, message: "the backup was not stored" });
    // Then from the store.
    const second = join(work.path, "second");
    await pgBasebackupOk(programs, conninfo, second, ["-X", "fetch"], ctx());
    await verifyBackup(programs, second);
    const third = join(work.path, "third");
    await pgBasebackupOk(programs, conninfo, third, ["-Ft", "-X", "stream"], ctx());
    assert.equal(
      await upstreamBackups(await pg.log()),
      1,
      "the primary should have served exactly one BASE_BACKUP",
    );
    assert.deepEqual(await storedBackups(dir.path), stored);
    assert.match(
      await Deno.readTextFile(join(first, "postgresql.auto.conf")),
      new RegExp(`primary_conninfo = '.*port=${relay.port}`),
    );

    // A standby from the relay's backup, streaming from the relay, converges under pgbench.
    await using standby = await startStandby({
      dataDir: first,
      primaryConninfo: relay.conninfo({ application_name: "edge" }),
    });
    await pg.pgbench(["-c", "2", "-T", "3", "-n"]);
    await waitSame(standby, PGBENCH_DIGEST, await pg.sql(PGBENCH_DIGEST), relay.stderr);
  });
}

Deno.test("relay mode: two clients at once share one upstream backup; kill -9 mid read-through serves nothing half-done", async () => {
  await using pg = await startPrimary({ walSegSize: 1, conf: { fsync: "off" } });
  await pg.pgbench(["-i", "-s", "2", "-q"]);
  await using dir = await tempDir("walrelay-bbshare-");
  const programs = pg.programs;
  await using work = await programs.tempDir("walrelay-bbshare-work-");
  // Throttled so that the read-through lasts a few seconds.
  const args = ["--base-backup-max-rate", "8192"];
  {
    await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo(), args });
    const a = pgBasebackup(programs, relay.conninfo(), join(work.path, "a"), ["-X", "stream"]);
    const b = pgBasebackup(programs, relay.conninfo(), join(work.path, "b"), [
      "-Ft",
      "-X",
      "fetch",
    ]);
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.code, 0, `${ra.stderr}\n--- relay ---\n${relay.stderr()}`);
    assert.equal(rb.code, 0, `${rb.stderr}\n--- relay ---\n${relay.stderr()}`);
    assert.equal(await upstreamBackups(await pg.log()), 1);
    await verifyBackup(programs, join(work.path, "a"));
  }
  // Removing the stored one makes the next request read through again; kill -9 during it.
  for (const id of await storedBackups(dir.path)) {
    await Deno.remove(join(dir.path, ".walrelay", "backups", id), { recursive: true });
  }
  {
    await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo(), args });
    const c = pgBasebackup(programs, relay.conninfo(), join(work.path, "c"), ["-X", "stream"]);
    await waitFor(async () => {
      const names = await storedBackups(dir.path);
      const tmp = names.find((n) => n.startsWith(".tmp-"));
      if (!tmp) return false;
      const base = await Deno.stat(join(dir.path, ".walrelay", "backups", tmp, "base.tar"))
        .catch(() => undefined);
      return (base?.size ?? 0) > 1 << 20;
    }, { timeoutMs: 30_000, intervalMs: 20, message: "no read-through in progress" });
    relay.kill("SIGKILL");
    const rc = await c;
    assert.notEqual(rc.code, 0, "a backup cut short must fail the client");
    assert.equal(await upstreamBackups(await pg.log()), 2);
  }
  // Nothing half-done is served: the leftover is removed at startup and a new backup is taken.
  {
    await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo() });
    assert.deepEqual(
      (await storedBackups(dir.path)).filter((n) => n.startsWith(".tmp-")),
      [],
      "the half-written backup was not removed",
    );
    const d = join(work.path, "d");
    await pgBasebackupOk(programs, relay.conninfo(), d, ["-X", "stream"], relay.stderr());
    await verifyBackup(programs, d);
    assert.equal(await upstreamBackups(await pg.log()), 3);
    assert.match(relay.stderr(), /removing incomplete base backup/);
  }
});

Deno.test("relay mode: --retain never removes the WAL the oldest stored backup needs", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { fsync: "off", wal_compression: "off" },
  });
  await using dir = await tempDir("walrelay-bbretain-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    args: ["--retain", "3MB"],
  });
  const programs = pg.programs;
  await using work = await programs.tempDir("walrelay-bbretain-work-");
  const writeWal = async (mb: number) => {
    await pg.sql(
      "SELECT count(pg_logical_emit_message(false, 'r', repeat(md5(g::text), 32768))) " +
        `FROM generate_series(1, ${mb}) g`,
    );
    await pg.sql("SELECT pg_switch_wal()");
  };
  const segments = () =>
    [...Deno.readDirSync(dir.path)].map((e) => e.name).filter((n) => /^[0-9A-F]{24}$/.test(n))
      .sort();
  const first = join(work.path, "first");
  await pgBasebackupOk(programs, relay.conninfo(), first, ["-X", "none"], relay.stderr());
  const label = await Deno.readTextFile(join(first, "backup_label"));
  const startSegment = /\(file ([0-9A-F]{24})\)/.exec(label)![1]!;

  // Far more WAL than the budget: everything from the backup's start stays.
  await writeWal(8);
  const endLsn = await pg.sql("SELECT pg_current_wal_lsn()");
  await waitFor(async () => {
    const end = await pg.sql(
      `SELECT pg_wal_lsn_diff('${endLsn}', flush_lsn) <= 0 FROM pg_stat_replication`,
    );
    return end === "t" || undefined;
  }, { message: "the relay did not receive the WAL", timeoutMs: 30_000 });
  await writeWal(1);
  await waitFor(() => segments().length > 3 || undefined, { timeoutMs: 30_000 });
  const kept = segments();
  assert.ok(kept.includes(startSegment), `${startSegment} removed; kept ${kept.join(", ")}`);
  assert.ok(kept.length > 3, `the backup should hold WAL back, kept ${kept.length}`);

  // So a backup with -X stream from the stored backup still has its WAL.
  const again = join(work.path, "again");
  await pgBasebackupOk(programs, relay.conninfo(), again, ["-X", "stream"], relay.stderr());
  await verifyBackup(programs, again);
});

Deno.test("relay mode behind a standby: the backup taken from the standby serves -X fetch and -X stream", async () => {
  await using pg = await startPrimary({ walSegSize: 1, conf: { fsync: "off" } });
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await using sBackup = await basebackup(pg);
  await using s = await startStandby({
    dataDir: sBackup.dataDir,
    primaryConninfo: pg.conninfo({ application_name: "s" }),
  });
  await using dir = await tempDir("walrelay-bbstandby-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: s.conninfo(),
    serving: false,
  });
  // A checkpoint after the relay began: the standby's restartpoint, where its backup starts,
  // then lies in WAL the relay holds.
  await pg.sql("CHECKPOINT");
  await pg.pgbench(["-n", "-t", "50"]);
  await s.waitForReplay(await pg.currentLsn());
  await waitFor(async () => (await replPsql(relay.port, "IDENTIFY_SYSTEM")).code === 0, {
    timeoutMs: 60_000,
    message: "the relay did not serve",
  });
  const programs = pg.programs;
  await using work = await programs.tempDir("walrelay-bbstandby-work-");
  // A backup from a standby ends without a segment switch: its last segment is unfinished.
  const fetched = join(work.path, "fetch");
  await pgBasebackupOk(programs, relay.conninfo(), fetched, ["-X", "fetch"], relay.stderr());
  await verifyBackup(programs, fetched);
  assert.match(await Deno.readTextFile(join(fetched, "backup_label")), /BACKUP FROM: standby/);
  const streamed = join(work.path, "stream");
  await pgBasebackupOk(programs, relay.conninfo(), streamed, ["-X", "stream"], relay.stderr());
  await verifyBackup(programs, streamed);
  assert.equal(upstreamBackups(await s.log()), 1);
});

Deno.test("relay mode behind a relay: an edge relay reads its backup through the regional relay's store", async () => {
  await using pg = await startPrimary({ walSegSize: 1, conf: { fsync: "off" } });
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await using regionalDir = await tempDir("walrelay-bbregional-");
  await using regional = await startRelayMode({
    walDir: regionalDir.path,
    upstream: pg.conninfo(),
  });
  await using edgeDir = await tempDir("walrelay-bbedge-");
  await using edge = await startRelayMode({
    walDir: edgeDir.path,
    upstream: regional.conninfo({ application_name: "edge" }),
  });
  const programs = pg.programs;
  await using work = await programs.tempDir("walrelay-bbedge-work-");
  const logs = () => `--- edge ---\n${edge.stderr()}\n--- regional ---\n${regional.stderr()}`;
  for (const name of ["one", "two"]) {
    const out = join(work.path, name);
    await pgBasebackupOk(programs, edge.conninfo(), out, ["-X", "stream"], logs());
    await verifyBackup(programs, out);
  }
  // One backup from the primary, read through by the regional relay for the edge's one.
  assert.equal(upstreamBackups(await pg.log()), 1);
  await using standby = await startStandby({
    dataDir: join(work.path, "one"),
    primaryConninfo: edge.conninfo({ application_name: "leaf" }),
  });
  await pg.pgbench(["-c", "2", "-T", "2", "-n"]);
  await waitSame(standby, PGBENCH_DIGEST, await pg.sql(PGBENCH_DIGEST), logs);
});

Deno.test("relay mode: --base-backup-interval takes backups ahead of demand, --base-backups-keep prunes", async () => {
  await using pg = await startPrimary({ walSegSize: 1, conf: { fsync: "off" } });
  await using dir = await tempDir("walrelay-bbinterval-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    args: ["--base-backup-interval", "1s", "--base-backups-keep", "1"],
  });
  // No client asked: two backups taken on schedule, only the newest kept.
  await waitFor(async () => upstreamBackups(await pg.log()) >= 2 || undefined, {
    timeoutMs: 60_000,
    message: "no backups were taken on schedule",
  });
  await waitFor(async () => {
    const names = await storedBackups(dir.path);
    return names.length === 1 && !names[0]!.startsWith(".tmp-") &&
        /removed base backup/.test(relay.stderr()) || undefined;
  }, { timeoutMs: 30_000, message: `old backups were not pruned\n${relay.stderr()}` });
});

Deno.test("relay mode: a stored backup older than --base-backup-max-age is read through anew", async () => {
  await using pg = await startPrimary({ walSegSize: 1, conf: { fsync: "off" } });
  await using dir = await tempDir("walrelay-bbmaxage-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    args: ["--base-backup-max-age", "2s"],
  });
  const programs = pg.programs;
  await using work = await programs.tempDir("walrelay-bbmaxage-work-");
  const take = (name: string) =>
    pgBasebackupOk(
      programs,
      relay.conninfo(),
      join(work.path, name),
      ["-X", "none"],
      relay.stderr(),
    );
  await take("a");
  await take("b"); // young enough: from the store
  assert.equal(upstreamBackups(await pg.log()), 1);
  await new Promise((r) => setTimeout(r, 2500));
  await take("c"); // too old now: taken anew
  assert.equal(upstreamBackups(await pg.log()), 2);
});

Deno.test("relay mode: with the upstream gone, an older stored backup is served rather than none", async () => {
  await using pg = await startPrimary({ walSegSize: 1, conf: { fsync: "off" } });
  await using dir = await tempDir("walrelay-bbfallback-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    args: ["--base-backup-max-age", "1s"],
  });
  const programs = pg.programs;
  await using work = await programs.tempDir("walrelay-bbfallback-work-");
  await pgBasebackupOk(programs, relay.conninfo(), join(work.path, "a"), ["-X", "stream"]);
  await waitFor(async () => {
    const names = await storedBackups(dir.path);
    return names.length === 1 && !names[0]!.startsWith(".tmp-") || undefined;
  }, { timeoutMs: 30_000, message: "the backup was not stored" });
  await pg.sql("SELECT pg_switch_wal()");
  await pg.stop("fast");
  await new Promise((r) => setTimeout(r, 1200));
  const b = join(work.path, "b");
  await pgBasebackupOk(programs, relay.conninfo(), b, ["-X", "stream"], relay.stderr());
  await verifyBackup(programs, b);
  assert.match(
    relay.stderr(),
    /serving the stored base backup ".*" instead: could not take base backup from upstream/,
  );
});
