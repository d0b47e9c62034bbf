// --retain: the oldest complete segments go first; .partial files, history files and segments
// a slot needs stay.

import assert from "node:assert/strict";
import { enforceRetention, parseSize } from "./retention.ts";

const SEG = 1 << 20;

async function fill(dir: string, names: string[]): Promise<void> {
  for (const n of names) await Deno.writeFile(`${dir}/${n}`, new Uint8Array(SEG));
}

async function list(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("retention: removes the oldest complete segments beyond the budget", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await fill(dir, [
      "000000010000000000000003",
      "000000010000000000000004",
      "000000010000000000000005.partial",
      "000000020000000000000005",
      "000000020000000000000006",
      "000000020000000000000007.partial",
    ]);
    await Deno.writeTextFile(`${dir}/00000002.history`, "1\t0/5000100\tx\n");
    // Six files, budget four: the two oldest complete ones go (3, 4), not the .partial.
    const removed = await enforceRetention(dir, { retainBytes: 4 * SEG, segmentSize: SEG });
    assert.deepEqual(removed, ["000000010000000000000003", "000000010000000000000004"]);
    // Budget one: everything complete would go, but a slot needs 0/6000010 (segment 6).
    const more = await enforceRetention(dir, {
      retainBytes: SEG,
      segmentSize: SEG,
      keepFrom: 0x600010n,
    });
    assert.deepEqual(more, ["000000020000000000000005"]);
    assert.deepEqual(await list(dir), [
      "000000010000000000000005.partial",
      "00000002.history",
      "000000020000000000000006",
      "000000020000000000000007.partial",
    ]);
    // Within budget: nothing to do.
    assert.deepEqual(await enforceRetention(dir, { retainBytes: 10 * SEG, segmentSize: SEG }), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("retention: a plain segment awaiting compression is neither counted nor removed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Four segments stored compressed, one completed but still plain, one written to its end
    // but not yet renamed, one being written.
    for (const n of [3, 4, 5, 6]) {
      await Deno.writeFile(`${dir}/00000001000000000000000${n}.zst`, new Uint8Array(SEG / 4));
    }
    await fill(dir, [
      "000000010000000000000007",
      "000000010000000000000008.partial",
      "000000010000000000000009.partial",
    ]);
    const queued = new Set(["000000010000000000000007", "000000010000000000000008.partial"]);
    const opts = {
      retainBytes: 2 * SEG,
      segmentSize: SEG,
      awaitsCompression: (n: string) => queued.has(n),
    };
    // Counted plain, 7 and 8 would push out every compressed segment; they await compression.
    assert.deepEqual(await enforceRetention(dir, opts), []);
    // Compressed, they count at their size on disk: one quarter segment each.
    for (const n of queued) {
      await Deno.writeFile(`${dir}/${n.replace(".partial", "")}.zst`, new Uint8Array(SEG / 4));
      await Deno.remove(`${dir}/${n}`);
    }
    queued.clear();
    assert.deepEqual(await enforceRetention(dir, opts), [
      "000000010000000000000003.zst",
      "000000010000000000000004.zst",
    ]);
    // A segment whose compression failed stays plain and counts at its plain size.
    await fill(dir, ["00000001000000000000000A"]);
    assert.deepEqual(await enforceRetention(dir, opts), [
      "000000010000000000000005.zst",
      "000000010000000000000006.zst",
      "000000010000000000000007.zst",
      "000000010000000000000008.zst",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("retention sizes", () => {
  assert.equal(parseSize("1024"), 1024);
  assert.equal(parseSize("64kB"), 65536);
  assert.equal(parseSize("1.5GB"), 1.5 * 1024 ** 3);
  assert.throws(() => parseSize("ten"), /invalid size/);
});
