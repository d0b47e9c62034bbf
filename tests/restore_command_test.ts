// Point-in-time recovery through the relay: a base backup taken without WAL (`pg_basebackup -X
// none`) is restored with nothing but `restore_command = 'curl -fsS http://relay/wal/%f -o %p'`
// against a relay serving the primary's archive, to a named restore point, to an LSN, and to the
// end of the archive; each restored server holds exactly the primary's data at that point.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  basebackup,
  freePort,
  PgCluster,
  type PgPrograms,
  startPrimary,
  startRelay,
  type TempDir,
  waitFor,
} from "./_pg.ts";
import { waitArchived } from "./_relay_util.ts";

/** What the table holds, in one comparable line. */
const SNAPSHOT = "SELECT count(*) || ' ' || coalesce(sum(i), 0) || ' ' || " +
  "md5(coalesce(string_agg(i || ':' || note, ',' ORDER BY i), '')) FROM t";

/** Restores a copy of `backupDir` with only `restore_command` and `conf`; waits until promoted. */
async function restore(
  programs: PgPrograms,
  backupDir: string,
  httpPort: number,
  conf: Record<string, string>,
): Promise<{ cluster: PgCluster; dir: TempDir }> {
  const dir = await programs.tempDir("walrelay-restore-");
  const dataDir = join(dir.path, "data");
  const cp = await new Deno.Command("cp", { args: ["-a", backupDir, dataDir] }).output();
  assert.ok(cp.success, new TextDecoder().decode(cp.stderr));
  const port = await freePort();
  const lines = {
    port: String(port),
    listen_addresses: "127.0.0.1",
    unix_socket_directories: dir.pgPath,
    archive_mode: "off",
    restore_command: `curl -fsS http://127.0.0.1:${httpPort}/wal/%f -o %p`,
    recovery_target_action: "promote",
    ...conf,
  };
  await Deno.writeTextFile(
    join(dataDir, "postgresql.conf"),
    "\n# restore through the relay\n" +
      Object.entries(lines).map(([k, v]) => `${k} = '${v.replaceAll("'", "''")}'\n`).join(""),
    { append: true },
  );
  await Deno.writeTextFile(join(dataDir, "recovery.signal"), "");
  await programs.chown(join(dataDir, "recovery.signal"));
  const logFile = join(dir.path, "server.log");
  const started = await programs.run("pg_ctl", [
    "-D",
    programs.pgPath(dataDir),
    "-l",
    programs.pgPath(logFile),
    "-w",
    "-t",
    "120",
    "start",
  ], { asPostgres: true, timeoutMs: 150_000 });
  const cluster = new PgCluster(port, dataDir, dir, undefined, programs);
  const log = async () => await Deno.readTextFile(logFile).catch(() => "");
  if (!started.success) {
    const text = await log();
    await cluster[Symbol.asyncDispose]();
    throw new Error(`restored server did not start:\n${started.stderr}\n${text}`);
  }
  try {
    await waitFor(async () => (await cluster.sql("SELECT pg_is_in_recovery()")) === "f", {
      timeoutMs: 120_000,
      message: "the restored server never finished recovery",
    });
  } catch (e) {
    const text = await log();
    await cluster[Symbol.asyncDispose]();
    throw new Error(`${(e as Error).message}\n--- server log ---\n${text}`);
  }
  return { cluster, dir };
}

Deno.test("restore_command through /wal/: a base backup without WAL recovers to a restore point, an LSN and the archive's end", async () => {
  await using pg = await startPrimary({ archive: true, walSegSize: 1 });
  await pg.sql("CREATE TABLE t (i int PRIMARY KEY, note text)");
  await pg.sql("INSERT INTO t SELECT g, repeat('a', 200) FROM generate_series(1, 2000) g");
  await using backup = await basebackup(pg, { args: ["-X", "none"] });

  // Past the backup: more WAL than one segment, a restore point, more, an LSN, more.
  await pg.sql("INSERT INTO t SELECT g, repeat('b', 300) FROM generate_series(2001, 6000) g");
  await pg.sql("SELECT pg_create_restore_point('before_delete')");
  const atRestorePoint = await pg.sql(SNAPSHOT);
  await pg.sql("DELETE FROM t WHERE i % 3 = 0");
  await pg.sql("UPDATE t SET note = 'c' WHERE i % 5 = 0");
  const lsn = await pg.currentLsn();
  const atLsn = await pg.sql(SNAPSHOT);
  // A commit right at the target LSN would be replayed or not depending on inclusivity: keep
  // the next one clearly after it.
  await pg.sql("INSERT INTO t SELECT g, repeat('d', 100) FROM generate_series(6001, 9000) g");
  const atEnd = await pg.sql(SNAPSHOT);
  assert.notEqual(atRestorePoint, atLsn);
  assert.notEqual(atLsn, atEnd);
  const last = await pg.switchWal();
  await waitArchived(pg, last);

  const httpPort = await freePort();
  await using _relay = await startRelay({
    walDir: pg.archiveDir!,
    args: ["--http", `127.0.0.1:${httpPort}`],
  });
  await waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
    await r.body?.cancel();
    return r.ok;
  }, { timeoutMs: 20_000, message: "the relay's HTTP server never answered" });

  const cases: [string, Record<string, string>, string][] = [
    ["restore point", { recovery_target_name: "before_delete" }, atRestorePoint],
    ["LSN", { recovery_target_lsn: lsn, recovery_target_inclusive: "on" }, atLsn],
    ["end of the archive", {}, atEnd],
  ];
  for (const [what, conf, want] of cases) {
    const { cluster, dir } = await restore(pg.programs, backup.dataDir, httpPort, conf);
    try {
      assert.equal(await cluster.sql(SNAPSHOT), want, what);
      const log = await cluster.log();
      assert.match(log, /restored log file "[0-9A-F]{24}" from archive/, what);
      if (what === "restore point") {
        assert.match(log, /recovery stopping at restore point "before_delete"/);
      }
    } finally {
      await cluster[Symbol.asyncDispose]();
      await dir.remove();
    }
  }

  const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const served = Number(
    /^walrelay_http_wal_requests_total\{outcome="served"\} (\d+)$/m.exec(metrics)?.[1],
  );
  assert.ok(served >= 3, `segments served: ${served}`);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="damaged"\} 0$/m);
});
