import assert from "node:assert/strict";
import {
  frameXLogData,
  keepaliveMessage,
  WalFramer,
  xlogDataEnd,
  xlogDataExtent,
} from "./framer.ts";
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

Deno.test("framer: a shared block's header is left alone while another write of it is in flight", () => {
  const block = { buffer: new ArrayBuffer(30 + 8), inFlight: 0, holders: 1, evicted: false };
  const chunk = {
    start: 0x1000000n,
    bytes: new Uint8Array(block.buffer, 30, 8),
    walEnd: 0x1000008n,
    headroom: true,
    block,
  };
  const first = frameXLogData(chunk, 1n);
  assert.equal(first.buffer, block.buffer, "framed in place");
  block.inFlight++;
  frameXLogData({ ...chunk, walEnd: 0x2000000n }, 2n);
  const v = new DataView(block.buffer);
  assert.equal(v.getBigUint64(14), 0x1000008n, "walEnd as the sender in flight wrote it");
  assert.equal(v.getBigInt64(22), 1n);
  block.inFlight--;
  frameXLogData({ ...chunk, walEnd: 0x2000000n }, 3n);
  assert.equal(v.getBigUint64(14), 0x2000000n, "rewritten once no write is in flight");
  assert.equal(v.getBigInt64(22), 3n);
});

Deno.test("framer: the messages of a run come out as one array; a run cut short is copied", async () => {
  const buffer = new ArrayBuffer(3 * (30 + 8));
  const chunk = (i: number, more: boolean) => ({
    start: BigInt(i * 8),
    bytes: new Uint8Array(buffer, i * 38 + 30, 8),
    walEnd: 24n,
    headroom: true,
    more,
  });
  const whole = await Array.fromAsync(
    ReadableStream.from([chunk(0, true), chunk(1, true), chunk(2, false)])
      .pipeThrough(new WalFramer()),
  );
  assert.equal(whole.length, 1);
  assert.equal(whole[0]!.buffer, buffer);
  assert.equal(whole[0]!.byteLength, buffer.byteLength);
  assert.equal(xlogDataEnd(whole[0]!), 24n);
  const cut = await Array.fromAsync(
    ReadableStream.from([chunk(0, true), { start: 8n, bytes: new Uint8Array(8), walEnd: 24n }])
      .pipeThrough(new WalFramer()),
  );
  assert.equal(cut.length, 2);
  assert.notEqual(cut[0]!.buffer, buffer, "held part of a cut run goes out as a copy");
  assert.deepEqual(cut.map(xlogDataEnd), [8n, 16n]);
});

Deno.test("framer: a run carried by its first chunk is framed in place as one array", async () => {
  const buffer = new ArrayBuffer(3 * (30 + 8));
  const chunk = (i: number) => ({
    start: BigInt(i * 8),
    bytes: new Uint8Array(buffer, i * 38 + 30, 8),
    walEnd: 24n,
    headroom: true,
    more: i < 2,
  });
  const run = { ...chunk(0), rest: [chunk(1), chunk(2)] };
  const out = await Array.fromAsync(ReadableStream.from([run]).pipeThrough(new WalFramer()));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.buffer, buffer);
  assert.equal(out[0]!.byteLength, buffer.byteLength);
  assert.deepEqual(xlogDataExtent(out[0]!), { end: 24n, payloadBytes: 24 });
  const other = {
    ...chunk(0),
    rest: [chunk(1), { start: 16n, bytes: new Uint8Array(8), walEnd: 24n }],
  };
  const apart = await Array.fromAsync(ReadableStream.from([other]).pipeThrough(new WalFramer()));
  assert.equal(apart.length, 2, "a run not lying in one buffer goes chunk by chunk");
  assert.deepEqual(apart.map(xlogDataEnd), [16n, 24n]);
});
