import assert from "node:assert/strict";
import { concatBytes, readFileHead, readFull, readFullSync, writeAll } from "./_io.ts";

/** A reader that hands out at most `step` bytes a call, as a socket may. */
function trickle(bytes: Uint8Array, step: number) {
  let pos = 0;
  const next = (p: Uint8Array): number | null => {
    if (pos >= bytes.length) return null;
    const n = Math.min(step, p.length, bytes.length - pos);
    p.set(bytes.subarray(pos, pos + n));
    pos += n;
    return n;
  };
  return { read: (p: Uint8Array) => Promise.resolve(next(p)), readSync: next };
}

Deno.test("readFull gathers short reads until the buffer is full", async () => {
  const src = Uint8Array.from({ length: 10 }, (_, i) => i);
  const buf = new Uint8Array(7);
  assert.equal(await readFull(trickle(src, 3), buf), 7);
  assert.deepEqual([...buf], [0, 1, 2, 3, 4, 5, 6]);
});

Deno.test("readFull stops at EOF and says how much it got", async () => {
  const buf = new Uint8Array(8);
  assert.equal(await readFull(trickle(new Uint8Array([9, 8, 7]), 2), buf), 3);
  assert.deepEqual([...buf.subarray(0, 3)], [9, 8, 7]);
});

Deno.test("readFullSync gathers short reads", () => {
  const buf = new Uint8Array(5);
  assert.equal(readFullSync(trickle(new Uint8Array([1, 2, 3, 4, 5, 6]), 2), buf), 5);
  assert.deepEqual([...buf], [1, 2, 3, 4, 5]);
});

Deno.test("writeAll keeps writing after partial writes", async () => {
  const seen: number[] = [];
  const writer = {
    write(p: Uint8Array) {
      const n = Math.min(2, p.length);
      seen.push(...p.subarray(0, n));
      return Promise.resolve(n);
    },
  };
  await writeAll(writer, new Uint8Array([5, 4, 3, 2, 1]));
  assert.deepEqual(seen, [5, 4, 3, 2, 1]);
});

Deno.test("concatBytes joins any number of parts", () => {
  assert.deepEqual([...concatBytes()], []);
  assert.deepEqual(
    [...concatBytes(new Uint8Array([1]), new Uint8Array(), new Uint8Array([2, 3]))],
    [1, 2, 3],
  );
});

Deno.test("readFileHead returns fewer bytes for a short file", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...await readFileHead(path, 2)], [1, 2]);
    assert.deepEqual([...await readFileHead(path, 10)], [1, 2, 3]);
  } finally {
    await Deno.remove(path);
  }
});
