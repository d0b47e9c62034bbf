// Relay mode when the upstream's history forks below the relay's end: a standby S falls behind
// its primary P, P takes more writes (the relay gets them), P crashes and S is promoted. The relay
// follows S by a multi-host conninfo: it sets its WAL above the fork aside in
// .walrelay/diverged/, continues on S's timeline, clamps its slots to the fork, and a second relay
// behind it does the same. A standby built from S and pointed at the relay converges; a
// pg_receivewal behind the relay gets S's segments byte-identical.

import assert from "node:assert/strict";
import {
  assertSegmentsMatch,
  basebackup,
  firstDifference,
  freePort,
  startPrimary,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";
import {
  formatLsn,
  listDir,
  lsn,
  replPsql,
  replPsqlOk,
  segmentStartLsn,
  spawnReceivewal,
  waitForFiles,
} from "./_relay_util.ts";
import { startRelayMode, waitSame } from "./_relay_mode_util.ts";

const SEG = 1 << 20;

function segName(tli: number, l: bigint): string {
  const segno = l / BigInt(SEG);
  const hex = (v: bigint | number) => v.toString(16).toUpperCase().padStart(8, "0");
  return hex(tli) + hex(segno / 4096n) + hex(segno % 4096n);
}

Deno.test("relay mode: a divergent promotion sets the WAL above the fork aside", async () => {
  const fast = { fsync: "off", full_page_writes: "off" };
  await using p = await startPrimary({ walSegSize: 1, conf: fast });
  await p.sql("CREATE TABLE t (x int)");
  await p.sql("INSERT INTO t SELECT generate_series(1, 30000)");
  await using sBackup = await basebackup(p);
  await using s = await startStandby({
    dataDir: sBackup.dataDir,
    primaryConninfo: p.conninfo({ application_name: "s" }),
    conf: fast,
  });
  await using dir = await tempDir("walrelay-div-");
  const http = await freePort();
  const upstream = (name: string) =>
    `host=127.0.0.1,127.0.0.1 port=${p.port},${s.port} user=postgres ` +
    `target_session_attrs=read-write application_name=${name}`;
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: upstream("relay"),
    args: ["--http", `127.0.0.1:${http}`],
  });
  // A third relay is down while the upstream fails over: it meets the fork when it starts again.
  await using dir3 = await tempDir("walrelay-div3-");
  await using relay3 = await startRelayMode({ walDir: dir3.path, upstream: upstream("relay3") });
  await using dir2 = await tempDir("walrelay-div2-");
  await using relay2 = await startRelayMode({
    walDir: dir2.path,
    upstream: relay.conninfo({ application_name: "relay2" }),
  });
  const logs = () => `--- relay ---\n${relay.stderr()}\n--- relay2 ---\n${relay2.stderr()}`;

  await p.sql("INSERT INTO t SELECT generate_series(1, 30000)");
  await s.waitForReplay(await p.currentLsn());
  // S falls behind: it stops while P goes on, and the relays get P's WAL.
  await s.stop("fast");
  await p.sql("INSERT INTO t SELECT generate_series(1, 60000)");
  const pEnd = lsn(await p.currentLsn());
  await waitFor(async () => {
    const st = await (await fetch(`http://127.0.0.1:${http}/status`)).json();
    return st.upstream.flushed_lsn !== null && lsn(st.upstream.flushed_lsn) >= pEnd;
  }, { timeoutMs: 30_000, message: "the relay did not receive P's WAL" });
  await waitFor(
    async () =>
      (await p.sql(
        `SELECT flush_lsn >= '${formatLsn(pEnd)}' FROM pg_stat_replication ` +
          `WHERE application_name = 'relay3'`,
      )) === "t",
    { timeoutMs: 30_000, message: "relay3 did not receive P's WAL" },
  );
  await relay3.stop();
  // A slot on the relay, reserved at its end (above the fork to come).
  await replPsqlOk(relay.port, "CREATE_REPLICATION_SLOT keep PHYSICAL RESERVE_WAL");
  await waitFor(async () => (await replPsql(relay2.port, "IDENTIFY_SYSTEM")).success, {
    message: "relay2 not ready",
  });
  await p.stop("immediate");
  await s.start();
  await s.promote();
  const history = await Deno.readTextFile(`${s.walDir}/00000002.history`);
  const fork = lsn(/^1\t([0-9A-F]+\/[0-9A-F]+)/m.exec(history)![1]!);
  assert.ok(fork < pEnd, `fork ${formatLsn(fork)} not below P's end ${formatLsn(pEnd)}`);
  await s.sql("INSERT INTO t SELECT generate_series(1, 20000)");
  await using relay3b = await startRelayMode({ walDir: dir3.path, upstream: upstream("relay3") });

  // The relay ends on S's timeline.
  await waitFor(() => /switched to timeline 2/.test(relay.stderr()), {
    timeoutMs: 60_000,
    message: "the relay did not switch to timeline 2",
  }).catch((e) => {
    throw new Error(`${(e as Error).message}\n${logs()}`);
  });
  const log = relay.stderr();
  const where = `.walrelay/diverged/00000001-${fork.toString(16).toUpperCase().padStart(16, "0")}`;
  assert.match(
    log,
    new RegExp(
      `set aside WAL from ${formatLsn(fork)} to [0-9A-F]+/[0-9A-F]+ on timeline 1 .*` +
        where.replaceAll(".", "\\."),
    ),
  );
  // What lies above the fork was moved, not deleted: P's bytes, in P's files' names.
  const aside = await listDir(`${dir.path}/${where}`);
  const forkSeg = segName(1, fork);
  assert.ok(aside.includes(forkSeg) || aside.includes(`${forkSeg}.partial`), aside.join(", "));
  for (const name of aside) {
    const mine = await Deno.readFile(`${dir.path}/${where}/${name}`);
    const theirs = await Deno.readFile(`${p.walDir}/${name.replace(/\.partial$/, "")}`);
    const start = segmentStartLsn(name, SEG);
    const upto = Number((pEnd < start + BigInt(SEG) ? pEnd : start + BigInt(SEG)) - start);
    assert.equal(firstDifference(mine.subarray(0, upto), theirs.subarray(0, upto)), -1, name);
  }
  // The fork's segment on timeline 1 holds WAL up to the fork only.
  const names = await listDir(dir.path);
  assert.ok(names.includes(`${forkSeg}.partial`), names.join(", "));
  assert.ok(!names.includes(forkSeg), names.join(", "));
  const status = await (await fetch(`http://127.0.0.1:${http}/status`)).json();
  assert.equal(status.upstream.divergence?.timeline, 1);
  assert.equal(status.upstream.divergence?.fork_lsn, formatLsn(fork));
  assert.equal(status.upstream.divergence?.new_timeline, 2);
  // The slot reserved above the fork was clamped to it.
  const slot = status.slots.find((x: { slot_name: string }) => x.slot_name === "keep");
  assert.equal(slot?.restart_lsn, formatLsn(fork), JSON.stringify(status.slots));
  // A client beyond the fork on timeline 1 gets PostgreSQL's error.
  const beyond = await replPsql(
    relay.port,
    `START_REPLICATION ${formatLsn(pEnd)} TIMELINE 1`,
  );
  assert.ok(!beyond.success);
  assert.match(
    beyond.stderr,
    new RegExp(
      `requested starting point ${formatLsn(pEnd)} on timeline 1 is not in this server's history`,
    ),
  );

  // A standby built afresh from S, fed by the relay, starts and converges.
  await using freshBackup = await basebackup(s);
  await using fresh = await startStandby({
    dataDir: freshBackup.dataDir,
    primaryConninfo: relay.conninfo({ application_name: "fresh" }),
    conf: fast,
  });
  await s.sql("INSERT INTO t SELECT generate_series(1, 10000)");
  const digest = "SELECT count(*), sum(x) FROM t";
  await waitSame(fresh, digest, await s.sql(digest), logs);

  // pg_receivewal from the segment before the fork: timeline 1 up to the fork, then timeline 2.
  await using out = await tempDir("walrelay-div-rw-");
  const before = segName(1, fork - BigInt(SEG));
  await Deno.copyFile(`${s.walDir}/${before}`, `${out.path}/${before}`);
  await using rw = await spawnReceivewal(relay.port, ["-D", out.path]);
  const last = await s.switchWal();
  assert.match(last, /^00000002/);
  await waitForFiles(out.path, ["00000002.history", last], { proc: rw, timeoutMs: 60_000 })
    .catch((e) => {
      throw new Error(`${(e as Error).message}\n--- pg_receivewal ---\n${rw.stderr()}\n${logs()}`);
    });
  await waitForFiles(out.path, [last], { sizes: SEG });
  const got = await assertSegmentsMatch(out.path, s.walDir);
  assert.ok(got.includes(segName(2, fork)), got.join(", "));
  const tli1 = await Deno.readFile(`${out.path}/${forkSeg}.partial`);
  // S keeps its old timeline's last segment under its own name (a .partial only when archiving).
  const sTli1 = await Deno.readFile(`${s.walDir}/${forkSeg}`);
  const n = Number(fork - segmentStartLsn(forkSeg, SEG));
  assert.equal(firstDifference(tli1.subarray(0, n), sTli1.subarray(0, n)), -1);
  await assertSegmentsMatch(dir.path, s.walDir);

  // The second relay followed: it too set its WAL above the fork aside and is on timeline 2.
  await waitFor(() => /switched to timeline 2/.test(relay2.stderr()), {
    timeoutMs: 60_000,
    message: "relay2 did not switch to timeline 2",
  }).catch((e) => {
    throw new Error(`${(e as Error).message}\n${logs()}`);
  });
  assert.ok((await listDir(`${dir2.path}/${where}`)).length > 0);
  await waitForFiles(dir2.path, [last], { proc: relay2, sizes: SEG, timeoutMs: 30_000 });
  await assertSegmentsMatch(dir2.path, s.walDir);

  // The relay that was down resumed from its directory, met the fork, and set its WAL aside too.
  await waitFor(() => /switched to timeline 2/.test(relay3b.stderr()), {
    timeoutMs: 60_000,
    message: "relay3 did not switch to timeline 2",
  }).catch((e) => {
    throw new Error(`${(e as Error).message}\n--- relay3 ---\n${relay3b.stderr()}`);
  });
  assert.match(relay3b.stderr(), /set aside WAL from/);
  assert.ok((await listDir(`${dir3.path}/${where}`)).length > 0);
  await waitForFiles(dir3.path, [last], { proc: relay3b, sizes: SEG, timeoutMs: 30_000 });
  await assertSegmentsMatch(dir3.path, s.walDir);
});
