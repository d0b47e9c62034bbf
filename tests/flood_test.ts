// A connection flood above the limits and slow-loris clients while a real pg_receivewal streams:
// the flood is refused with PostgreSQL's errors, the slow clients are dropped at the
// authentication timeout, the stream completes byte-identical, and the relay's memory stays
// bounded. Throughput with and without the abuse is printed, not asserted.

import assert from "node:assert/strict";
import { MessageBuilder } from "../lib/pgwire/messages.ts";
import { delay, pgBin, run, startRelay, tempDir } from "./_pg.ts";
import { generateArchive, segmentStartLsn } from "./_relay_util.ts";

function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]);
}

async function receiveAll(
  port: number,
  first: string,
  out: string,
  endLsn: string,
  onStreaming?: () => void,
): Promise<number> {
  await Deno.writeFile(`${out}/${first}.partial`, new Uint8Array());
  const t0 = performance.now();
  // Streaming has begun once pg_receivewal has written into its first segment.
  const watcher = onStreaming && (async () => {
    // Once renamed (the segment is complete), streaming has certainly begun.
    const size = () => {
      try {
        return Deno.statSync(`${out}/${first}.partial`).size;
      } catch {
        return 1;
      }
    };
    while (size() === 0) await delay(5);
    onStreaming();
  })();
  const r = await run([
    await pgBin("pg_receivewal"),
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-U",
    "good",
    "-D",
    out,
    "-n",
    "--no-sync",
    "--endpos",
    endLsn,
  ], { timeoutMs: 120_000 });
  await watcher;
  assert.equal(r.code, 0, r.stderr);
  return performance.now() - t0;
}

Deno.test("flood: refused above the limits, slow-loris dropped, streams unharmed", async () => {
  const { dir, names } = await generateArchive({ walSegSize: 1, megabytes: 48 });
  await using _archive = dir;
  await using relay = await startRelay({
    walDir: dir.path,
    args: ["--max-senders", "4", "--max-connections", "20", "--authentication-timeout", "2"],
  });
  const endLsn = segmentStartLsn(names.at(-1)!, 1024 * 1024) + 1024n * 1024n - 1n;
  const end = `${(endLsn >> 32n).toString(16).toUpperCase()}/${
    (endLsn & 0xffffffffn).toString(16).toUpperCase()
  }`;

  await using quiet = await tempDir("walrelay_flood_quiet_");
  const quietMs = await receiveAll(relay.port, names[0]!, quiet.path, end);

  // Slow-loris: half a startup packet, then silence.
  const loris: Deno.Conn[] = [];
  for (let i = 0; i < 8; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
    await c.write(new Uint8Array([0, 0, 0, 80, 0, 3]));
    loris.push(c);
  }
  // The flood: many connections at once, each with a complete startup packet.
  const startup = new MessageBuilder(null).int32(196608).cstring("user").cstring("flood")
    .cstring("replication").cstring("true").byte(0).finish();
  let refusedConnections = 0;
  let refusedSenders = 0;
  // The flood begins once the good client is connected: an existing stream must not suffer.
  // (A new connection during a flood may be refused, as PostgreSQL refuses it past
  // max_connections.)
  const started = Promise.withResolvers<void>();
  const startFlood = () => started.resolve();
  const flood = (async () => {
    await started.promise;
    for (let round = 0; round < 10; round++) {
      await Promise.all(Array.from({ length: 20 }, async () => {
        try {
          const c = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
          await c.write(startup).catch(() => {});
          const buf = new Uint8Array(1024);
          const n = await c.read(buf).catch(() => null);
          const text = n ? new TextDecoder().decode(buf.subarray(0, n)) : "";
          if (text.includes("sorry, too many clients already")) refusedConnections++;
          if (text.includes("exceeds max_wal_senders")) refusedSenders++;
          c.close();
        } catch { /* refused at the socket: fine */ }
      }));
    }
  })();
  await using busy = await tempDir("walrelay_flood_busy_");
  const busyMs = await receiveAll(relay.port, names[0]!, busy.path, end, () => startFlood());
  await flood;

  // The good client's segments are the archive's, byte for byte, with and without the flood.
  for (const name of names) {
    const origin = await Deno.readFile(`${dir.path}/${name}`);
    for (const out of [quiet.path, busy.path]) {
      const got = await Deno.readFile(`${out}/${name}`);
      assert.ok(got.length === origin.length && got.every((b, i) => b === origin[i]), name);
    }
  }
  assert.ok(refusedConnections + refusedSenders > 0, "the flood went over the limits");

  // The slow-loris clients were dropped at the authentication timeout.
  await delay(2500);
  for (const c of loris) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      c.read(new Uint8Array(16)).catch(() => null),
      new Promise<"open">((resolve) => timer = setTimeout(() => resolve("open"), 2000)),
    ]);
    clearTimeout(timer);
    assert.equal(n, null, "a slow client must have been disconnected");
    c.close();
  }
  const rss = rssKb(relay.pid);
  const mb = 48;
  console.log(
    `flood: quiet ${(mb / (quietMs / 1000)).toFixed(0)} MB/s, under flood ${
      (mb / (busyMs / 1000)).toFixed(0)
    } MB/s; refused ${refusedConnections} connections (53300 too many clients) and ${refusedSenders} senders; relay RSS ${
      Math.round(rss / 1024)
    } MB`,
  );
  assert.ok(rss < 400 * 1024, `relay memory ${rss} kB`);
  assert.equal(relay.exited, false);
});
