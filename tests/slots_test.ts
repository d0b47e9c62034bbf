// Replication slots on `walrelay serve`, driven by pg_receivewal and psql "replication=true":
// create, stream with (restart_lsn follows the client's flush), persist across a restart, drop,
// duplicates, unknown slots, and temporary slots.

import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSegmentsMatch, copyFiles, startRelay, tempDir, TESTDATA, waitFor } from "./_pg.ts";
import {
  RawReplClient,
  replPsql,
  replPsqlOk,
  runReceivewal,
  spawnReceivewal,
  testdataInfo,
  touch,
} from "./_relay_util.ts";

Deno.test("pg_receivewal creates a slot, streams with it, and the slot survives a relay restart", async () => {
  const info = await testdataInfo();
  await using walDir = await tempDir("walrelay-slots-");
  await copyFiles(TESTDATA, walDir.path);
  const relay1 = await startRelay({ walDir: walDir.path });
  try {
    const port = relay1.port;
    const created = await runReceivewal(port, ["--create-slot", "--slot", "s1"]);
    assert.equal(created.code, 0, created.stderr);
    // A fresh physical slot has no restart_lsn yet.
    assert.equal(await replPsqlOk(port, "READ_REPLICATION_SLOT s1"), "physical||");

    const dup = await runReceivewal(port, ["--create-slot", "--slot", "s1"]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /replication slot "s1" already exists/);
    const again = await runReceivewal(port, ["--create-slot", "--if-not-exists", "--slot", "s1"]);
    assert.equal(again.code, 0, again.stderr);

    await using target = await tempDir("walrelay-slot-recv-");
    await touch(join(target.path, `${info.timelines[0]!.first_segment}.partial`));
    // -s 1: status updates every second; with a slot they carry the flush position.
    await using recv = await spawnReceivewal(port, [
      "-D",
      target.path,
      "--slot",
      "s1",
      "--no-loop",
      "-s",
      "1",
    ]);
    // Everything flushed: the slot's restart_lsn is the end of the last segment, on timeline 2.
    await waitFor(
      async () => {
        if (recv.exited) throw new Error(`pg_receivewal exited:\n${recv.stderr()}`);
        return (await replPsqlOk(port, "READ_REPLICATION_SLOT s1")) === "physical|0/C00000|2";
      },
      { timeoutMs: 20_000, message: "restart_lsn did not advance to 0/C00000 on timeline 2" },
    ).catch((e) => {
      throw new Error(
        `${(e as Error).message}\n${recv.stderr()}\n--- relay ---\n${relay1.stderr()}`,
      );
    });
    // The slot is busy while pg_receivewal streams with it.
    const busy = await replPsql(port, "START_REPLICATION SLOT s1 PHYSICAL 0/600000 TIMELINE 1");
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, /55006: replication slot "s1" is active for PID \d+/);

    const status = await recv.stop("SIGINT");
    assert.equal(status.code, 0, recv.stderr());
    await assertSegmentsMatch(target.path, walDir.path);

    // SIGTERM is a clean shutdown; the slot is on disk and loads again.
    assert.equal((await relay1.stop("SIGTERM", 15_000)).code, 0, relay1.stderr());
  } finally {
    await relay1[Symbol.asyncDispose]();
  }

  await using relay2 = await startRelay({ walDir: walDir.path });
  const port = relay2.port;
  assert.equal(await replPsqlOk(port, "READ_REPLICATION_SLOT s1"), "physical|0/C00000|2");

  // Into an empty directory pg_receivewal starts where the slot says (READ_REPLICATION_SLOT).
  await using empty = await tempDir("walrelay-slot-resume-");
  await using resume = await spawnReceivewal(port, ["-D", empty.path, "--slot", "s1", "--no-loop"]);
  await waitFor(() => /starting log streaming at 0\/C00000 \(timeline 2\)/.test(resume.stderr()), {
    timeoutMs: 10_000,
    message: `pg_receivewal did not resume from the slot:\n${resume.stderr()}`,
  });
  await waitFor(() => /starting replication .*slot=s1/.test(relay2.stderr()), {
    timeoutMs: 10_000,
  });
  assert.equal((await resume.stop("SIGINT")).code, 0, resume.stderr());

  const dropped = await runReceivewal(port, ["--drop-slot", "--slot", "s1"]);
  assert.equal(dropped.code, 0, dropped.stderr);
  // An unknown slot reads as one row of NULLs, and cannot be streamed from.
  assert.equal(await replPsqlOk(port, "READ_REPLICATION_SLOT s1"), "||");
  const unknown = await replPsql(port, "START_REPLICATION SLOT s1 PHYSICAL 0/600000 TIMELINE 1");
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /42704: replication slot "s1" does not exist/);
  const dropAgain = await runReceivewal(port, ["--drop-slot", "--slot", "s1"]);
  assert.notEqual(dropAgain.code, 0);
  assert.match(dropAgain.stderr, /replication slot "s1" does not exist/);
});

Deno.test("a temporary slot lives as long as the connection that created it", async () => {
  await using walDir = await tempDir("walrelay-tempslot-");
  await copyFiles(TESTDATA, walDir.path);
  await using relay = await startRelay({ walDir: walDir.path });

  using client = await RawReplClient.connect(relay.port);
  const r = await client.query("CREATE_REPLICATION_SLOT tmp1 TEMPORARY PHYSICAL");
  assert.equal(r.error, undefined);
  assert.deepEqual(r.rows, [["tmp1", "0/0", null, null]]);
  assert.deepEqual(r.tags, ["CREATE_REPLICATION_SLOT"]);
  // Seen from another connection while its creator is connected.
  assert.equal(await replPsqlOk(relay.port, "READ_REPLICATION_SLOT tmp1"), "physical||");
  const dup = await replPsql(relay.port, "CREATE_REPLICATION_SLOT tmp1 PHYSICAL");
  assert.match(dup.stderr, /42710: replication slot "tmp1" already exists/);

  client.close();
  await waitFor(
    async () => (await replPsqlOk(relay.port, "READ_REPLICATION_SLOT tmp1")) === "||",
    { timeoutMs: 5000, message: "the temporary slot outlived its connection" },
  );
  // Never written to disk: a restart cannot bring it back.
  assert.equal((await relay.stop("SIGTERM", 15_000)).code, 0, relay.stderr());
  await using relay2 = await startRelay({ walDir: walDir.path });
  assert.equal(await replPsqlOk(relay2.port, "READ_REPLICATION_SLOT tmp1"), "||");
});
