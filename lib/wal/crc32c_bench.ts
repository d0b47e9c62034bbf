/**
 * CRC-32C throughput: `deno bench lib/wal/crc32c_bench.ts`. The test data is made by the first
 * iteration, so importing this module computes nothing.
 *
 * @module
 */
import { crc32c, crc32cUpdate } from "./crc32c.ts";

let cached: Uint8Array | undefined;

/** 1 MiB of bytes that look random enough to a CRC. */
function data(): Uint8Array {
  if (cached === undefined) {
    cached = new Uint8Array(1 << 20);
    for (let i = 0; i < cached.length; i++) cached[i] = (i * 2654435761) >>> 24;
  }
  return cached;
}

Deno.bench("crc32c 1 MiB", () => {
  crc32c(data());
});

Deno.bench("crc32c 1 MiB in 100-byte pieces (small WAL records)", () => {
  const d = data();
  let c = 0xFFFFFFFF;
  for (let i = 0; i < d.length; i += 100) {
    c = crc32cUpdate(c, d, i, Math.min(i + 100, d.length));
  }
});

Deno.bench("crc32c 1 MiB in 8 kB pieces (pages)", () => {
  const d = data();
  let c = 0xFFFFFFFF;
  for (let i = 0; i < d.length; i += 8192) c = crc32cUpdate(c, d, i, i + 8192);
});
