// The relay pointed straight at a running primary's pg_wal: the current segment is written page
// by page in place, future segments are preallocated or recycled. Under pgbench load a standby
// streaming from the relay reaches the primary's data, and a pg_receivewal downstream gets
// segments byte-identical to the primary's.

import assert from "node:assert/strict";
import { basebackup, startPrimary, startRelay, startStandby, tempDir, waitFor } from "./_pg.ts";
import { parseWalFileName, segmentFileName } from "../lib/wal/segment.ts";
import { spawnReceivewal } from "./_relay_util.ts";

const SEG = 1024 * 1024;

Deno.test("live pg_wal: pgbench on the primary, relay on its pg_wal, standby + pg_receivewal", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    // Recycling and preallocation as in production, with enough kept for the test to compare.
    conf: { wal_keep_size: "256MB", min_wal_size: "32MB", max_wal_size: "64MB" },
  });
  await pg.pgbench(["-i", "-s", "2"]);
  await using backup = await basebackup(pg);
  await using relay = await startRelay({ walDir: pg.walDir });
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: `host=127.0.0.1 port=${relay.port} user=postgres application_name=pgwal1`,
  });
  await using out = await tempDir("walrelay_pgwal_out_");
  const first = await pg.sql("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await Deno.writeFile(`${out.path}/${first}.partial`, new Uint8Array());
  await using receiver = await spawnReceivewal(relay.port, [
    "-D",
    out.path,
    "-n",
  ]);

  await pg.pgbench(["-T", "5", "-c", "2", "-j", "1"]);
  // The relay serves only what is valid in pg_wal: the standby gets there without help.
  await pg.sql("CHECKPOINT");
  const target = await pg.currentLsn();
  await standby.waitForReplay(target, 60_000);
  const q = "SELECT count(*), sum(abalance) FROM pgbench_accounts";
  assert.equal(await standby.sql(q), await pg.sql(q));
  const h = "SELECT count(*), sum(delta) FROM pgbench_history";
  assert.equal(await standby.sql(h), await pg.sql(h));

  // Complete segments downstream equal the primary's.
  await pg.sql("SELECT pg_switch_wal()");
  // pg_receivewal must have completed every segment before the one the primary is now in.
  const current = parseWalFileName(
    await pg.sql("SELECT pg_walfile_name(pg_current_wal_lsn())"),
    SEG,
  );
  assert.equal(current?.kind, "segment");
  const wanted = segmentFileName(1, (current as { segno: bigint }).segno - 1n, SEG);
  await waitFor(() => Deno.statSync(`${out.path}/${wanted}`).isFile || undefined, {
    timeoutMs: 60_000,
    message: `downstream pg_receivewal did not complete ${wanted}`,
  }).catch((e) => {
    throw new Error(`${e.message}\n${receiver.stderr()}`);
  });
  let compared = 0;
  for (const e of Deno.readDirSync(out.path)) {
    if (!/^[0-9A-F]{24}$/.test(e.name)) continue;
    const mine = await Deno.readFile(`${out.path}/${e.name}`);
    const origin = await Deno.readFile(`${pg.walDir}/${e.name}`).catch(() => undefined);
    if (!origin) continue;
    assert.ok(mine.length === origin.length && mine.every((b, i) => b === origin[i]), e.name);
    compared++;
  }
  assert.ok(compared >= 3, `only ${compared} segments compared`);
  await receiver.stop("SIGINT");
  assert.equal(relay.exited, false);
});
