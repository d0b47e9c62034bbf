import assert from "node:assert/strict";
import { MemoryTail } from "./_memory_tail.ts";

const START = 0x3000000n;

/** `n` bytes that tell their position apart. */
function bytesAt(lsn: bigint, n: number): Uint8Array {
  const base = Number(lsn % 251n);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (base + i) % 251;
  return out;
}

/** Reads everything from `from` on, `max` at a time; returns the bytes and the reads it took. */
function readAll(tail: MemoryTail, tli: number, from: bigint, max: number) {
  const parts: Uint8Array[] = [];
  let at = from;
  while (true) {
    const b = tail.read(tli, at, max);
    if (!b) break;
    parts.push(b);
    at += BigInt(b.length);
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return { all, reads: parts.length };
}

Deno.test("memory tail: commits noted one by one are read back a block at a time", () => {
  // A quiet upstream: one 176-byte message per commit. A sender behind reads them in 64 kB
  // blocks, not one commit per read.
  const tail = new MemoryTail(64 << 20);
  let at = START;
  for (let i = 0; i < 1000; i++) {
    tail.add(1, at, bytesAt(at, 176));
    at += 176n;
  }
  const { all, reads } = readAll(tail, 1, START, 512 * 1024);
  assert.deepEqual(all, bytesAt(START, 176_000));
  assert.equal(reads, Math.ceil(176_000 / 65536), `${reads} reads`);
  assert.equal(tail.pieces, reads);
  assert.equal(tail.bytes, 176_000);
  // From the middle of a block, and at most `max`.
  assert.deepEqual(tail.read(1, START + 1000n, 10), bytesAt(START + 1000n, 10));
});

Deno.test("memory tail: the oldest WAL leaves first, and its slots are reclaimed", () => {
  const limit = 1 << 20;
  const tail = new MemoryTail(limit);
  let at = START;
  for (let i = 0; i < 5000; i++) {
    tail.add(1, at, bytesAt(at, 8192));
    at += 8192n;
  }
  assert.equal(tail.bytes, limit);
  assert.equal(tail.pieces, limit / 8192);
  const first = at - BigInt(limit);
  assert.equal(tail.start(1), first);
  assert.equal(tail.read(1, first - 1n, 8), undefined, "dropped WAL is not held");
  const { all } = readAll(tail, 1, first, 1 << 20);
  assert.deepEqual(all, bytesAt(first, limit));
  assert.equal(tail.read(1, at, 8), undefined, "nothing beyond the end");
});

Deno.test("memory tail: a large piece is kept by reference, and kept when over the limit alone", () => {
  const tail = new MemoryTail(4096);
  const big = bytesAt(START, 16384);
  tail.add(1, START, big);
  const view = tail.read(1, START + 100n, 1 << 20)!;
  assert.equal(view.buffer, big.buffer);
  assert.equal(view.length, 16384 - 100);
  assert.equal(tail.bytes, 16384);
});

Deno.test("memory tail: WAL that does not continue the tail starts it anew", () => {
  const tail = new MemoryTail(1 << 20);
  tail.add(1, START, bytesAt(START, 100));
  // A gap.
  tail.add(1, START + 200n, bytesAt(START + 200n, 50));
  assert.equal(tail.start(1), START + 200n);
  assert.equal(tail.read(1, START, 8), undefined);
  assert.equal(tail.bytes, 50);
  // Another timeline, continuing at the same place.
  tail.add(2, START + 250n, bytesAt(START + 250n, 10));
  assert.equal(tail.start(1), undefined);
  assert.equal(tail.start(2), START + 250n);
  assert.equal(tail.read(1, START + 250n, 8), undefined);
  assert.deepEqual(tail.read(2, START + 250n, 100), bytesAt(START + 250n, 10));
  tail.clear();
  assert.equal(tail.start(2), undefined);
  assert.equal(tail.bytes, 0);
});

Deno.test("memory tail: a limit of zero keeps nothing", () => {
  const tail = new MemoryTail(0);
  tail.add(1, START, bytesAt(START, 100));
  assert.equal(tail.start(1), undefined);
  assert.equal(tail.read(1, START, 8), undefined);
});
