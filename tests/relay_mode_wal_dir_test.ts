// The WAL directory: relay mode creates a missing --wal-dir (mode 0700, as initdb creates a data
// directory) and listens at once, answering as a cascading standby does before it has WAL
// (FATAL 57P03) until the upstream's first WAL is durable, then streams. Directory mode has
// nothing to serve without the directory: it exits 1 saying so.

import assert from "node:assert/strict";
import { join } from "node:path";
import { silentLogger } from "../lib/log.ts";
import { WalRelay } from "../lib/server.ts";
import {
  assertSegmentsMatch,
  freePort,
  runWalrelay,
  startPrimary,
  startRelay,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { replPsql, spawnReceivewal, waitForFiles } from "./_relay_util.ts";

Deno.test("relay mode: a missing --wal-dir is created 0700, served at once, streamed into later", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  // The upstream is down when the relay starts.
  await pg.stop();
  await using base = await tempDir("walrelay-waldir-");
  const walDir = join(base.path, "relay", "wal");
  await using relay = await startRelay({
    walDir,
    args: ["--upstream", pg.conninfo()],
    timeoutMs: 30_000,
  });
  const log = () => relay.stderr();
  assert.equal((await Deno.stat(walDir)).mode! & 0o777, 0o700);
  assert.ok((await Deno.stat(join(base.path, "relay"))).isDirectory);

  // Listening, with nothing to serve yet: a clear error, not a refused connection.
  const early = await replPsql(relay.port, "IDENTIFY_SYSTEM");
  assert.notEqual(early.code, 0);
  assert.match(early.stderr, /FATAL: {2}the database system is not yet accepting connections/);
  assert.match(early.stderr, /No WAL has been received from the upstream server yet/);
  assert.match(log(), /listening, waiting for WAL from upstream/);

  await pg.start();
  await waitFor(async () => (await replPsql(relay.port, "IDENTIFY_SYSTEM")).code === 0, {
    timeoutMs: 60_000,
    intervalMs: 200,
    message: "the relay did not serve WAL once the upstream was up",
  }).catch((e) => {
    throw new Error(`${(e as Error).message}\n--- relay ---\n${log()}`);
  });
  assert.doesNotMatch(log(), /readdir|No such file or directory/);
  await using out = await tempDir("walrelay-waldir-rw-");
  await using rw = await spawnReceivewal(relay.port, ["-D", out.path]);
  await pg.pgbench(["-n", "-t", "300"]);
  const last = await pg.switchWal();
  await waitForFiles(walDir, [last], { sizes: 1 << 20 });
  await waitForFiles(out.path, [last], { proc: rw, sizes: 1 << 20 });
  await assertSegmentsMatch(walDir, pg.walDir);
  const received = await assertSegmentsMatch(out.path, pg.walDir);
  assert.ok(received.includes(last), received.join(", "));
});

Deno.test("directory mode: a missing --wal-dir exits 1 and is not created", async () => {
  await using base = await tempDir("walrelay-waldir-missing-");
  const walDir = join(base.path, "nope");
  const r = await runWalrelay(["serve", "--wal-dir", walDir, "--listen", "127.0.0.1:0"]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`directory "${walDir}" does not exist`));
  await assert.rejects(Deno.stat(walDir), Deno.errors.NotFound);
});

Deno.test("relay mode in-process: waiting for the upstream's first WAL, it shuts down cleanly", async () => {
  await using base = await tempDir("walrelay-waldir-inproc-");
  const walDir = join(base.path, "wal");
  const relay = await WalRelay.start({
    walDir,
    port: 0,
    logger: silentLogger,
    upstream: { conninfo: `host=127.0.0.1 port=${await freePort()} user=postgres` },
    http: { port: 0 },
  });
  assert.equal((await Deno.stat(walDir)).mode! & 0o777, 0o700);
  assert.throws(() => relay.store, /not open yet/);
  const r = await replPsql(relay.port, "IDENTIFY_SYSTEM");
  assert.match(r.stderr, /not yet accepting connections/);
  // The status server answers from the start: alive, not ready, and why.
  const get = async (path: string) => {
    const res = await fetch(new URL(path, relay.http!.url));
    return { status: res.status, body: await res.json() };
  };
  assert.equal((await get("healthz/live")).status, 200);
  const h = await get("healthz");
  assert.equal(h.status, 503);
  assert.ok(h.body.reasons.includes("no WAL received from the upstream yet"), h.body.reasons);
  assert.equal((await get("status")).status, 503);
  await relay.shutdown({ graceMs: 2000 });
  await relay.finished;
  await assert.rejects(relay.serving, /stopped before it had WAL/);
});
