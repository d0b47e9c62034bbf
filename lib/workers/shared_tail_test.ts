import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { within } from "../../tests/_timers.ts";
import { SharedTail } from "./shared_tail.ts";

function bytes(from: number, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
}

Deno.test("SharedTail: a copy wraps around the ring and keeps only what the ring still holds", () => {
  const relay = SharedTail.create(100, 1);
  const thread = new SharedTail(relay.buffer);
  relay.write(1, 0n, bytes(0, 60));
  relay.write(1, 60n, bytes(60, 70));
  const c = thread.copy(1, 0n, 1000);
  assert.equal(c.end, 130n);
  assert.equal(c.start, 30n);
  assert.deepEqual(c.bytes, bytes(30, 100));
  // At most `max`, the newest.
  const d = thread.copy(1, 0n, 10);
  assert.equal(d.start, 120n);
  assert.deepEqual(d.bytes, bytes(120, 10));
  // Nothing new.
  assert.equal(thread.copy(1, 130n, 1000).bytes.length, 0);
});

Deno.test("SharedTail: a new timeline or a gap begins the valid WAL anew", () => {
  const relay = SharedTail.create(100, 1);
  const thread = new SharedTail(relay.buffer);
  relay.write(1, 0n, bytes(0, 50));
  relay.write(2, 40n, bytes(140, 20));
  const c = thread.copy(1, 10n, 1000);
  assert.deepEqual({ tli: c.tli, start: c.start, end: c.end }, { tli: 2, start: 40n, end: 60n });
  assert.deepEqual(c.bytes, bytes(140, 20));
  relay.write(2, 80n, bytes(80, 5));
  const d = thread.copy(2, 60n, 1000);
  assert.equal(d.start, 80n);
  assert.deepEqual(d.bytes, bytes(80, 5));
});

Deno.test("SharedTail: a write larger than the ring keeps its newest bytes", () => {
  const relay = SharedTail.create(16, 1);
  relay.write(1, 0n, bytes(0, 50));
  const c = new SharedTail(relay.buffer).copy(1, 0n, 1000);
  assert.equal(c.start, 34n);
  assert.deepEqual(c.bytes, bytes(34, 16));
});

Deno.test("SharedTail: only threads that said their senders sleep are woken, once", () => {
  const relay = SharedTail.create(16, 3);
  const thread = new SharedTail(relay.buffer);
  thread.sleeping(3);
  thread.sleeping(1);
  relay.write(1, 0n, bytes(0, 4));
  assert.deepEqual(relay.wakeSleepers(), [1, 3]);
  assert.deepEqual(relay.wakeSleepers(), []);
});

Deno.test("SharedTail: a sleeping thread's wait ends when the relay's thread wakes it, not before", async () => {
  const relay = SharedTail.create(16, 2);
  const thread = new SharedTail(relay.buffer);
  thread.sleeping(2);
  const waiting = thread.woken(2);
  assert.equal(await within(waiting, 50, "still waiting"), "still waiting");
  relay.write(1, 0n, bytes(0, 4));
  assert.deepEqual(relay.wakeSleepers(), [2]);
  assert.equal(await within(waiting, 5000, "still waiting"), "ok");
  // Woken already: the wait ends at once.
  assert.equal(await within(thread.woken(2), 5000, "still waiting"), "not-equal");
});

Deno.test("SharedTail: the relay's thread wakes a sender thread whose event loop sleeps", async () => {
  const relay = SharedTail.create(16, 1);
  // The thread only waits: nothing else would wake its event loop.
  const code = `
    import { parentPort, workerData } from "node:worker_threads";
    import { SharedTail } from ${JSON.stringify(new URL("./shared_tail.ts", import.meta.url).href)};
    const tail = new SharedTail(workerData);
    tail.sleeping(1);
    const woken = tail.woken(1);
    parentPort.postMessage("asleep");
    parentPort.postMessage(await woken);
  `;
  const file = await Deno.makeTempFile({ suffix: ".js" });
  await Deno.writeTextFile(file, code);
  const worker = new Worker(new URL(`file://${file}`), { workerData: relay.buffer });
  const said: unknown[] = [];
  let heard = Promise.withResolvers<void>();
  worker.on("message", (m) => {
    said.push(m);
    heard.resolve();
    heard = Promise.withResolvers();
  });
  try {
    if (said.length === 0) await within(heard.promise, 5000, "still waiting");
    assert.deepEqual(said, ["asleep"]);
    relay.write(1, 0n, bytes(0, 4));
    assert.deepEqual(relay.wakeSleepers(), [1]);
    if (said.length === 1) await within(heard.promise, 5000, "still waiting");
    assert.deepEqual(said, ["asleep", "ok"]);
  } finally {
    await worker.terminate();
    await Deno.remove(file);
  }
});
