import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { SegmentCache } from "./segment_cache.ts";
import { RemoteSegments, SharedSegments } from "./shared_segments.ts";
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
      const spent = cache.decodeSeconds;
      assert.ok(spent > 0, "two decodes took time, counted where they ran");
      const again = await cache.read(a, { segmentSize: SEG });
      assert.equal(again.data, held.data);
      assert.equal(cache.decodes, 2);
      assert.equal(cache.decodeSeconds, spent, "bytes found again cost no decoding");
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

Deno.test("segment cache: lent bytes stay intact until released, while their memory serves other segments after", async () => {
  const { dir, entries } = await archive(6);
  try {
    const cache = new SegmentCache({ capacity: SEG, workers: 2 });
    const opts = { segmentSize: SEG };
    const held = await cache.acquire(entries[0]!, opts);
    // Every later segment evicts the one before; all but the held one go back for reuse.
    for (let round = 0; round < 3; round++) {
      for (const e of entries.slice(1)) {
        const lease = await cache.acquire(e, opts);
        const want = Number(e.name.at(-1));
        assert.ok(lease.data.every((b) => b === want), `${e.name} decoded into reused memory`);
        lease.release();
        lease.release(); // a second release changes nothing
      }
    }
    assert.ok(held.data.every((b) => b === 0), "a held segment is never overwritten");
    // Evicted but still held: the next reader takes the same bytes.
    const again = await cache.acquire(entries[0]!, opts);
    assert.equal(cache.decodes, 1 + 3 * 5);
    assert.ok(again.data.every((b) => b === 0));
    held.release();
    again.release();
    const b = await cache.acquire(entries[1]!, opts);
    assert.ok(b.data.every((x) => x === 1));
    b.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared segments: another thread's reads share decodes, see damage as ArchiveFormatError and a gone file as NotFound, and give leases back when it ends", async () => {
  const { dir, entries } = await archive(2);
  try {
    const shared = new SharedSegments(new SegmentCache({ capacity: SEG, workers: 2 }));
    // What crosses to a thread crosses by structured clone, as a worker's message would.
    const thread = (n: number) =>
      new RemoteSegments(async (call) => structuredClone(await shared.answer(n, call)));
    const [a, b] = [thread(1), thread(2)];
    const [e0, e1] = entries as [ArchiveEntry, ArchiveEntry];
    const opts = { segmentSize: SEG };
    const x = await a.acquire(e0, opts);
    const y = await b.acquire(e0, opts);
    assert.ok(x.data.every((v) => v === 0) && y.data.every((v) => v === 0));
    assert.equal(shared.cache.decodes, 1);
    const bytes = await Deno.readFile(e1.path);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    await Deno.writeFile(e1.path, bytes);
    await assert.rejects(
      a.acquire(e1, opts),
      (e) => e instanceof ArchiveFormatError && e.file === e1.path,
    );
    await assert.rejects(
      a.acquire({ ...e1, path: `${dir}/gone.gz` }, opts),
      (e) => e instanceof Deno.errors.NotFound,
    );
    // A copy the caller keeps, whatever happens to the cache's memory after.
    const kept = await b.read(e0, opts);
    assert.ok(!(kept.data.buffer instanceof SharedArrayBuffer));
    x.release();
    shared.end(2);
    y.release(); // after its thread ended: nothing more to give back
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
