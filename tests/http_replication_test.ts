// The status pages with real clients: a standby and pg_receivewal streaming through the relay.
// /status and /metrics show the positions the clients themselves report, replay_lag grows while
// the standby's replay is paused and new WAL reaches the relay, and drops once replay resumes.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSegmentsMatch,
  basebackup,
  copyFiles,
  isSegmentName,
  type PgCluster,
  startPrimary,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { listDir, lsn, spawnReceivewal, touch } from "./_relay_util.ts";
import { startStatusRelay, type StatusRelay } from "./_status_relay.ts";
import type { SenderStatus } from "../lib/http/status.ts";
import { runStatusCommand } from "../lib/http/status_command.ts";

const DIGEST =
  "SELECT count(*), sum(x), md5(string_agg(x::text || ':' || v, ',' ORDER BY x)) FROM t";

/** Switches WAL on `pg`, waits for the archiver, and copies new archived segments to `dir`. */
async function shipWal(pg: PgCluster, dir: string): Promise<string[]> {
  const last = await pg.switchWal();
  await waitFor(
    async () => (await pg.sql("SELECT last_archived_wal FROM pg_stat_archiver")) >= last,
    { timeoutMs: 60_000, message: `${last} was not archived` },
  );
  const have = new Set(await listDir(dir));
  return await copyFiles(pg.archiveDir!, dir, (n) => isSegmentName(n) && !have.has(n));
}

async function row(r: StatusRelay, name: string): Promise<SenderStatus | undefined> {
  return (await r.status()).senders.find((s) => s.application_name === name);
}

Deno.test("/status follows a real standby and pg_receivewal, and replay_lag tracks a paused standby", async () => {
  await using pg = await startPrimary({ walSegSize: 1, archive: true });
  await pg.sql("CREATE TABLE t (x int PRIMARY KEY, v text)");
  await pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
  await using backup = await basebackup(pg);
  await pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1001, 5000) g");

  await using walDir = await tempDir("walrelay-http-repl-");
  await shipWal(pg, walDir.path);
  await using r = await startStatusRelay({ walDir: walDir.path });
  const end = () => r.relay.store.endLsn;

  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: r.conninfo({ application_name: "standby1" }),
  });
  await using target = await tempDir("walrelay-http-recv-");
  const first = (await listDir(walDir.path)).filter(isSegmentName)[0]!;
  await touch(join(target.path, `${first}.partial`));
  await using receiver = await spawnReceivewal(r.port, ["-D", target.path, "-s", "1"]);

  // Both clients caught up: what /status shows is what each client says it has.
  const flushed = () => standby.sql("SELECT flushed_lsn FROM pg_stat_wal_receiver");
  await waitFor(async () => {
    if (receiver.exited) throw new Error(`pg_receivewal exited:\n${receiver.stderr()}`);
    const [s, p] = [await row(r, "standby1"), await row(r, "pg_receivewal")];
    return s?.flush_lsn === await flushed() && lsn(s.flush_lsn!) === end() &&
      p?.write_lsn !== null && lsn(p!.write_lsn!) === end();
  }, { timeoutMs: 60_000, message: "the clients did not catch up with the relay" }).catch((e) => {
    throw new Error(`${e.message}\n--- relay ---\n${r.logs()}`);
  });
  const s1 = (await row(r, "standby1"))!;
  assert.equal(s1.state, "streaming");
  assert.equal(s1.usename, "postgres");
  assert.equal(s1.client_addr, "127.0.0.1");
  assert.equal(s1.sent_lsn, s1.flush_lsn);
  assert.equal(s1.catchup.bytes_behind, 0);
  assert.equal(
    await standby.sql("SELECT sender_port, written_lsn FROM pg_stat_wal_receiver"),
    `${r.port}|${s1.write_lsn}`,
  );
  // pg_receivewal's files end exactly where it reports having written.
  const received = await assertSegmentsMatch(target.path, walDir.path);
  const newest = received.sort().at(-1)!;
  const segEnd = (BigInt(`0x${newest.slice(8, 16)}`) << 32n) +
    (BigInt(`0x${newest.slice(16)}`) + 1n) * 1048576n;
  const p1 = (await row(r, "pg_receivewal"))!;
  assert.equal(lsn(p1.write_lsn!), segEnd);
  assert.equal(lsn(p1.sent_lsn!), segEnd);

  // /metrics carries the same positions as byte counts.
  const metrics = (await r.get("/metrics")).text;
  const labels = `pid="${s1.pid}",application_name="standby1",client_addr="127.0.0.1"`;
  assert.ok(
    metrics.includes(`walrelay_sender_flush_lsn_bytes{${labels}} ${lsn(s1.flush_lsn!)}\n`),
    metrics,
  );
  assert.ok(metrics.includes('walrelay_senders{state="streaming"} 2\n'));

  // `walrelay status`: both clients, as psql would print them.
  let out = "";
  assert.equal(await runStatusCommand([r.url], { out: (t) => out += t, err: (t) => out += t }), 0);
  assert.match(out, / standby1 +\| 127\.0\.0\.1 /);
  assert.match(out, / pg_receivewal +\| 127\.0\.0\.1 /);
  assert.match(out, /\n\(2 rows\)\n\n$/);

  // Pause replay, then bring new WAL to the relay: the standby writes and flushes it but does not
  // apply it, so replay_lag keeps growing.
  await standby.sql("SELECT pg_wal_replay_pause()");
  await waitFor(async () =>
    (await standby.sql("SELECT pg_get_wal_replay_pause_state()")) === "paused"
  );
  await pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(5001, 20000) g");
  const want = await pg.sql(DIGEST);
  assert.ok((await shipWal(pg, walDir.path)).length > 0);
  await r.relay.refresh();
  const newEnd = end();
  assert.ok(newEnd > lsn(s1.flush_lsn!));
  const paused = await waitFor(async () => {
    const s = await row(r, "standby1");
    return s?.flush_lsn !== null && lsn(s!.flush_lsn!) === newEnd && s!.replay_lag !== null && s;
  }, { timeoutMs: 30_000, message: "the paused standby did not flush the new WAL" });
  assert.ok(lsn(paused.replay_lsn!) < newEnd, "replay is paused");
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const later = (await row(r, "standby1"))!;
  assert.ok(
    later.replay_lag! >= paused.replay_lag! + 1.5,
    `replay_lag ${paused.replay_lag} → ${later.replay_lag}`,
  );
  assert.ok(later.replay_lag! > 2, `replay_lag ${later.replay_lag}`);
  assert.ok(
    later.flush_lag === null || later.flush_lag < later.replay_lag!,
    `flush_lag ${later.flush_lag}, replay_lag ${later.replay_lag}`,
  );
  assert.match(
    (await r.get("/metrics")).text,
    new RegExp(`walrelay_sender_replay_lag_seconds\\{pid="${s1.pid}",[^}]*\\} [2-9]`),
  );

  // Resume: replay catches up, and the lag falls back (to NULL once two replies in a row report
  // everything applied, as PostgreSQL shows it).
  await standby.sql("SELECT pg_wal_replay_resume()");
  const peak = (await row(r, "standby1"))!.replay_lag!;
  const resumed = await waitFor(async () => {
    const s = await row(r, "standby1");
    return s?.replay_lsn !== null && lsn(s!.replay_lsn!) === newEnd &&
      (s!.replay_lag === null || s!.replay_lag < peak - 1) && s;
  }, { timeoutMs: 30_000, message: "replay_lag did not fall after resuming" });
  assert.equal(resumed.replay_lsn, resumed.sent_lsn);
  assert.equal(await standby.sql(DIGEST), want);
});
