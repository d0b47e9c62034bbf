import assert from "node:assert/strict";
import { WalBlockCache } from "./block_cache.ts";

const fillWith = (value: number, counter: { n: number }) => (buffer: ArrayBuffer): void => {
  counter.n++;
  new Uint8Array(buffer).fill(value);
};

Deno.test("block cache: a block is read once for every taker, keyed by segment and offset", () => {
  const cache = new WalBlockCache({ maxBytes: 4096 });
  const reads = { n: 0 };
  const a = cache.getOrFill("seg", 0, 1024, fillWith(1, reads));
  const b = cache.getOrFill("seg", 0, 1024, fillWith(2, reads));
  const c = cache.getOrFill("seg", 1024, 1024, fillWith(3, reads));
  const d = cache.getOrFill("other", 0, 1024, fillWith(4, reads));
  assert.equal(a, b);
  assert.equal(reads.n, 3);
  assert.deepEqual([a, c, d].map((x) => new Uint8Array(x.buffer)[0]), [1, 3, 4]);
  assert.equal(a.holders, 2);
  assert.deepEqual(cache.stats, { hits: 1, misses: 3, evictions: 0, bytes: 3072, maxBytes: 4096 });
});

Deno.test("block cache: the least recently used block goes first, and the size stays bounded", () => {
  const cache = new WalBlockCache({ maxBytes: 2048 });
  const reads = { n: 0 };
  const a = cache.getOrFill("seg", 0, 1024, fillWith(1, reads));
  cache.getOrFill("seg", 1024, 1024, fillWith(2, reads));
  cache.getOrFill("seg", 0, 1024, fillWith(1, reads)); // a is now the most recent
  cache.getOrFill("seg", 2048, 1024, fillWith(3, reads)); // evicts offset 1024
  assert.equal(cache.stats.bytes, 2048);
  assert.equal(cache.stats.evictions, 1);
  assert.equal(cache.getOrFill("seg", 0, 1024, fillWith(9, reads)), a);
  assert.equal(reads.n, 3);
  cache.getOrFill("seg", 1024, 1024, fillWith(2, reads));
  assert.equal(reads.n, 4, "the evicted block is read again");
});

Deno.test("block cache: an evicted buffer is filled again only once no one holds it", () => {
  const cache = new WalBlockCache({ maxBytes: 1024 });
  const reads = { n: 0 };
  const a = cache.getOrFill("seg", 0, 1024, fillWith(1, reads));
  const b = cache.getOrFill("seg", 1024, 1024, fillWith(2, reads)); // evicts a, still held
  assert.ok(a.evicted);
  assert.equal(new Uint8Array(a.buffer)[0], 1);
  const c = cache.getOrFill("seg", 2048, 1024, fillWith(3, reads)); // evicts b, still held
  assert.notEqual(c.buffer, a.buffer, "a held buffer is never refilled");
  cache.release(a);
  cache.release(a); // a second release of the same hold changes nothing
  cache.release(b);
  const d = cache.getOrFill("seg", 3072, 1024, fillWith(4, reads)); // evicts c, held
  assert.ok([a.buffer, b.buffer].includes(d.buffer), "a released, evicted buffer is reused");
  assert.equal(new Uint8Array(d.buffer)[0], 4);
  assert.equal(cache.blockOf(d.buffer), d);
});

Deno.test("block cache: buffers released after eviction are kept for misses, up to half the cache", () => {
  const cache = new WalBlockCache({ maxBytes: 32 * 1024 });
  const reads = { n: 0 };
  const held = [];
  for (let i = 0; i < 32; i++) {
    held.push(cache.getOrFill("seg", i * 1024, 1024, fillWith(1, reads)));
  }
  // Thirty-two more, held too, evict the first thirty-two.
  for (let i = 32; i < 64; i++) cache.getOrFill("seg", i * 1024, 1024, fillWith(2, reads));
  assert.ok(held.every((b) => b.evicted));
  for (const b of held) cache.release(b);
  // Half the cache's worth came back to the spares; the rest was left to the collector.
  const kept = new Set(held.map((b) => b.buffer));
  let reused = 0;
  for (let i = 64; i < 96; i++) {
    if (kept.has(cache.getOrFill("seg", i * 1024, 1024, fillWith(3, reads)).buffer)) reused++;
  }
  assert.equal(reused, 16);
});

Deno.test("block cache: a block whose write is in flight is not refilled, even unheld", () => {
  const cache = new WalBlockCache({ maxBytes: 1024 });
  const reads = { n: 0 };
  const a = cache.getOrFill("seg", 0, 1024, fillWith(1, reads));
  a.inFlight++;
  cache.release(a);
  cache.getOrFill("seg", 1024, 1024, fillWith(2, reads)); // evicts a while it is being sent
  const c = cache.getOrFill("seg", 2048, 1024, fillWith(3, reads));
  assert.notEqual(c.buffer, a.buffer);
  assert.equal(new Uint8Array(a.buffer)[0], 1);
});

Deno.test("block cache: a fill that throws caches nothing", () => {
  const cache = new WalBlockCache();
  assert.throws(() =>
    cache.getOrFill("seg", 0, 1024, () => {
      throw new Error("removed");
    }), /removed/);
  const reads = { n: 0 };
  cache.getOrFill("seg", 0, 1024, fillWith(1, reads));
  assert.equal(reads.n, 1);
  assert.deepEqual(cache.stats, {
    hits: 0,
    misses: 2,
    evictions: 0,
    bytes: 1024,
    maxBytes: 32 * 1024 * 1024,
  });
});

Deno.test("block cache: shared only while two or more senders have joined", () => {
  const cache = new WalBlockCache();
  assert.equal(cache.shared, false);
  const a = cache.join();
  assert.equal(cache.shared, false);
  {
    using _b = cache.join();
    assert.equal(cache.shared, true);
  }
  assert.equal(cache.shared, false);
  a[Symbol.dispose]();
  a[Symbol.dispose]();
  using _c = cache.join();
  assert.equal(cache.shared, false, "a second dispose does not count twice");
});

Deno.test("block cache: the block whose next reader is farthest away goes first", () => {
  const cache = new WalBlockCache({ maxBytes: 3072 });
  const reads = { n: 0 };
  using a = cache.join();
  using b = cache.join();
  using filler = cache.join(); // asks for every block: not among those still to read them
  a.position = 0n;
  b.position = 10_000n;
  for (const lsn of [1000n, 30_000n, 12_000n, 5000n]) {
    filler.position = lsn;
    cache.getOrFill("seg", Number(lsn), 1024, fillWith(1, reads), { lsn, reader: filler });
  }
  // Next reads: 1000 and 5000 by a, 12000 by b soon, 30000 by b 20000 bytes later.
  assert.equal(cache.stats.evictions, 1);
  for (const lsn of [1000n, 12_000n, 5000n]) {
    cache.getOrFill("seg", Number(lsn), 1024, fillWith(2, reads), { lsn });
  }
  assert.equal(reads.n, 4, "1000, 12000 and 5000 stayed");
  cache.getOrFill("seg", 30_000, 1024, fillWith(2, reads), { lsn: 30_000n });
  assert.equal(reads.n, 5, "30000 went");
});

Deno.test("block cache: a block no one holds goes before a held one, whose buffer could not be reused", () => {
  const cache = new WalBlockCache({ maxBytes: 2048 });
  const reads = { n: 0 };
  using a = cache.join();
  using b = cache.join();
  a.position = 0n;
  b.position = 10_000n;
  // Held (its sender is writing it): next read 10000 bytes away, by b.
  const far = cache.getOrFill("seg", 20_000, 1024, fillWith(1, reads), { lsn: 20_000n });
  // Sent and released: next read 1000 bytes away, by a.
  const near = cache.getOrFill("seg", 1000, 1024, fillWith(2, reads), { lsn: 1000n });
  cache.release(near);
  const third = cache.getOrFill("seg", 3000, 1024, fillWith(3, reads), { lsn: 3000n });
  assert.equal(near.evicted, true, "the unheld block went");
  assert.equal(far.evicted, false, "the held one stayed");
  cache.release(third);
  cache.getOrFill("seg", 4000, 1024, fillWith(4, reads), { lsn: 4000n });
  assert.equal(third.evicted, true, "again the unheld block, not the held one");
  const again = cache.getOrFill("seg", 20_000, 1024, fillWith(5, reads), { lsn: 20_000n });
  assert.equal(again, far);
  assert.equal(reads.n, 4);
  // The last miss was filled into the buffer the first eviction freed.
  assert.equal(cache.blockOf(near.buffer)?.at, 4000);
});

Deno.test("block cache: a block every reader has passed goes first, however recent", () => {
  const cache = new WalBlockCache({ maxBytes: 3072 });
  const reads = { n: 0 };
  using a = cache.join();
  using b = cache.join();
  a.position = 5000n;
  b.position = 6000n;
  for (const lsn of [7000n, 9000n, 1000n]) {
    cache.getOrFill("seg", Number(lsn), 1024, fillWith(1, reads), { lsn });
  }
  cache.getOrFill("seg", 8000, 1024, fillWith(1, reads), { lsn: 8000n });
  for (const lsn of [7000n, 9000n, 8000n]) {
    cache.getOrFill("seg", Number(lsn), 1024, fillWith(1, reads), { lsn });
  }
  assert.equal(reads.n, 4, "1000 went, the most recently filled before 8000");
});

Deno.test("block cache: without readers' positions, least recently used goes first", () => {
  const cache = new WalBlockCache({ maxBytes: 2048 });
  const reads = { n: 0 };
  using _a = cache.join();
  using _b = cache.join();
  cache.getOrFill("seg", 0, 1024, fillWith(1, reads), { lsn: 0n });
  cache.getOrFill("seg", 1024, 1024, fillWith(2, reads), { lsn: 1024n });
  cache.getOrFill("seg", 0, 1024, fillWith(1, reads), { lsn: 0n });
  cache.getOrFill("seg", 2048, 1024, fillWith(3, reads), { lsn: 2048n });
  cache.getOrFill("seg", 0, 1024, fillWith(1, reads), { lsn: 0n });
  assert.equal(reads.n, 3, "offset 0, used last but one, stayed");
});

Deno.test("block cache: a sender far ahead waits only for moving senders within four caches", () => {
  let now = 1000;
  const cache = new WalBlockCache({ maxBytes: 1024, now: () => now });
  using lead = cache.join();
  assert.equal(cache.holdBack(lead), false, "alone");
  lead.position = 10_000n;
  using close = cache.join();
  close.position = 10_000n - 512n; // half the cache behind: still sharing
  assert.equal(cache.holdBack(lead), false);
  using behind = cache.join();
  behind.position = 10_000n - 513n;
  assert.equal(cache.holdBack(lead), true, "more than half the cache behind");
  assert.equal(cache.holdBack(behind), false, "the rearmost is never held");
  assert.equal(cache.holdBack(close), false);
  now += 50;
  assert.equal(cache.holdBack(lead), false, "a sender that stopped holds no one");
  behind.position = 10_000n - 4096n; // moved (backwards even): four caches behind, another group
  assert.equal(cache.holdBack(lead), false);
  behind.position = 10_000n - 4095n;
  assert.equal(cache.holdBack(lead), true);
  behind[Symbol.dispose]();
  assert.equal(cache.holdBack(lead), false, "a sender gone holds no one");
});
