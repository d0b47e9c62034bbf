// CRC-32C throughput: `deno bench lib/wal/crc32c_bench.ts`.
import { crc32c, crc32cUpdate } from "./crc32c.ts";

const data = new Uint8Array(1 << 20);
for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;

Deno.bench("crc32c 1 MiB", () => {
  crc32c(data);
});

Deno.bench("crc32c 1 MiB in 100-byte pieces (small WAL records)", () => {
  let c = 0xFFFFFFFF;
  for (let i = 0; i < data.length; i += 100) {
    c = crc32cUpdate(c, data, i, Math.min(i + 100, data.length));
  }
});

Deno.bench("crc32c 1 MiB in 8 kB pieces (pages)", () => {
  let c = 0xFFFFFFFF;
  for (let i = 0; i < data.length; i += 8192) c = crc32cUpdate(c, data, i, i + 8192);
});
