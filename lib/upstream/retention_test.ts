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

Deno.test("retention sizes", () => {
  assert.equal(parseSize("1024"), 1024);
  assert.equal(parseSize("64kB"), 65536);
  assert.equal(parseSize("1.5GB"), 1.5 * 1024 ** 3);
  assert.throws(() => parseSize("ten"), /invalid size/);
});
