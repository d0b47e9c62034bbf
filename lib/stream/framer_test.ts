import assert from "node:assert/strict";
import { frameXLogData, keepaliveMessage, WalFramer, xlogDataEnd } from "./framer.ts";
import { pgTimestampNow } from "../pgwire/timestamp.ts";

Deno.test("framer: XLogData layout as the walreceiver parses it", () => {
  const payload = new Uint8Array([1, 2, 3, 4, 5]);
  const m = frameXLogData({ start: 0x1000000n, bytes: payload, walEnd: 0x15020D0n }, 42n);
  const v = new DataView(m.buffer);
  assert.equal(m[0], 0x64);
  assert.equal(v.getInt32(1), m.length - 1, "CopyData length counts itself, not the type");
  assert.equal(m[5], 0x77);
  assert.equal(v.getBigUint64(6), 0x1000000n, "dataStart");
  assert.equal(v.getBigUint64(14), 0x15020D0n, "walEnd is the send limit, not the chunk end");
  assert.equal(v.getBigInt64(22), 42n, "sendTime");
  assert.deepEqual(m.subarray(30), payload);
  assert.equal(xlogDataEnd(m), 0x1000005n);
});

Deno.test("framer: keepalive is exactly 17 bytes after 'k' with the reply flag last", () => {
  const before = pgTimestampNow();
  const m = keepaliveMessage(0x7000110n, true);
  const v = new DataView(m.buffer);
  assert.equal(m[0], 0x64);
  assert.equal(v.getInt32(1), 22);
  assert.equal(m[5], 0x6b);
  assert.equal(m.length - 6, 17);
  assert.equal(v.getBigUint64(6), 0x7000110n);
  const ts = v.getBigInt64(14);
  assert.ok(ts >= before && ts - before < 5_000_000n, "sendTime is now, in µs since 2000");
  assert.equal(m[22], 1);
  assert.equal(keepaliveMessage(0n, false)[22], 0);
});

Deno.test("framer: one message per chunk, in order", async () => {
  const chunks = [0, 1, 2].map((i) => ({
    start: BigInt(i * 8),
    bytes: new Uint8Array(8).fill(i),
    walEnd: 24n,
  }));
  const out = await Array.fromAsync(ReadableStream.from(chunks).pipeThrough(new WalFramer()));
  assert.deepEqual(out.map(xlogDataEnd), [8n, 16n, 24n]);
  assert.deepEqual([...out[2]!.subarray(30)], new Array(8).fill(2));
});
