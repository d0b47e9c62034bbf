import assert from "node:assert/strict";
import { WalSlicer } from "./slicer.ts";
import type { WalChunk } from "./chunk.ts";

const BLOCK = 8192;
const MAX = 16 * BLOCK;

/** A small deterministic PRNG so a failure names its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

async function slice(chunks: WalChunk[]): Promise<WalChunk[]> {
  return await Array.fromAsync(ReadableStream.from(chunks).pipeThrough(new WalSlicer(BLOCK)));
}

Deno.test("slicer: any range, any start: contiguous, bounded, cut on pages, ends at the end", async () => {
  for (let seed = 1; seed <= 300; seed++) {
    const rand = rng(seed);
    // A start anywhere (8-byte aligned, as records are, or not at all) and up to 1 MB of WAL,
    // delivered in pieces of random size, as a source may read it.
    const start = BigInt(Math.floor(rand() * 64 * 1024 * 1024));
    const total = 1 + Math.floor(rand() * 1024 * 1024);
    const data = new Uint8Array(total);
    for (let i = 0; i < total; i += 4096) data[i] = (i / 4096) & 0xff;
    const walEnd = start + BigInt(total);
    const input: WalChunk[] = [];
    let pos = 0;
    while (pos < total) {
      const n = Math.min(total - pos, 1 + Math.floor(rand() * 300_000));
      input.push({ start: start + BigInt(pos), bytes: data.subarray(pos, pos + n), walEnd });
      pos += n;
    }
    const out = await slice(input);
    let expect = start;
    const joined = new Uint8Array(total);
    for (const [i, c] of out.entries()) {
      assert.equal(c.start, expect, `seed ${seed}: gap or overlap at piece ${i}`);
      assert.ok(
        c.bytes.length > 0 && c.bytes.length <= MAX,
        `seed ${seed}: size ${c.bytes.length}`,
      );
      const end = c.start + BigInt(c.bytes.length);
      assert.ok(
        end % BigInt(BLOCK) === 0n || end === walEnd,
        `seed ${seed}: piece ${i} ends mid-page at ${end} before the valid end`,
      );
      assert.equal(c.walEnd, walEnd);
      joined.set(c.bytes, Number(c.start - start));
      expect = end;
    }
    assert.equal(expect, walEnd, `seed ${seed}: last piece must end exactly at the end`);
    assert.deepEqual(joined, data, `seed ${seed}: bytes changed`);
  }
});

Deno.test("slicer: an unaligned start gives a shorter first message ending on a page", async () => {
  // The captured case: dataStart 0/9000060, 130976 bytes, ending at 0/9020000.
  const out = await slice([{
    start: 0x9000060n,
    bytes: new Uint8Array(400_000),
    walEnd: 0x9000060n + 400_000n,
  }]);
  assert.equal(out[0]!.bytes.length, 130976);
  assert.equal(out[0]!.start + BigInt(out[0]!.bytes.length), 0x9020000n);
  assert.equal(out[1]!.bytes.length, MAX);
});

Deno.test("slicer: a chunk ending mid-page before walEnd waits for the rest of its page", async () => {
  const walEnd = 3n * BigInt(BLOCK);
  const a = { start: 0n, bytes: new Uint8Array(BLOCK + 100).fill(1), walEnd };
  const b = { start: BigInt(BLOCK + 100), bytes: new Uint8Array(2 * BLOCK - 100).fill(2), walEnd };
  const out = await slice([a, b]);
  // The first page goes out at once; its 100-byte remainder travels with the next chunk.
  assert.deepEqual(out.map((c) => [c.start, c.bytes.length]), [[0n, BLOCK], [
    BigInt(BLOCK),
    2 * BLOCK,
  ]]);
  assert.deepEqual(out[1]!.bytes.subarray(0, 100), new Uint8Array(100).fill(1));
  for (const c of out) {
    const end = c.start + BigInt(c.bytes.length);
    assert.ok(end % BigInt(BLOCK) === 0n || end === walEnd, `piece ends mid-page at ${end}`);
  }
  assert.equal(out.reduce((n, c) => n + c.bytes.length, 0), 3 * BLOCK);
  // A stream that ends while holding a partial page still delivers it.
  const tail = await slice([{ start: 0n, bytes: new Uint8Array(100), walEnd: 200n }]);
  assert.deepEqual(tail.map((c) => c.bytes.length), [100]);
});

Deno.test("slicer: pieces are views of the input, never copies", async () => {
  const bytes = new Uint8Array(3 * MAX);
  const out = await slice([{ start: 0n, bytes, walEnd: BigInt(bytes.length) }]);
  assert.equal(out.length, 3);
  for (const c of out) assert.equal(c.bytes.buffer, bytes.buffer);
});

Deno.test("slicer: a run of whole messages passes as one chunk; any other is taken apart", async () => {
  const page = 8192;
  const part = (start: number, length: number): WalChunk => ({
    start: BigInt(start),
    bytes: new Uint8Array(length),
    walEnd: 1_000_000n,
  });
  const run = { ...part(0, 2 * page), rest: [part(2 * page, page), part(3 * page, 2 * page)] };
  const out = await Array.fromAsync(ReadableStream.from([run]).pipeThrough(new WalSlicer(page)));
  assert.deepEqual(out, [run]);
  // The last one ends mid-page before walEnd: the run goes piece by piece, the partial page held.
  const odd = { ...part(0, 2 * page), rest: [part(2 * page, page + 100)] };
  const apart = await Array.fromAsync(ReadableStream.from([odd]).pipeThrough(new WalSlicer(page)));
  assert.deepEqual(apart.map((c) => [c.start, c.bytes.length, c.rest]), [
    [0n, 2 * page, undefined],
    [BigInt(2 * page), page, undefined],
    [BigInt(3 * page), 100, undefined],
  ]);
});
