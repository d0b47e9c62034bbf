import assert from "node:assert/strict";
import { LZ4_BLOCK_SIZE, lz4CompressFrame, Lz4CompressStream } from "./lz4_frame.ts";
import { decodeArchived } from "./codec.ts";
import { pipeThroughTool, SAMPLE_SEGMENT } from "./_test_utils.ts";

/** Deterministic bytes: xorshift32 from `seed`. */
function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * A full block of text whose last 64 bytes are noise, with a 4-byte copy placed `late` bytes
 * before the end: lz4js then starts its last match there.
 */
function lateMatchBlock(late: number): Uint8Array {
  const src = new Uint8Array(LZ4_BLOCK_SIZE);
  const pattern = new TextEncoder().encode("hello world, this is WAL ");
  for (let i = 0; i < src.length - 64; i++) src[i] = pattern[i % pattern.length]!;
  src.set(noise(64, late), src.length - 64);
  const e = src.length;
  src.set(src.subarray(e - 25, e - 21), e - late);
  src[e - late + 4] = src[e - 21 + 4]! ^ 0xff;
  return src;
}

async function lz4Tool(frame: Uint8Array): Promise<Uint8Array> {
  return await pipeThroughTool("lz4", ["-d", "-c"], frame);
}

Deno.test("lz4 frame: a block whose last match starts 10 or 11 bytes before its end still decodes with liblz4", async () => {
  const lz4js = (await import("npm:lz4js@0.2.0")).default as {
    compressBlock(s: Uint8Array, d: Uint8Array, i: number, n: number, t: Uint32Array): number;
  };
  for (const late of [10, 11, 12]) {
    const src = lateMatchBlock(late);
    // lz4js's own block, framed as ours: liblz4 refuses it when the last match starts too late.
    const body = new Uint8Array(LZ4_BLOCK_SIZE * 2);
    const c = lz4js.compressBlock(src, body, 0, src.length, new Uint32Array(1 << 16));
    const naive = new Uint8Array(7 + 4 + c + 4);
    naive.set([0x04, 0x22, 0x4d, 0x18, 0x60, 0x50, 0xfb]);
    new DataView(naive.buffer).setUint32(7, c, true);
    naive.set(body.subarray(0, c), 11);
    const naiveDecodes = await lz4Tool(naive).then(() => true, () => false);
    assert.equal(naiveDecodes, late >= 12, `lz4js alone, last match ${late} bytes from the end`);

    const frame = await lz4CompressFrame(src);
    assert.deepEqual(await lz4Tool(frame), src);
    assert.deepEqual(new Uint8Array((await decodeArchived(frame, "lz4", { file: "x" })).data), src);
  }
});

Deno.test("lz4 frame: the stream writes the same frame as the whole buffer, whatever the chunking; lz4 -d reads it", async () => {
  const wal = await Deno.readFile(SAMPLE_SEGMENT);
  const plain = new Uint8Array(wal.length * 2 + 12345);
  plain.set(wal);
  plain.set(noise(wal.length, 7), wal.length);
  const whole = await lz4CompressFrame(plain);
  for (const size of [1, 1000, LZ4_BLOCK_SIZE, LZ4_BLOCK_SIZE + 1, 3 << 20]) {
    const chunks: Uint8Array[] = [];
    // Odd sizes; 1-byte chunks only over the first 64 kB (slow otherwise).
    for (let off = 0; off < plain.length; off += size === 1 && off >= 65536 ? 65536 : size) {
      const step = size === 1 && off >= 65536 ? 65536 : size;
      chunks.push(plain.slice(off, off + step));
    }
    const streamed = await new Response(
      ReadableStream.from(chunks).pipeThrough(new Lz4CompressStream()),
    ).bytes();
    assert.deepEqual(streamed, whole, `chunks of ${size}`);
  }
  assert.deepEqual(await lz4Tool(whole), plain);
  assert.deepEqual(await lz4Tool(await lz4CompressFrame(new Uint8Array(0))), new Uint8Array(0));
});
