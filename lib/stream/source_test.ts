import assert from "node:assert/strict";
import { WalStore } from "../wal/store.ts";
import { openWalSource } from "./source.ts";
import { WalSegmentRemovedError } from "../wal/errors.ts";
import { WalSegmentDamagedError } from "../wal/segment_validation.ts";
import { copyTestdata, TESTDATA } from "../../tests/_pg.ts";
import { countTimers } from "../../tests/_timers.ts";

// The generator's list of the sample's files, independent of what the store makes of them.
const manifest: { files: { name: string }[] } = JSON.parse(
  await Deno.readTextFile(new URL("../../testdata/wal.json", import.meta.url)),
);

async function collect(stream: ReadableStream<{ start: bigint; bytes: Uint8Array }>) {
  const parts = await Array.fromAsync(stream);
  const out = new Uint8Array(parts.reduce((n, c) => n + c.bytes.length, 0));
  let n = 0;
  for (const c of parts) {
    out.set(c.bytes, n);
    n += c.bytes.length;
  }
  return { start: parts[0]?.start, bytes: out };
}

Deno.test("source: streams a historic timeline to its switch point, byte-identical", async () => {
  const store = await WalStore.open(TESTDATA);
  const first = manifest.files.find((f) => f.name.startsWith("00000001"))!;
  const start = BigInt(parseInt(first.name.slice(16), 16)) * BigInt(store.identity.segmentSize);
  const got = await collect(openWalSource(store, { tli: 1, start }));
  const switchPoint = store.endOf(1);
  assert.equal(got.start, start);
  assert.equal(BigInt(got.bytes.length), switchPoint - start, "ends exactly at the switch point");
  // Compare with the files: TLI 1 segments, then the TLI 2 file for the switch segment.
  const seg = store.identity.segmentSize;
  for (let lsn = start; lsn < switchPoint; lsn += BigInt(seg)) {
    const segno = lsn / BigInt(seg);
    const file = store.segmentFile(1, segno)!;
    const bytes = await Deno.readFile(store.path(file.name));
    const n = Number(switchPoint - lsn < BigInt(seg) ? switchPoint - lsn : BigInt(seg));
    const off = Number(lsn - start);
    assert.deepEqual(got.bytes.subarray(off, off + n), bytes.subarray(0, n), file.name);
  }
});

Deno.test("source: a missing segment is WalSegmentRemovedError (58P01 for the client)", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    const newest = store.segments(store.timeline).at(-1)!;
    await Deno.remove(store.path(newest.name));
    await store.refresh();
    const start = newest.segno * BigInt(store.identity.segmentSize);
    await assert.rejects(
      collect(openWalSource(store, { tli: store.timeline, start, stopAt: () => start + 100n })),
      (e: unknown) =>
        e instanceof WalSegmentRemovedError && e.fileName === newest.name &&
        e.message === `requested WAL segment ${newest.name} has already been removed`,
    );
    // Before the first segment: nothing was ever there.
    await assert.rejects(
      collect(openWalSource(store, { tli: 1, start: 0n, stopAt: () => 100n })),
      WalSegmentRemovedError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("source: a caught-up source wakes when a new segment lands", async () => {
  const dir = await copyTestdata();
  try {
    // Hide the newest segment before the store first looks: its end never moves backwards.
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
      /^[0-9A-F]{24}$/.test(n)
    );
    const lastName = names.sort().at(-1)!;
    const hidden = `${dir}/hidden`;
    await Deno.rename(`${dir}/${lastName}`, hidden);
    const store = await WalStore.open(dir);
    const last = { name: lastName };
    const end = store.endLsn;
    const ac = new AbortController();
    const reader = openWalSource(store, { tli: store.timeline, start: end, signal: ac.signal })
      .getReader();
    const next = reader.read();
    await new Promise((r) => setTimeout(r, 50));
    await Deno.rename(hidden, store.path(last.name));
    const t0 = performance.now();
    await store.refresh();
    const { value } = await next;
    assert.ok(performance.now() - t0 < 500, "woken by the latch, not by the periodic wake");
    assert.equal(value?.start, end);
    ac.abort();
    await reader.cancel();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("source: a recycled segment (an older one under a newer name) is 58P01, not sent", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    const [a, b] = store.segments(1);
    // What a recycled pg_wal file looks like: the old segment's pages under the next name.
    await Deno.copyFile(store.path(a!.name), store.path(b!.name));
    const start = b!.segno * BigInt(store.identity.segmentSize);
    await assert.rejects(
      collect(openWalSource(store, { tli: 1, start, stopAt: () => start + 8192n })),
      (e: unknown) =>
        e instanceof WalSegmentRemovedError && e.fileName === b!.name &&
        e.message === `requested WAL segment ${b!.name} has already been removed`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("source: WAL noted durable is served from memory, older WAL from the files", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    // Pretend a writer just fsynced the last 8 kB of the newest segment as it stands.
    const last = store.segments(store.timeline).at(-1)!;
    const bytes = await Deno.readFile(store.path(last.name));
    const end = store.endLsn;
    const tailStart = end - 8192n;
    const off = Number(tailStart - last.segno * BigInt(store.identity.segmentSize));
    store.noteDurable(store.timeline, tailStart, bytes.slice(off, off + 8192));
    const seen: string[] = [];
    const chunks = await Array.fromAsync(openWalSource(store, {
      tli: store.timeline,
      start: tailStart - 16384n,
      stopAt: () => end,
      onRead: (s) => seen.push(s),
    }));
    assert.deepEqual(seen, ["disk", "memory"]);
    const mem = chunks.at(-1)!;
    assert.equal(mem.start, tailStart);
    assert.deepEqual(mem.bytes, bytes.subarray(off, off + 8192), "memory holds the same bytes");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("source: a .partial renamed to its final name after the store listed it is still read", async () => {
  const dir = await copyTestdata();
  try {
    // The newest segment arrives as a .partial, as pg_receivewal and the relay's writer leave it.
    await Deno.rename(`${dir}/00000002000000000000000B`, `${dir}/00000002000000000000000B.partial`);
    const store = await WalStore.open(dir);
    assert.equal(store.segmentFile(2, 0xbn)?.name, "00000002000000000000000B.partial");
    // Completed and renamed before any sender opened it; the store has not rescanned yet.
    await Deno.rename(`${dir}/00000002000000000000000B.partial`, `${dir}/00000002000000000000000B`);
    const ac = new AbortController();
    const reader = openWalSource(store, { tli: 2, start: 0xb00000n, signal: ac.signal })
      .getReader();
    const first = await reader.read();
    ac.abort();
    await reader.cancel();
    assert.ok(first.value, "no WAL from the renamed segment");
    const file = await Deno.readFile(`${dir}/00000002000000000000000B`);
    assert.deepEqual(first.value.bytes, file.subarray(0, first.value.bytes.length));
    assert.equal(store.segmentFile(2, 0xbn)?.name, "00000002000000000000000B");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("source: a damaged complete segment is sent up to its last valid record, then fails", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    const seg = store.identity.segmentSize;
    const damaged = store.segmentFile(1, 7n)!;
    const original = await Deno.readFile(store.path(damaged.name));
    const bad = original.slice();
    bad[500_000]! ^= 0x20;
    await Deno.writeFile(store.path(damaged.name), bad);
    const check = (await store.checkSegment(1, 7n))!;
    assert.ok(check.error && check.validEnd > 0x700000n && check.validEnd < 0x700000n + 500_000n);

    // Two clients at once, from the previous segment: both get the valid WAL before the damage,
    // byte for byte, then the error; the segment is validated once for both.
    const runs = store.validations.runs;
    const client = async () => {
      const chunks: { start: bigint; bytes: Uint8Array; walEnd: bigint }[] = [];
      const error = await (async () => {
        try {
          for await (const c of openWalSource(store, { tli: 1, start: 0x600000n })) {
            chunks.push({ ...c, bytes: c.bytes.slice() });
          }
        } catch (e) {
          return e;
        }
      })();
      return { chunks, error };
    };
    const results = await Promise.all([client(), client()]);
    for (const { chunks, error } of results) {
      assert.ok(error instanceof WalSegmentDamagedError, String(error));
      assert.equal(error.fileName, damaged.name);
      assert.equal(error.failure.message, check.error?.message);
      const last = chunks.at(-1)!;
      assert.equal(last.start + BigInt(last.bytes.length), check.validEnd);
      // The last chunk says where the valid WAL ends, so nothing holds its partial page back.
      assert.equal(last.walEnd, check.validEnd);
      const got = await collect(ReadableStream.from(chunks));
      const served: number = Number(check.validEnd - 0x700000n);
      assert.deepEqual(got.bytes.subarray(seg, seg + served), original.subarray(0, served));
    }
    // Segment 6 once for both clients; the damaged segment was not validated again.
    assert.equal(store.validations.runs, runs + 1);

    // A client starting past the damage gets the error at once, nothing else.
    const past = 0x700000n + 600_000n - (0x700000n + 600_000n) % 8192n;
    await assert.rejects(
      collect(openWalSource(store, { tli: 1, start: past })),
      WalSegmentDamagedError,
    );
    // An undamaged range is served as ever.
    const before = await collect(
      openWalSource(store, { tli: 1, start: 0x600000n, stopAt: () => 0x700000n }),
    );
    assert.equal(before.bytes.length, seg);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("source: runs of a complete segment are read once for every sender sharing a cache", async () => {
  const { BufferPool, FRAME_HEADROOM, MAX_SEND_SIZE } = await import("./chunk.ts");
  const { WalBlockCache } = await import("./block_cache.ts");
  const store = await WalStore.open(TESTDATA);
  const seg = store.identity.segmentSize;
  const file = store.segmentFile(store.timeline, BigInt(store.endLsn / BigInt(seg)) - 1n)!;
  const start = file.segno * BigInt(seg);
  const cache = new WalBlockCache();
  using _a = cache.join();
  using _b = cache.join();
  // A run comes as its first chunk, carrying the others.
  const read = async () =>
    (await Array.fromAsync(openWalSource(store, {
      tli: store.timeline,
      start,
      stopAt: () => start + BigInt(seg),
      pool: new BufferPool(4 * (FRAME_HEADROOM + MAX_SEND_SIZE), 2),
      cache,
    }))).flatMap((c) => [c, ...(c.rest ?? [])]);
  const first = await read();
  const second = await read();
  const runs = seg / (4 * MAX_SEND_SIZE);
  assert.deepEqual(cache.stats, {
    hits: runs,
    misses: runs,
    evictions: 0,
    bytes: runs * 4 * (FRAME_HEADROOM + MAX_SEND_SIZE),
    maxBytes: 32 * 1024 * 1024,
  });
  assert.equal(second[0]!.bytes.buffer, first[0]!.bytes.buffer, "the same buffer, not a copy");
  assert.deepEqual(
    second.map((c) => [c.start, c.more ?? false]),
    first.map((c) => [c.start, c.more ?? false]),
  );
  const whole = (await collect(ReadableStream.from(second))).bytes;
  assert.deepEqual(whole, await Deno.readFile(store.path(file.name)));
});

Deno.test("source: a caught-up source arms no timer per advance, and leaves none when it ends", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    const ac = new AbortController();
    let at = store.endLsn;
    const reader = openWalSource(store, { tli: store.timeline, start: at, signal: ac.signal })
      .getReader();
    const armed = await countTimers(async () => {
      for (let i = 0; i < 20; i++) {
        const next = reader.read();
        // The source is asleep on the latch when the advance comes (a relay's commit).
        await new Promise((resolve) => queueMicrotask(() => resolve(undefined)));
        store.noteDurable(store.timeline, at, new Uint8Array(8192).fill(i));
        const { value } = await next;
        assert.equal(value?.start, at);
        at += 8192n;
      }
    });
    assert.ok(armed <= 1, `${armed} timers armed for 20 advances`);
    const last = reader.read();
    ac.abort();
    assert.equal((await last).done, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
