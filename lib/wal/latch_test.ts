import assert from "node:assert/strict";
import { Latch } from "./latch.ts";

Deno.test("latch: set wakes every waiter at once", async () => {
  const latch = new Latch();
  const waiters = [latch.wait(5000), latch.wait(5000), latch.wait(5000)];
  latch.set();
  assert.deepEqual(await Promise.all(waiters), [true, true, true]);
});

Deno.test("latch: a timeout or an abort ends the wait without the latch", async () => {
  const latch = new Latch();
  assert.equal(await latch.wait(5), false);
  const ac = new AbortController();
  const w = latch.wait(5000, ac.signal);
  ac.abort();
  assert.equal(await w, false);
  assert.equal(await latch.wait(5000, ac.signal), false, "an aborted signal returns at once");
});
