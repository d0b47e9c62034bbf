// What operators read: one line per connection start and end (address, user,
// application_name, start LSN, bytes sent, reason), every error with its SQLSTATE, and a periodic
// progress line for a client catching up; as text or JSON.

import assert from "node:assert/strict";
import { createLogger } from "../lib/log.ts";
import { PgClient } from "../lib/pgwire/client.ts";
import { WalRelay } from "../lib/server.ts";
import { formatLsn } from "../lib/wal/lsn.ts";
import { delay } from "./_pg.ts";
import { generateArchive } from "./_relay_util.ts";

Deno.test("logs: connection lines, errors with SQLSTATE, catch-up progress, JSON", async () => {
  // More WAL than the socket buffers hold, so a slow reader keeps the sender catching up.
  const { dir } = await generateArchive({ walSegSize: 1, megabytes: 24 });
  await using _dir = dir;
  const lines: Record<string, unknown>[] = [];
  const relay = await WalRelay.start({
    walDir: dir.path,
    port: 0,
    watch: false,
    logger: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }),
    timeouts: { progressLog: 100 },
  });
  try {
    const c = await PgClient.connect({
      hostname: "127.0.0.1",
      port: relay.port,
      user: "repl",
      params: { database: "replication", replication: "true", application_name: "logtest" },
    });
    await c.query("SELECT 1").catch(() => {});
    const start = relay.store.segments(1)[0]!.segno * BigInt(relay.store.identity.segmentSize);
    assert.equal(
      await c.startReplication(`START_REPLICATION ${formatLsn(start)} TIMELINE 1`),
      "copy",
    );
    // Read slowly, so the sender stays in catch-up long enough to report its progress.
    for (let i = 0; i < 10; i++) {
      await c.nextRaw();
      await delay(40);
    }
    c.close();
    await delay(200);
  } finally {
    relay.close();
    await relay.finished;
  }
  const find = (msg: string | RegExp) =>
    lines.find((l) => typeof msg === "string" ? l.msg === msg : msg.test(String(l.msg)));
  const authorized = find("replication connection authorized");
  assert.equal(authorized?.host, "127.0.0.1");
  assert.equal(authorized?.user, "repl");
  assert.equal(authorized?.application_name, "logtest");
  const sqlError = find("cannot execute SQL commands in WAL sender for physical replication");
  assert.equal(sqlError?.sqlstate, "0A000");
  const started = find("starting replication");
  assert.match(String(started?.start_lsn), /^0\/[0-9A-F]+$/);
  const progress = find("client catching up");
  assert.ok(progress, `no progress line in ${JSON.stringify(lines.map((l) => l.msg))}`);
  assert.ok(Number(progress.bytes_behind) > 0);
  assert.ok(typeof progress.rate_bytes_per_second === "number");
  const end = find("disconnection");
  assert.equal(end?.application_name, "logtest");
  assert.ok(Number(end?.bytes_sent) > 0);
  assert.equal(end?.reason, "client closed connection");
  for (const l of lines) {
    assert.ok(typeof l.time === "string" && typeof l.level === "string", JSON.stringify(l));
  }
});
