// The compatibility matrix, relay mode: for 15, 17 and 18, with that major's own servers and
// clients, the relay follows a standby of a primary under pgbench; a standby behind the relay
// converges and pg_receivewal behind it (through a slot it created on the relay) gets the
// primary's segments byte for byte; then the upstream is promoted, and both follow timeline 2
// through the relay; the slot records where pg_receivewal got to, and is dropped.

import assert from "node:assert/strict";
import {
  basebackup,
  compareDirs,
  delay,
  isSegmentName,
  startPrimary,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";
import {
  lsn,
  replPsqlOk,
  runReceivewal,
  segmentStartLsn,
  spawnReceivewal,
  waitForFiles,
} from "./_relay_util.ts";
import { PGBENCH_DIGEST, startRelayMode, waitSame } from "./_relay_mode_util.ts";
import { FAST_CONF, isArchiveFile, MAJORS } from "./_majors.ts";

const SEG = 1 << 20;

for (const major of MAJORS) {
  Deno.test(`PostgreSQL ${major}: relay mode under pgbench, across a promotion, with a slot`, async () => {
    await using p = await startPrimary({ major, walSegSize: 1, conf: FAST_CONF });
    await p.pgbench(["-i", "-s", "1", "-q"]);
    await using sBackup = await basebackup(p);
    await using s = await startStandby({
      dataDir: sBackup.dataDir,
      primaryConninfo: p.conninfo({ application_name: "to_promote" }),
    });
    await using dir = await tempDir("walrelay-majors-relay-");
    // The relay answers clients once the upstream sent it WAL, and an idle primary writes some
    // only every 15 s: write a little until the relay is up.
    let up = false;
    const nudging = (async () => {
      while (!up) {
        await p.sql("SELECT pg_logical_emit_message(false, 'matrix', 'nudge')");
        await delay(200);
      }
    })();
    await using relay = await startRelayMode({ walDir: dir.path, upstream: s.conninfo() })
      .finally(() => up = true);
    await nudging;
    const failed = (what: string, extra = "") => (e: unknown): never => {
      throw new Error(
        `${what}: ${(e as Error).message}\n${extra}\n--- relay ---\n${relay.stderr()}`,
      );
    };

    // pg_receivewal --create-slot, then streaming through the slot into an empty directory.
    const created = await runReceivewal(
      relay.port,
      ["--create-slot", "--slot", "matrix"],
      30_000,
      major,
    );
    assert.equal(created.code, 0, created.stderr);
    assert.equal(await replPsqlOk(relay.port, "READ_REPLICATION_SLOT matrix", major), "physical||");
    await using out = await tempDir("walrelay-majors-relay-rw-", { major });
    await using rw = await spawnReceivewal(
      relay.port,
      ["-D", out.pgPath, "--slot", "matrix", "-s", "1"],
      major,
    );

    // Taken after the relay started, so everything the standby needs passes through the relay.
    await using bBackup = await basebackup(p);
    await using b = await startStandby({
      dataDir: bBackup.dataDir,
      primaryConninfo: relay.conninfo({ application_name: "behind_relay" }),
    });
    await p.pgbench(["-T", "3", "-c", "2"]);
    await waitSame(b, PGBENCH_DIGEST, await p.sql(PGBENCH_DIGEST), relay.stderr);
    await waitFor(
      async () =>
        (await b.sql("SELECT status, received_tli, sender_port FROM pg_stat_wal_receiver")) ===
          `streaming|1|${relay.port}`,
      { timeoutMs: 10_000, message: "the standby does not stream timeline 1 from the relay" },
    );

    // The upstream is promoted: timeline 2 reaches both clients through the relay.
    await s.waitForReplay(await p.currentLsn());
    await p.stop("fast");
    await s.promote();
    await s.pgbench(["-t", "200", "-c", "1"]);
    const want = await s.sql(PGBENCH_DIGEST);
    const last = await s.switchWal();
    assert.match(last, /^00000002/);
    await waitSame(b, PGBENCH_DIGEST, want, relay.stderr);
    await waitFor(
      async () =>
        (await b.sql("SELECT status, received_tli, sender_port FROM pg_stat_wal_receiver")) ===
          `streaming|2|${relay.port}`,
      { timeoutMs: 20_000, message: "the standby does not stream timeline 2 from the relay" },
    ).catch(failed("timeline 2", `--- standby ---\n${await b.log()}`));
    assert.match(await b.log(), /new target timeline is 2/);

    await waitForFiles(out.path, ["00000002.history", last], { proc: rw })
      .catch(failed("pg_receivewal", rw.stderr()));
    await waitForFiles(out.path, [last], { sizes: SEG, proc: rw });
    // The slot follows what pg_receivewal flushed: past the last segment, on timeline 2.
    const end = segmentStartLsn(last, SEG) + BigInt(SEG);
    await waitFor(
      async () => {
        const [type, restart, tli] = (await replPsqlOk(
          relay.port,
          "READ_REPLICATION_SLOT matrix",
          major,
        )).split("|");
        return type === "physical" && tli === "2" && lsn(restart ?? "") >= end;
      },
      { timeoutMs: 20_000, message: `the slot did not reach ${last}'s end on timeline 2` },
    ).catch(failed("slot", rw.stderr()));
    assert.equal((await rw.stop("SIGINT")).code, 0, rw.stderr());

    // Timeline 1 as the primary wrote it, timeline 2 as the promoted server did.
    const tl1 = await compareDirs(out.path, p.walDir, (n) => isSegmentName(n) && n < "00000002");
    assert.deepEqual([tl1.differ, tl1.onlyInA], [[], []]);
    assert.ok(tl1.same.length >= 2, `timeline 1: ${tl1.same.join(", ")}`);
    const tl2 = await compareDirs(out.path, s.walDir, (n) => isArchiveFile(n) && n >= "00000002");
    assert.deepEqual([tl2.differ, tl2.onlyInA], [[], []]);
    assert.ok(tl2.same.includes("00000002.history") && tl2.same.includes(last), tl2.same.join());

    const dropped = await runReceivewal(
      relay.port,
      ["--drop-slot", "--slot", "matrix"],
      30_000,
      major,
    );
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.equal(await replPsqlOk(relay.port, "READ_REPLICATION_SLOT matrix", major), "||");
  });
}
