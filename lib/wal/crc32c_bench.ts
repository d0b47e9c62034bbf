/**
 * CRC-32C throughput: `deno bench lib/wal/crc32c_bench.ts`. Each group compares what
 * `crc32cUpdate` does (WebAssembly for pieces of 128 bytes and more, copy included) with the
 * JavaScript loop alone, which is what runs where WebAssembly is unavailable. The test data is
 * made by the first iteration, so importing this module computes nothing.
 *
 * @module
 */
import { crc32cUpdate } from "./crc32c.ts";
import { crc32cUpdater } from "./_crc32c_js.ts";

/** The JavaScript loop alone, which runs where WebAssembly does not. */
const crc32cUpdateJs = crc32cUpdater();

let cached: Uint8Array | undefined;

/** 16 MiB of bytes that look random enough to a CRC, plus one so that reads can be unaligned. */
function data(): Uint8Array {
  if (cached === undefined) {
    cached = new Uint8Array((16 << 20) + 1);
    for (let i = 0; i < cached.length; i++) cached[i] = (i * 2654435761) >>> 24;
  }
  return cached;
}

type Update = (crc: number, data: Uint8Array, start?: number, end?: number) => number;

/** Feeds `total` bytes from offset 1 in pieces of `piece` bytes. */
function run(update: Update, total: number, piece: number): number {
  const d = data();
  let c = 0xFFFFFFFF;
  for (let i = 1; i <= total; i += piece) c = update(c, d, i, Math.min(i + piece, total + 1));
  return c;
}

const cases: [string, number, number][] = [
  ["128 KiB", 128 << 10, 128 << 10],
  ["16 MiB", 16 << 20, 16 << 20],
  ["1 MiB in 8 KiB pieces (pages)", 1 << 20, 8192],
  ["1 MiB in 600-byte pieces", 1 << 20, 600],
  ["1 MiB in 200-byte pieces", 1 << 20, 200],
  ["1 MiB in 100-byte pieces (small WAL records)", 1 << 20, 100],
];

for (const [name, total, piece] of cases) {
  Deno.bench(`crc32cUpdate ${name}`, { group: name, baseline: true }, () => {
    run(crc32cUpdate, total, piece);
  });
  Deno.bench(`JavaScript loop ${name}`, { group: name }, () => {
    run(crc32cUpdateJs, total, piece);
  });
}
