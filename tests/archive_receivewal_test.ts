// Archives written by a real `pg_receivewal --compress=gzip|lz4` (PostgreSQL 15 and 17) under
// pgbench, served by the relay after pg_receivewal stopped (its compressed `.partial` included):
// a standby from a base backup reaches the primary's data, and a plain pg_receivewal pulling from
// the relay writes the primary's segments byte for byte. And served while pg_receivewal still
// runs: a standby on the relay follows each segment as pg_receivewal completes it.

import assert from "node:assert/strict";
import { basebackup, startPrimary, startRelay, waitFor } from "./_pg.ts";
import { listDir, spawnReceivewal } from "./_relay_util.ts";
import { PGBENCH_DIGEST } from "./_relay_mode_util.ts";
import { primarySegments, pullMatchesPrimary, standbyReachesPrimary } from "./_archive_util.ts";

for (const major of [15, 17]) {
  Deno.test(`pg_receivewal ${major} --compress=gzip and =lz4 archives, served to a standby and pg_receivewal`, async () => {
    await using pg = await startPrimary({
      major,
      walSegSize: 1,
      conf: { fsync: "off", wal_keep_size: "1GB", max_wal_senders: 10 },
    });
    const methods = ["gzip", "lz4"] as const;
    const dirs = await Promise.all(methods.map((m) => pg.programs.tempDir(`walrelay-rw-${m}-`)));
    await using _dirs = {
      [Symbol.asyncDispose]: async () => void await Promise.all(dirs.map((d) => d.remove())),
    };
    const receivers = await Promise.all(
      methods.map((m, i) =>
        spawnReceivewal(
          pg.port,
          ["-D", dirs[i]!.pgPath, `--compress=${m}`, "-s", "1", "--no-loop"],
          major,
        )
      ),
    );
    await using _receivers = {
      [Symbol.asyncDispose]: async () => void await Promise.all(receivers.map((r) => r.stop())),
    };
    await waitFor(
      async () => Number(await pg.sql("SELECT count(*) FROM pg_stat_replication")) === 2,
      { timeoutMs: 20_000, message: "pg_receivewal did not start streaming" },
    );
    await pg.pgbench(["-i", "-s", "2", "-q"]);
    await using backupGz = await basebackup(pg);
    await using backupLz4 = await basebackup(pg);
    // Written after the backups: the standbys get it only from the archive, through the relay.
    await pg.pgbench(["-c", "2", "-t", "1500", "-n"]);
    await pg.switchWal();
    await pg.pgbench(["-c", "1", "-t", "200", "-n"]);
    const target = await pg.sql("SELECT pg_current_wal_lsn()");
    const want = await pg.sql(PGBENCH_DIGEST);
    await waitFor(
      async () =>
        Number(
          await pg.sql(
            `SELECT count(*) FROM pg_stat_replication WHERE write_lsn >= '${target}'::pg_lsn`,
          ),
        ) === 2,
      { timeoutMs: 30_000, message: `pg_receivewal did not write up to ${target}` },
    );
    // Stopped: each leaves its last segment as a compressed `.partial` holding a whole stream.
    for (const r of receivers) assert.equal((await r.stop("SIGINT")).code, 0, r.stderr());
    const primary = await primarySegments(pg);

    for (const [i, method] of methods.entries()) {
      const dir = dirs[i]!.path;
      const files = await listDir(dir);
      const ext = method === "gzip" ? "gz" : "lz4";
      assert.ok(files.some((f) => f.endsWith(`.${ext}.partial`)), files.join(", "));
      assert.ok(files.filter((f) => f.endsWith(`.${ext}`)).length >= 5, files.join(", "));
      const first = files.find((f) => f.endsWith(`.${ext}`) || f.endsWith(".partial"))!.slice(
        0,
        24,
      );
      await using relay = await startRelay({ walDir: dir });
      const compared = await pullMatchesPrimary(relay, first, primary, major);
      assert.ok(compared >= 5, `${method}: ${compared} segments compared`);
      await standbyReachesPrimary(method === "gzip" ? backupGz : backupLz4, relay, want);
    }
  });
}

for (const method of ["gzip", "lz4"] as const) {
  Deno.test(`a live pg_receivewal --compress=${method} directory: a standby on the relay follows each segment it completes`, async () => {
    await using pg = await startPrimary({
      walSegSize: 1,
      conf: { fsync: "off", wal_keep_size: "1GB", max_wal_senders: 10 },
    });
    await using dir = await pg.programs.tempDir(`walrelay-rw-live-${method}-`);
    await using _receiver = await spawnReceivewal(pg.port, [
      "-D",
      dir.pgPath,
      `--compress=${method}`,
      "-s",
      "1",
      "--no-loop",
    ]);
    await waitFor(
      async () => Number(await pg.sql("SELECT count(*) FROM pg_stat_replication")) === 1,
      { timeoutMs: 20_000, message: "pg_receivewal did not start streaming" },
    );
    await pg.pgbench(["-i", "-s", "1", "-q"]);
    await using backup = await basebackup(pg);
    await pg.switchWal();
    const ext = method === "gzip" ? ".gz" : ".lz4";
    await waitFor(async () => (await listDir(dir.path)).some((f) => f.endsWith(ext)) || undefined, {
      timeoutMs: 20_000,
      message: `pg_receivewal completed no ${ext} segment`,
    });
    await using relay = await startRelay({ walDir: dir.path });
    // Written while the relay runs: it reaches the relay only as pg_receivewal renames each
    // completed segment from its `.partial`, which holds no whole stream meanwhile.
    for (let i = 0; i < 4; i++) {
      await pg.pgbench(["-c", "2", "-t", "300", "-n"]);
      await pg.switchWal();
    }
    const want = await pg.sql(PGBENCH_DIGEST);
    // The last pgbench's commit records are in a segment pg_receivewal has completed: switch
    // past a record of the new segment so that the switch itself is in a completed one too.
    await pg.sql("SELECT pg_logical_emit_message(false, 'walrelay', 'past the switch')");
    await pg.switchWal();
    await standbyReachesPrimary(backup, relay, want);
  });
}
