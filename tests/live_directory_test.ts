// A live directory: a primary under pgbench load, pg_receivewal --synchronous filling a directory
// with a growing zero-padded .partial, the relay serving that directory, and downstream of the
// relay a real standby and another pg_receivewal. When the load stops the standby has the
// primary's data and the downstream segments are byte-identical to the primary's.
// Also: segments removed under a streaming client (pg_archivecleanup) fail that client only.

import assert from "node:assert/strict";
import {
  basebackup,
  delay,
  pgBin,
  run,
  startPrimary,
  startRelay,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { PgClient } from "../lib/pgwire/client.ts";
import { PgServerError } from "../lib/pgwire/server_error.ts";
import { formatLsn } from "../lib/wal/lsn.ts";
import { generateArchive, segmentStartLsn, spawnReceivewal } from "./_relay_util.ts";

Deno.test("live: pgbench → pg_receivewal --synchronous → relay → standby + pg_receivewal", async () => {
  await using pg = await startPrimary({ walSegSize: 1, conf: { wal_keep_size: "512MB" } });
  await pg.pgbench(["-i", "-s", "2"]);
  await using dir = await tempDir("walrelay_live_");
  const upstreamDir = `${dir.path}/upstream`;
  const downstreamDir = `${dir.path}/downstream`;
  await Deno.mkdir(upstreamDir);
  await Deno.mkdir(downstreamDir);

  // pg_receivewal from the primary, flushing each write: the directory the relay serves.
  await pg.sql("SELECT pg_switch_wal()");
  await using upstream = await spawnReceivewal(pg.port, [
    "-D",
    upstreamDir,
    "--synchronous",
    "-n",
  ]);
  await waitFor(async () => {
    for await (const e of Deno.readDir(upstreamDir)) if (e.name.endsWith(".partial")) return true;
    return undefined;
  }, { message: "pg_receivewal never created its .partial" });

  // The standby's base backup comes after pg_receivewal started, so its WAL is in the directory.
  await using backup = await basebackup(pg);
  await using relay = await startRelay({ walDir: upstreamDir });
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: `host=127.0.0.1 port=${relay.port} user=postgres application_name=live1`,
  });

  // A downstream archiver of the relay, starting at the first segment the relay holds.
  const first = [...Deno.readDirSync(upstreamDir)].map((e) => e.name).filter((n) =>
    /^[0-9A-F]{24}(\.partial)?$/.test(n)
  ).sort()[0]!;
  await Deno.writeFile(`${downstreamDir}/${first.slice(0, 24)}.partial`, new Uint8Array());
  await using downstream = await spawnReceivewal(relay.port, [
    "-D",
    downstreamDir,
    "-n",
  ]);

  await pg.pgbench(["-T", "6", "-c", "2", "-j", "1"]);
  await pg.sql("CHECKPOINT");
  await pg.sql("SELECT pg_switch_wal()");
  await pg.sql("SELECT pg_switch_wal()");
  const target = await pg.currentLsn();
  // The standby reaches the primary through pg_receivewal's directory and the relay.
  await standby.waitForReplay(target, 60_000);
  const q = "SELECT count(*), sum(abalance), sum(bbalance) FROM pgbench_accounts " +
    "JOIN pgbench_branches USING (bid)";
  assert.equal(await standby.sql(q), await pg.sql(q));
  const history = "SELECT count(*), sum(delta) FROM pgbench_history";
  assert.equal(await standby.sql(history), await pg.sql(history));

  // Downstream segments equal the primary's, byte for byte.
  const targetSeg = BigInt("0x" + target.split("/")[0]) * 0x1_0000_0000n +
    BigInt("0x" + target.split("/")[1]);
  await waitFor(() => {
    const names = [...Deno.readDirSync(downstreamDir)].map((e) => e.name);
    const complete = names.filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
    const last = complete.at(-1);
    return last && BigInt("0x" + last.slice(16)) * 0x100000n + 0x100000n >= targetSeg - 0x100000n
      ? true
      : undefined;
  }, { timeoutMs: 60_000, message: "downstream pg_receivewal did not catch up" });
  let compared = 0;
  for (const e of Deno.readDirSync(downstreamDir)) {
    if (!/^[0-9A-F]{24}$/.test(e.name)) continue;
    const mine = await Deno.readFile(`${downstreamDir}/${e.name}`);
    const origin = await Deno.readFile(`${pg.walDir}/${e.name}`).catch(() => undefined);
    if (!origin) continue; // recycled on the primary already
    assert.ok(mine.length === origin.length && mine.every((b, i) => b === origin[i]), e.name);
    compared++;
  }
  assert.ok(compared >= 5, `only ${compared} segments compared`);
  await downstream.stop("SIGINT");
  await upstream.stop("SIGINT");
  assert.equal(relay.exited, false);
});

Deno.test("live: segments removed under a streaming client give it 58P01; others continue", async () => {
  // More WAL than the socket buffers hold (about 4 MB), so the slow client is still mid-way
  // through the archive when it is cleaned up.
  const { dir, names } = await generateArchive({ walSegSize: 1, megabytes: 16 });
  await using _dir = dir;
  await using relay = await startRelay({ walDir: dir.path });
  const firstLsn = segmentStartLsn(names[0]!, 1024 * 1024);
  const lastName = names.at(-1)!;
  const slow = await PgClient.connect({ hostname: "127.0.0.1", port: relay.port, user: "a" });
  const other = await PgClient.connect({ hostname: "127.0.0.1", port: relay.port, user: "b" });
  try {
    // The slow client reads one message, then the archive is cleaned up under it.
    assert.equal(
      await slow.startReplication(`START_REPLICATION ${formatLsn(firstLsn)} TIMELINE 1`),
      "copy",
    );
    assert.equal((await slow.nextRaw()).type, "d");
    const cleanup = await run([await pgBin("pg_archivecleanup"), dir.path, lastName]);
    assert.equal(cleanup.code, 0, cleanup.stderr);
    await delay(1500); // the relay's rescan notices
    let error: PgServerError | undefined;
    let bytes = 0;
    try {
      while (true) {
        const m = await slow.next();
        if (m.type === "d") bytes += m.body.length;
      }
    } catch (e) {
      if (e instanceof PgServerError) error = e;
      else throw e;
    }
    assert.ok(error, "the client must get an ErrorResponse");
    assert.equal(error.code, "58P01");
    assert.match(error.message, /^requested WAL segment [0-9A-F]{24} has already been removed$/);
    assert.ok(bytes < (names.length - 1) * 1024 * 1024, "it got less than the whole archive");

    // Another client streams what remains.
    const remaining = segmentStartLsn(lastName, 1024 * 1024);
    assert.equal(
      await other.startReplication(`START_REPLICATION ${formatLsn(remaining)} TIMELINE 1`),
      "copy",
    );
    let got = 0;
    while (got < 1024 * 1024) {
      const m = await other.nextRaw();
      if (m.type === "d" && m.body[0] === 0x77) got += m.body.length - 25;
    }
    assert.equal(got, 1024 * 1024);
  } finally {
    slow.close();
    other.close();
  }
});
