// Local faults in relay mode: a full disk and a failed fdatasync are the relay's own problems, not
// the upstream's. They are logged in PostgreSQL's words, /healthz is not ready while WAL cannot be
// written, /metrics counts them by operation, and once the fault is gone the relay re-streams from
// its durable end and a pg_receivewal behind it ends up byte-identical to the primary.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSegmentsMatch,
  freePort,
  isRoot,
  REPO_ROOT,
  run,
  runOk,
  startPrimary,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { spawnReceivewal, waitForFiles } from "./_relay_util.ts";
import { startRelayMode } from "./_relay_mode_util.ts";

const SEG = 1 << 20;

/** Waits until the relay's log matches `re`; fails with the log so far. */
async function waitLog(log: () => string, re: RegExp, timeoutMs: number): Promise<void> {
  await waitFor(() => re.test(log()), { timeoutMs, message: `no ${re} in the relay's log` })
    .catch((e) => {
      throw new Error(`${(e as Error).message}\n--- relay ---\n${log()}`);
    });
}

/** GET on the relay's status server: status code and body. */
async function get(httpPort: number, path: string): Promise<{ status: number; text: string }> {
  const r = await fetch(`http://127.0.0.1:${httpPort}${path}`);
  return { status: r.status, text: await r.text() };
}

/** The value of a `/metrics` sample, or 0 when absent. */
async function metric(httpPort: number, sample: string): Promise<number> {
  const { text } = await get(httpPort, "/metrics");
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

Deno.test({
  name: "relay mode: a full disk is the relay's fault, in PostgreSQL's words, and passes",
  ignore: !isRoot(),
  async fn() {
    await using pg = await startPrimary({ walSegSize: 1 });
    await pg.pgbench(["-i", "-s", "1", "-q"]);
    await using mnt = await tempDir("walrelay-tmpfs-");
    // Two segments' room: the third one's zero fill runs out of space.
    await runOk(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt.path]);
    try {
      const httpPort = await freePort();
      await using relay = await startRelayMode({
        walDir: mnt.path,
        upstream: pg.conninfo(),
        args: ["--http", `127.0.0.1:${httpPort}`],
      });
      const log = () => relay.stderr();
      await using out = await tempDir("walrelay-tmpfs-rw-");
      await using rw = await spawnReceivewal(relay.port, ["-D", out.path]);

      await pg.pgbench(["-n", "-t", "3000", "-c", "2"]);
      await waitLog(log, /could not write to file ".*": No space left on device/, 60_000);
      assert.doesNotMatch(log(), /upstream connection failed: No space left/);
      const h = await get(httpPort, "/healthz");
      assert.equal(h.status, 503, h.text);
      assert.match(JSON.parse(h.text).reasons.join("\n"), /WAL cannot be written: could not write/);
      assert.ok(
        await metric(httpPort, 'walrelay_store_write_failures_total{operation="extend"}') >= 1,
        (await get(httpPort, "/metrics")).text,
      );
      assert.equal(await metric(httpPort, "walrelay_store_writable"), 0);

      // Room again: the relay resumes from its durable end by itself.
      await runOk(["mount", "-o", "remount,size=64m", mnt.path]);
      await waitFor(async () => (await get(httpPort, "/healthz")).status === 200, {
        timeoutMs: 90_000,
        message: "the relay did not become ready again",
      }).catch((e) => {
        throw new Error(`${(e as Error).message}\n--- relay ---\n${log()}`);
      });
      assert.match(log(), /WAL is being written again/);
      const last = await pg.switchWal();
      await waitForFiles(mnt.path, [last], { sizes: SEG, timeoutMs: 60_000 });
      await waitForFiles(out.path, [last], { proc: rw, sizes: SEG, timeoutMs: 60_000 });
      await assertSegmentsMatch(mnt.path, pg.walDir);
      const received = await assertSegmentsMatch(out.path, pg.walDir);
      assert.ok(received.includes(last), received.join(", "));
      assert.equal(await metric(httpPort, "walrelay_store_writable"), 1);
    } finally {
      // The relay and pg_receivewal are gone by now (disposed above, in reverse order).
      await run(["umount", mnt.path]);
    }
  },
});

Deno.test("relay mode: a failed fdatasync is reported, the WAL written again, nothing lost", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await using shim = await tempDir("walrelay-shim-");
  const so = join(shim.path, "fail_fdatasync.so");
  await runOk([
    "cc",
    "-shared",
    "-fPIC",
    "-o",
    so,
    join(REPO_ROOT, "tests", "fault", "fail_fdatasync.c"),
    "-ldl",
  ]);
  const trigger = join(shim.path, "fail-once");
  await using dir = await tempDir("walrelay-fdatasync-");
  const httpPort = await freePort();
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    args: ["--http", `127.0.0.1:${httpPort}`],
    env: { LD_PRELOAD: so, WALRELAY_FAIL_FDATASYNC: trigger },
  });
  const log = () => relay.stderr();
  await using out = await tempDir("walrelay-fdatasync-rw-");
  await using rw = await spawnReceivewal(relay.port, ["-D", out.path]);
  await pg.pgbench(["-n", "-t", "200"]);

  // The next fdatasync fails once with EIO, as a failing disk reports it.
  await Deno.writeTextFile(trigger, "");
  await pg.pgbench(["-n", "-t", "500"]);
  await waitLog(log, /could not fdatasync file ".*\.partial": Input\/output error/, 30_000);
  assert.doesNotMatch(log(), /upstream connection failed: Input\/output error/);
  assert.equal(
    await metric(httpPort, 'walrelay_store_write_failures_total{operation="fdatasync"}'),
    1,
  );
  await waitLog(log, /WAL is being written again/, 30_000);

  await pg.pgbench(["-n", "-t", "500"]);
  const last = await pg.switchWal();
  await waitForFiles(dir.path, [last], { sizes: SEG, timeoutMs: 60_000 });
  await waitForFiles(out.path, [last], { proc: rw, sizes: SEG, timeoutMs: 60_000 });
  await assertSegmentsMatch(dir.path, pg.walDir);
  const received = await assertSegmentsMatch(out.path, pg.walDir);
  assert.ok(received.length >= 2, received.join(", "));
  assert.equal((await get(httpPort, "/healthz")).status, 200);
});
