import assert from "node:assert/strict";
import { Latch } from "./latch.ts";
import { countTimers } from "../../tests/_timers.ts";

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

Deno.test("latch: waits of one period begun at different moments end together, none early", async () => {
  const latch = new Latch();
  // The test's own pauses are not counted.
  const real = globalThis.setTimeout;
  let lasted: number[] = [];
  const armed = await countTimers(async () => {
    const waits: Promise<number>[] = [];
    // Four waits within 15 ms, less than the grid's step of half the timeout.
    for (let i = 0; i < 4; i++) {
      const begun = performance.now();
      waits.push(
        latch.wait(60).then((set) => {
          assert.equal(set, false);
          return performance.now() - begun;
        }),
      );
      if (i < 3) await new Promise((r) => real(r, 5));
    }
    lasted = await Promise.all(waits);
  });
  // Timers may fire a millisecond early by performance.now(), as the latch allows.
  for (const ms of lasted) assert.ok(ms >= 59, `a wait of 60 ms lasted ${ms}`);
  // Within one step they span at most two points of the grid: one timer each, not one a wait.
  assert.ok(armed <= 2, `${armed} timers for the four waits`);
});

Deno.test("latch: a joined waiter costs no timer per set; leaving with no one waiting clears it", async () => {
  const latch = new Latch();
  const rounds = async () => {
    for (let i = 0; i < 20; i++) {
      const woken = latch.wait(5000);
      latch.set();
      assert.equal(await woken, true);
    }
  };
  assert.equal(await countTimers(rounds), 20, "each wait arms the timer a set cleared");
  const member = latch.join();
  assert.equal(await countTimers(rounds), 1, "armed once, kept across the sets");
  // Still armed for a wait to come: only leaving clears it (the test's sanitizer checks that).
  member[Symbol.dispose]();
  member[Symbol.dispose]();
  assert.equal(await latch.wait(5), false, "a wait after leaving times out as before");
});

Deno.test("latch: a joined waiter still times out, and a member leaving keeps the timer of those waiting", async () => {
  const latch = new Latch();
  const member = latch.join();
  const first = latch.wait(5000);
  latch.set();
  assert.equal(await first, true);
  assert.equal(await latch.wait(10), false, "the kept timer does not delay a shorter wait");
  const other = latch.join();
  const waiting = latch.wait(20);
  member[Symbol.dispose]();
  other[Symbol.dispose]();
  assert.equal(await waiting, false, "the timer outlives the members while someone waits");
});
