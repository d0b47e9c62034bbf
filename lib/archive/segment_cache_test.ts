import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { SegmentCache } from "./segment_cache.ts";
import { ArchiveFormatError } from "./errors.ts";
import type { ArchiveEntry } from "./layout.ts";

const SEG = 1 << 20;

async function archive(count: number): Promise<{ dir: string; entries: ArchiveEntry[] }> {
  const dir = await Deno.makeTempDir();
  const entries: ArchiveEntry[] = [];
  for (let i = 0; i < count; i++) {
    const name = `00000001000000000000000${i}`;
    const path = `${dir}/${name}.gz`;
    await Deno.writeFile(path, gzipSync(new Uint8Array(SEG).fill(i)));
    entries.push({ name, path, format: "gzip" });
  }
  return { dir, entries };
}

for (const workers of [0, 2]) {
  Deno.test(`segment cache (${workers} workers): bounded, shared, and a held segment is never decoded twice`, async () => {
    const { dir, entries } = await archive(3);
    try {
      const cache = new SegmentCache({ capacity: SEG, workers });
      const [a, b] = entries as [ArchiveEntry, ArchiveEntry];
      const held = await cache.read(a, { segmentSize: SEG });
      assert.equal(held.data[0], 0);
      await cache.read(b, { segmentSize: SEG });
      assert.equal(cache.bytes, SEG, "one segment kept");
      assert.equal(cache.evictions, 1);
      // Evicted, but a reader still holds its bytes: the next reader takes the same ones.
      const again = await cache.read(a, { segmentSize: SEG });
      assert.equal(again.data, held.data);
      assert.equal(cache.decodes, 2);
      // Concurrent readers share one decode.
      const c = entries[2]!;
      const [x, y] = await Promise.all([
        cache.read(c, { segmentSize: SEG }),
        cache.read(c, { segmentSize: SEG }),
      ]);
      assert.equal(x.data, y.data);
      assert.equal(cache.decodes, 3);
      // A changed file is decoded again.
      await Deno.writeFile(c.path, gzipSync(new Uint8Array(SEG).fill(9)));
      assert.equal((await cache.read(c, { segmentSize: SEG })).data[0], 9);
      assert.equal(cache.decodes, 4);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("segment cache: a damaged file fails every reader, decoded once", async () => {
  const { dir, entries } = await archive(1);
  try {
    const e = entries[0]!;
    const bytes = await Deno.readFile(e.path);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    await Deno.writeFile(e.path, bytes);
    const cache = new SegmentCache({ workers: 2 });
    for (let i = 0; i < 2; i++) {
      await assert.rejects(
        cache.read(e, { segmentSize: SEG }),
        (err) => err instanceof ArchiveFormatError && err.file === e.path && err.format === "gzip",
      );
    }
    assert.equal(cache.decodes, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
