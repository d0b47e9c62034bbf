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

Deno.test("latch: an abort wakes the waiters of that signal only, however often they waited", async () => {
  const latch = new Latch();
  const ac = new AbortController();
  const other = new AbortController();
  // A caught-up sender waits again after each wake, with the same signal.
  for (let i = 0; i < 3; i++) {
    const w = latch.wait(5000, ac.signal);
    latch.set();
    assert.equal(await w, true);
  }
  const mine = [latch.wait(5000, ac.signal), latch.wait(5000, ac.signal)];
  const theirs = latch.wait(5000, other.signal);
  const plain = latch.wait(5000);
  ac.abort();
  assert.deepEqual(await Promise.all(mine), [false, false]);
  latch.set();
  assert.deepEqual(await Promise.all([theirs, plain]), [true, true]);
});

Deno.test("latch: a timeout ends one wait and leaves the others waiting", async () => {
  const latch = new Latch();
  const long = latch.wait(5000);
  assert.equal(await latch.wait(5), false);
  latch.set();
  assert.equal(await long, true);
});

Deno.test("latch: one timer serves waits of different lengths, each ending in its turn", async () => {
  const latch = new Latch();
  const order: string[] = [];
  const long = latch.wait(5000).then((set) => order.push(`long ${set}`));
  const later = latch.wait(40).then((set) => order.push(`later ${set}`));
  const sooner = latch.wait(10).then((set) => order.push(`sooner ${set}`));
  await Promise.all([sooner, later]);
  assert.deepEqual(order, ["sooner false", "later false"]);
  latch.set();
  await long;
  assert.deepEqual(order, ["sooner false", "later false", "long true"]);
  // Set with no one waiting, then a wait: it still times out (the timer is armed again).
  latch.set();
  assert.equal(await latch.wait(5), false);
});
