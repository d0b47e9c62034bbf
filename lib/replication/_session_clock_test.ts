import assert from "node:assert/strict";
import { everyPeriod } from "./_session_clock.ts";
import { delay } from "../../tests/_pg.ts";
import { countIntervals } from "../../tests/_timers.ts";

Deno.test("session clock: sessions of one period share one timer, and each is called", async () => {
  const ticks = [0, 0, 0, 0];
  const started = await countIntervals(async () => {
    const clocks = [
      everyPeriod(20, () => ticks[0]!++),
      everyPeriod(20, () => ticks[1]!++),
      everyPeriod(20, () => ticks[2]!++),
      everyPeriod(30, () => ticks[3]!++),
    ];
    await delay(100);
    for (const c of clocks) c[Symbol.dispose]();
  });
  assert.deepEqual([...started], [[20, 1], [30, 1]]);
  for (const t of ticks) assert.ok(t >= 1, `ticks ${ticks}`);
});

Deno.test("session clock: a session that left is not called, and the last one out stops the timer", async () => {
  let a = 0;
  let b = 0;
  const ca = everyPeriod(10, () => a++);
  const cb = everyPeriod(10, () => b++);
  await delay(40);
  ca[Symbol.dispose]();
  ca[Symbol.dispose](); // twice is harmless
  const aLeft = a;
  const bThen = b;
  await delay(40);
  assert.equal(a, aLeft);
  assert.ok(b > bThen, "the other session still ticks");
  // The test's op sanitizer fails it if the interval outlives the last session.
  cb[Symbol.dispose]();
  // A new session after that starts a new timer.
  let c = 0;
  {
    using _cc = everyPeriod(10, () => c++);
    await delay(40);
  }
  assert.ok(c >= 1);
});

Deno.test("session clock: a session leaving from its own tick leaves the others ticking", async () => {
  let others = 0;
  const self: Disposable = everyPeriod(10, () => self[Symbol.dispose]());
  const other = everyPeriod(10, () => others++);
  await delay(50);
  other[Symbol.dispose]();
  assert.ok(others >= 2, `others ${others}`);
});
