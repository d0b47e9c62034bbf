import assert from "node:assert/strict";
import { decodeLz4Frame } from "./_lz4.ts";
import { pipeThroughTool } from "./_test_utils.ts";

/** Where `a` and `b` first differ, -1 when they are equal (a failing deepEqual of megabytes
 * would build a diff of them). */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

Deno.test("lz4 decoder: runs of every period, as liblz4 writes them, decode byte for byte", async () => {
  // Long matches shorter than their offset and overlapping ones (a run of zeros is offset 1),
  // between literals, so every way of copying a match is taken.
  const plain = new Uint8Array(3 << 20);
  let at = 0;
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 8;
  for (const period of [1, 2, 3, 7, 16, 31, 32, 33, 100, 1000, 5000]) {
    for (const length of [5, 31, 32, 33, 64, 1000, 70_000]) {
      for (let i = 0; i < 1 + (rnd() % 40); i++) plain[at++] = rnd() & 0xff;
      const start = at;
      for (let i = 0; i < period; i++) plain[at++] = rnd() & 0xff;
      for (let i = 0; i < length; i++, at++) plain[at] = plain[at - period]!;
      assert.ok(at - start < plain.length);
    }
  }
  const data = plain.subarray(0, at);
  for (const args of [["-BD", "-B4"], ["-B4"], ["-1"], ["-9"]]) {
    const frame = await pipeThroughTool("lz4", ["-q", "-c", "--no-frame-crc", ...args], data);
    const grown = decodeLz4Frame(frame, 0);
    assert.equal(grown.stop, null, args.join(" "));
    assert.equal(firstDifference(grown.data, data), -1, `${args.join(" ")}: grown buffer`);
    const into = new Uint8Array(new SharedArrayBuffer(data.length));
    const fixed = decodeLz4Frame(frame, 0, false, into);
    assert.equal(fixed.stop, null, args.join(" "));
    assert.equal(fixed.data.buffer, into.buffer);
    assert.equal(firstDifference(fixed.data, data), -1, `${args.join(" ")}: given buffer`);
    // A buffer one byte short is a frame that decodes past it.
    const short = decodeLz4Frame(frame, 0, false, new Uint8Array(data.length - 1));
    assert.equal(short.stop, "corrupt", args.join(" "));
  }
});
