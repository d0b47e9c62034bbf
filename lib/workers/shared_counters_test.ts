import assert from "node:assert/strict";
import { SharedCounters } from "./shared_counters.ts";

Deno.test("SharedCounters: threads racing for the last places never take more than the limit", async () => {
  const counters = SharedCounters.create(10_000);
  const code = `
    import { SharedCounters } from ${
    JSON.stringify(new URL("./shared_counters.ts", import.meta.url).href)
  };
    self.onmessage = (e) => {
      const c = new SharedCounters(e.data.buffer);
      const go = new Int32Array(e.data.go);
      let over = 0, taken = 0;
      const pids = [];
      // Every thread starts at once, so they truly race.
      Atomics.add(go, 1, 1);
      Atomics.wait(go, 0, 0);
      for (let i = 0; i < 200000; i++) {
        if (!c.tryAcquire(3)) continue;
        taken++;
        // Holders counted apart: more than three at once means a place was taken twice.
        if (Atomics.add(go, 2, 1) >= 3) over++;
        if (pids.length < 100) pids.push(c.nextPid());
        Atomics.sub(go, 2, 1);
        c.release();
      }
      self.postMessage({ over, taken, pids });
      self.close();
    };`;
  const go = new Int32Array(new SharedArrayBuffer(12));
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  const running = Promise.all([0, 1, 2].map(() => {
    const w = new Worker(url, { type: "module" });
    const { promise, resolve, reject } = Promise.withResolvers<
      { over: number; taken: number; pids: number[] }
    >();
    w.onmessage = (e) => {
      resolve(e.data);
      w.terminate();
    };
    w.onerror = (e) => {
      e.preventDefault();
      reject(new Error(e.message));
      w.terminate();
    };
    w.postMessage({ buffer: counters.buffer, go: go.buffer });
    return promise;
  }));
  while (Atomics.load(go, 1) < 3) await new Promise((r) => setTimeout(r, 10));
  Atomics.store(go, 0, 1);
  Atomics.notify(go, 0);
  const results = await running;
  URL.revokeObjectURL(url);
  for (const r of results) {
    assert.equal(r.over, 0);
    assert.ok(r.taken > 0);
  }
  assert.equal(counters.senders, 0, "every place was given back");
  const pids = results.flatMap((r) => r.pids);
  assert.equal(new Set(pids).size, pids.length, "no pid handed out twice");
});

Deno.test("SharedCounters: the connection limit is counted apart from the sender limit", () => {
  const c = SharedCounters.create(10_000);
  assert.ok(c.tryConnect(1));
  assert.equal(c.tryConnect(1), false);
  assert.ok(c.tryAcquire(1), "senders are counted on their own");
  c.disconnect();
  assert.ok(c.tryConnect(1));
});
