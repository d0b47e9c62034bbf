import assert from "node:assert/strict";
import { BufferPool, FRAME_HEADROOM } from "./chunk.ts";
import { WalFramer } from "./framer.ts";
import { WalSink } from "./sink.ts";
import { WalSlicer } from "./slicer.ts";

Deno.test("sink: sentLsn and bytesSent follow what was written; catch-up ends at its end", async () => {
  const written: Uint8Array[] = [];
  const sender = { sentLsn: 0n, bytesSent: 0, state: "catchup" as "catchup" | "streaming" };
  const states: string[] = [];
  let sent = 0;
  const sink = new WalSink({
    write: (m) => {
      written.push(m);
      return Promise.resolve();
    },
    sender,
    catchupEnd: () => 0x20000n,
    onSent: () => {
      sent++;
      states.push(sender.state);
    },
  });
  const chunk = { start: 0x10000n, bytes: new Uint8Array(0x10000), walEnd: 0x20000n };
  await ReadableStream.from([chunk]).pipeThrough(new WalSlicer(8192, 0x8000))
    .pipeThrough(new WalFramer()).pipeTo(sink);
  assert.equal(written.length, 2);
  assert.equal(sent, 2);
  assert.deepEqual(states, ["catchup", "catchup"], "state moves after the last message is counted");
  assert.deepEqual(sender, { sentLsn: 0x20000n, bytesSent: 0x10000, state: "streaming" });
});

Deno.test("sink: a buffer framed in place goes back to the pool only after the socket took it", async () => {
  const pool = new BufferPool(FRAME_HEADROOM + 8192, 2);
  const buffer = pool.take();
  const bytes = new Uint8Array(buffer, FRAME_HEADROOM, 8192);
  const { promise: taken, resolve: take } = Promise.withResolvers<void>();
  let writing: Uint8Array | undefined;
  const sender = { sentLsn: 0n, bytesSent: 0, state: "streaming" as const };
  const sink = new WalSink({
    write: (m) => {
      writing = m;
      return taken;
    },
    sender,
    pool,
    catchupEnd: () => 8192n,
  });
  const done = ReadableStream.from([{ start: 0n, bytes, walEnd: 8192n, headroom: true }])
    .pipeThrough(new WalFramer()).pipeTo(sink);
  while (!writing) await new Promise((r) => setTimeout(r, 1));
  assert.equal(writing.buffer, buffer, "framed in place: no copy");
  assert.notEqual(pool.take(), buffer, "not free while the socket has not taken it");
  take();
  await done;
  assert.equal(pool.take(), buffer, "free once written");
  assert.equal(sender.sentLsn, 8192n);
});

Deno.test("sink: a slice of a pool buffer is copied, and its buffer is not given back", async () => {
  const pool = new BufferPool(FRAME_HEADROOM + 16384, 2);
  const buffer = pool.take();
  const bytes = new Uint8Array(buffer, FRAME_HEADROOM, 16384);
  const sink = new WalSink({
    write: () => Promise.resolve(),
    sender: { sentLsn: 0n, bytesSent: 0, state: "streaming" },
    pool,
    catchupEnd: () => 16384n,
  });
  // Two messages cut from one buffer: neither may free it while the other is in flight.
  await ReadableStream.from([{ start: 0n, bytes, walEnd: 16384n, headroom: true }])
    .pipeThrough(new WalSlicer(8192, 8192)).pipeThrough(new WalFramer()).pipeTo(sink);
  assert.notEqual(pool.take(), buffer);
});

Deno.test("sink: a shared block counts its write in flight, and a whole block ends the hold", async () => {
  const { WalBlockCache } = await import("./block_cache.ts");
  const cache = new WalBlockCache();
  const block = cache.getOrFill("seg", 0, 2 * (FRAME_HEADROOM + 8), () => {});
  const chunk = (i: number, more: boolean) => ({
    start: BigInt(i * 8),
    bytes: new Uint8Array(block.buffer, i * (FRAME_HEADROOM + 8) + FRAME_HEADROOM, 8),
    walEnd: 16n,
    headroom: true,
    more,
    block,
  });
  const { promise: taken, resolve: take } = Promise.withResolvers<void>();
  let writing: Uint8Array | undefined;
  const sender = { sentLsn: 0n, bytesSent: 0, state: "streaming" as const };
  const sink = new WalSink({
    write: (m) => {
      writing = m;
      return taken;
    },
    sender,
    cache,
    catchupEnd: () => 16n,
  });
  const done = ReadableStream.from([chunk(0, true), chunk(1, false)])
    .pipeThrough(new WalFramer()).pipeTo(sink);
  while (!writing) await new Promise((r) => setTimeout(r, 1));
  assert.equal(writing.buffer, block.buffer, "sent from the shared buffer itself");
  assert.equal(writing.byteLength, block.buffer.byteLength, "both messages in one write");
  assert.equal(block.inFlight, 1);
  assert.equal(block.holders, 1);
  take();
  await done;
  assert.equal(block.inFlight, 0);
  assert.equal(block.holders, 0, "released once all of it was sent");
  assert.deepEqual(sender, { sentLsn: 16n, bytesSent: 16, state: "streaming" });
});
