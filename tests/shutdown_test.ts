// Shutdown and teardown of `walrelay serve` with real clients: SIGTERM drains every stream and ends
// it with `COPY 0`, a second SIGTERM exits at once, and a client killed with SIGKILL frees its sender.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSegmentsMatch,
  copyFiles,
  delay,
  isSegmentName,
  startRelay,
  tempDir,
  TESTDATA,
  waitFor,
} from "./_pg.ts";
import {
  formatLsn,
  generateArchive,
  listDir,
  lsn,
  RawReplClient,
  replPsql,
  runReceivewal,
  segmentStartLsn,
  spawnReceivewal,
  testdataInfo,
  touch,
  waitForFiles,
} from "./_relay_util.ts";
import { within } from "./_timers.ts";

// What pg_receivewal says when the server ends COPY with a CommandComplete (a controlled
// shutdown), as opposed to a connection that just drops.
const CONTROLLED_END = /replication stream was terminated before stop point/;
const ABRUPT_END = /unexpected termination of replication stream|server closed the connection/;

/** `p`, or an error after `ms` milliseconds (the timer is always cleared). */
async function withTimeout<T>(p: Promise<T>, ms: number, message: () => string): Promise<T> {
  const late = Symbol("late");
  const r = await within(p, ms, late);
  if (r === late) throw new Error(message());
  return r as T;
}

Deno.test("SIGTERM while pg_receivewal is caught up: COPY 0, exit 0, every byte delivered", async () => {
  const info = await testdataInfo();
  await using walDir = await tempDir("walrelay-shutdown-");
  const names = await copyFiles(TESTDATA, walDir.path);
  await using relay = await startRelay({ walDir: walDir.path });
  await using target = await tempDir("walrelay-shutdown-recv-");
  await touch(join(target.path, `${info.timelines[0]!.first_segment}.partial`));
  await using recv = await spawnReceivewal(relay.port, ["-D", target.path, "--no-loop"]);
  const complete = names.filter((n) => !n.endsWith(".partial"));
  await waitForFiles(target.path, complete, { proc: recv, timeoutMs: 20_000 });

  const status = await relay.stop("SIGTERM", 15_000);
  assert.equal(status.code, 0, relay.stderr());
  assert.match(relay.stderr(), /received SIGTERM: shutting down after sending all WAL/);
  assert.match(relay.stderr(), /LOG: {2}shut down/);
  await recv.status;
  assert.match(recv.stderr(), CONTROLLED_END, recv.stderr());
  assert.doesNotMatch(recv.stderr(), ABRUPT_END);

  const same = await assertSegmentsMatch(target.path, walDir.path);
  assert.deepEqual(same, complete.filter(isSegmentName));
  // Only the old timeline's .partial is left: nothing of timeline 2 is incomplete.
  assert.deepEqual(
    (await listDir(target.path)).filter((n) => n.endsWith(".partial")),
    ["000000010000000000000009.partial"],
  );
});

Deno.test("SIGTERM in the middle of a catch-up: the relay sends everything, then COPY 0", async () => {
  // 64 segments of 1 MB, more than socket buffers hold, so the client is really behind.
  const { dir: walDir, names } = await generateArchive({ walSegSize: 1, megabytes: 64 });
  await using _walDir = walDir;
  assert.ok(names.length >= 64, `${names.length} segments`);

  await using relay = await startRelay({ walDir: walDir.path });
  await using target = await tempDir("walrelay-shutdown-big-recv-");
  await touch(join(target.path, `${names[0]}.partial`));
  await using recv = await spawnReceivewal(relay.port, ["-D", target.path, "--no-loop"]);
  try {
    await waitFor(() => /starting replication/.test(relay.stderr()), {
      timeoutMs: 20_000,
      intervalMs: 5,
      message: `pg_receivewal did not start streaming:\n${recv.stderr()}`,
    });
    // Freeze the client: the relay's writes back up while it is asked to shut down.
    recv.kill("SIGSTOP");
    const before = (await listDir(target.path)).filter(isSegmentName).length;
    assert.ok(before < names.length, `client already had all ${before} segments`);
    relay.kill("SIGTERM");
    await delay(1500);
    assert.equal(relay.exited, false, "the relay exited before the client had all WAL");
    recv.kill("SIGCONT");

    const status = await withTimeout(
      relay.status,
      30_000,
      () => `relay did not exit after SIGTERM:\n${relay.stderr()}`,
    );
    assert.equal(status.code, 0, relay.stderr());
    await recv.status;
    assert.match(recv.stderr(), CONTROLLED_END, recv.stderr());
    assert.doesNotMatch(recv.stderr(), ABRUPT_END);
    const same = await assertSegmentsMatch(target.path, walDir.path);
    assert.deepEqual(same, names, `the client got ${same.length} of ${names.length} segments`);
    console.log(`  client had ${before} of ${names.length} segments at SIGTERM`);
  } finally {
    recv.kill("SIGCONT");
  }
});

Deno.test("a second SIGTERM ends a shutdown stuck on a client that never answers", async () => {
  await using walDir = await tempDir("walrelay-shutdown-stuck-");
  await copyFiles(TESTDATA, walDir.path);
  await using relay = await startRelay({ walDir: walDir.path });

  // Starts streaming, then never reads and never replies: the drain can never finish.
  using client = await RawReplClient.connect(relay.port);
  const r = await client.query("START_REPLICATION 0/900000 TIMELINE 2");
  assert.equal(r.copyBoth, true, JSON.stringify(r.error));
  await waitFor(() => /starting replication/.test(relay.stderr()), { timeoutMs: 5000 });

  relay.kill("SIGTERM");
  await waitFor(() => /received shutdown request/.test(relay.stderr()), { timeoutMs: 5000 });
  // No new connections while shutting down.
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: relay.port }).then((c) => c.close()),
    Deno.errors.ConnectionRefused,
  );
  await delay(2000);
  assert.equal(relay.exited, false, "the first SIGTERM did not wait for the client");

  const t = performance.now();
  relay.kill("SIGTERM");
  const status = await withTimeout(
    relay.status,
    5000,
    () => `second SIGTERM did not end the relay:\n${relay.stderr()}`,
  );
  const ms = performance.now() - t;
  assert.notEqual(status.code, 0);
  assert.ok(ms < 2000, `exit took ${ms.toFixed(0)} ms`);
  assert.match(relay.stderr(), /received SIGTERM again: exiting immediately/);
});

Deno.test("a client that stops reading is dropped after --sender-timeout, freeing its sender", async () => {
  const { dir: walDir, names } = await generateArchive({ walSegSize: 1, megabytes: 32 });
  await using _walDir = walDir;
  await using relay = await startRelay({
    walDir: walDir.path,
    args: ["--max-senders", "1", "--sender-timeout", "2"],
  });
  // Never reads, never replies: the relay's writes stall on full socket buffers.
  using raw = await RawReplClient.connect(relay.port);
  const start = formatLsn(segmentStartLsn(names[0]!, 1 << 20));
  const r = await raw.query(`START_REPLICATION ${start} TIMELINE 1`);
  assert.equal(r.copyBoth, true, JSON.stringify(r.error));
  await delay(500);
  await assert.rejects(RawReplClient.connect(relay.port), /"C":"53300"/);

  // Dropped at the timeout although a write is pending: the sender is free again.
  await waitFor(async () => (await replPsql(relay.port, "IDENTIFY_SYSTEM")).success, {
    timeoutMs: 8000,
    message: `the stalled client was never dropped:\n${relay.stderr()}`,
  });
  await waitFor(
    () =>
      /terminating walsender process due to replication timeout/.test(relay.stderr()) || undefined,
    { timeoutMs: 5000, message: `no timeout logged:\n${relay.stderr()}` },
  );
  // Nothing is left to hold a shutdown.
  const t = performance.now();
  assert.equal((await relay.stop("SIGTERM", 10_000)).code, 0, relay.stderr());
  assert.ok(performance.now() - t < 5000, relay.stderr());
});

Deno.test("a pg_receivewal killed with SIGKILL frees its sender slot (--max-senders 1)", async () => {
  const info = await testdataInfo();
  await using walDir = await tempDir("walrelay-kill9-");
  const names = await copyFiles(TESTDATA, walDir.path);
  await using relay = await startRelay({ walDir: walDir.path, args: ["--max-senders", "1"] });
  const first = `${info.timelines[0]!.first_segment}.partial`;
  const complete = names.filter((n) => !n.endsWith(".partial"));

  await using target1 = await tempDir("walrelay-kill9-a-");
  await touch(join(target1.path, first));
  await using recv1 = await spawnReceivewal(relay.port, ["-D", target1.path, "--no-loop"]);
  await waitForFiles(target1.path, complete, { proc: recv1, timeoutMs: 20_000 });
  // The limit is in force while it streams.
  await assert.rejects(
    RawReplClient.connect(relay.port),
    /"C":"53300".*number of requested standby connections exceeds max_wal_senders/,
  );

  recv1.kill("SIGKILL");
  await recv1.status;
  await waitFor(async () => (await replPsql(relay.port, "IDENTIFY_SYSTEM")).success, {
    timeoutMs: 5000,
    message: `the killed client's sender was not freed:\n${relay.stderr()}`,
  });

  // A raw client that vanishes (closes with unread WAL) while streaming frees it as well.
  const raw = await RawReplClient.connect(relay.port);
  try {
    const r = await raw.query("START_REPLICATION 0/600000 TIMELINE 1");
    assert.equal(r.copyBoth, true, JSON.stringify(r.error));
    await raw.readMessage();
  } finally {
    raw.close();
  }
  await waitFor(async () => (await replPsql(relay.port, "IDENTIFY_SYSTEM")).success, {
    timeoutMs: 5000,
    message: `the vanished client's sender was not freed:\n${relay.stderr()}`,
  });

  await using target2 = await tempDir("walrelay-kill9-b-");
  await touch(join(target2.path, first));
  const r = await runReceivewal(relay.port, [
    "-D",
    target2.path,
    "--no-loop",
    "--endpos",
    // One byte short of the end: pg_receivewal stops once it is past --endpos.
    formatLsn(lsn(info.timelines[1]!.segment_end_lsn!) - 1n),
  ]);
  assert.equal(r.code, 0, `${r.stderr}\n--- relay ---\n${relay.stderr()}`);
  assert.deepEqual(
    await assertSegmentsMatch(target2.path, walDir.path),
    complete.filter(isSegmentName),
  );
});
