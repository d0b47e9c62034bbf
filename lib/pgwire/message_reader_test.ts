import assert from "node:assert/strict";
import { type ByteSource, MessageReader } from "./message_reader.ts";

/** A source handing out `bytes` as far as each read's buffer allows, recording each size. */
function source(bytes: Uint8Array): ByteSource & { sizes: number[] } {
  let at = 0;
  const sizes: number[] = [];
  return {
    sizes,
    read(p) {
      sizes.push(p.length);
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

/** A typed message: type, Int32 length, body. */
function message(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

Deno.test("MessageReader reads messages longer than its buffer, and several from one read", async () => {
  const long = new Uint8Array(3000).map((_, i) => i % 251);
  const bytes = new Uint8Array([
    ...message("Q", long),
    ...message("d", new Uint8Array([1, 2])),
    ...message("X", new Uint8Array()),
  ]);
  const reader = new MessageReader(source(bytes), { size: 16 });
  const a = await reader.readMessage(() => 1 << 20);
  assert.equal(a?.type, "Q");
  assert.deepEqual(a?.body, long);
  assert.deepEqual(await reader.readMessage(() => 100), {
    type: "d",
    body: new Uint8Array([1, 2]),
  });
  assert.equal((await reader.readMessage(() => 100))?.type, "X");
  assert.equal(await reader.readMessage(() => 100), null);
});

Deno.test("MessageReader goes back to its small buffer once a long message is read", async () => {
  const src = source(
    new Uint8Array([
      ...message("Q", new Uint8Array(5000)),
      ...message("d", new Uint8Array(10)),
      ...message("d", new Uint8Array(10)),
    ]),
  );
  const reader = new MessageReader(src, { size: 64, keep: 1024 });
  assert.equal((await reader.readMessage(() => 1 << 20))?.body.length, 5000);
  const before = src.sizes.length;
  assert.equal((await reader.readMessage(() => 100))?.body.length, 10);
  assert.equal((await reader.readMessage(() => 100))?.body.length, 10);
  // The reads after the long message offer no more than the small buffer.
  assert.ok(src.sizes.length > before);
  assert.ok(src.sizes.slice(before).every((n) => n <= 64), `read sizes ${src.sizes.slice(before)}`);
});

Deno.test("MessageReader keeps a grown buffer by default", async () => {
  const src = source(
    new Uint8Array([
      ...message("Q", new Uint8Array(5000)),
      ...message("d", new Uint8Array(6000)),
    ]),
  );
  const reader = new MessageReader(src, { size: 64 });
  await reader.readMessage(() => 1 << 20);
  const before = src.sizes.length;
  await reader.readMessage(() => 1 << 20);
  assert.ok(src.sizes.slice(before).some((n) => n > 64));
});

Deno.test("MessageReader offers each read its whole buffer once drained", async () => {
  // A standby's status updates, 39 bytes each, each arriving on its own, as they do one read
  // at a time: a drained buffer is read into from its start, so no update takes two reads.
  const update = message("d", new Uint8Array(34));
  const count = 100;
  let sent = 0;
  const sizes: number[] = [];
  let pending: Uint8Array | undefined;
  const reader = new MessageReader({
    read(p) {
      sizes.push(p.length);
      if (!pending) {
        if (sent === count) return Promise.resolve(null);
        sent++;
        pending = update;
      }
      const n = Math.min(p.length, pending.length);
      p.set(pending.subarray(0, n));
      pending = n < pending.length ? pending.subarray(n) : undefined;
      return Promise.resolve(n);
    },
  }, { size: 512 });
  for (let i = 0; i < count; i++) {
    assert.equal((await reader.readMessage(() => 100))?.body.length, 34);
  }
  assert.equal(await reader.readMessage(() => 100), null);
  // One read per update, and the one that finds the end.
  assert.equal(sizes.length, count + 1, `read sizes ${sizes}`);
  assert.ok(sizes.every((n) => n === 512), `read sizes ${sizes}`);
});
