import assert from "node:assert/strict";
import { RescanPacer } from "./_rescan_pacer.ts";

Deno.test("rescan pacer: a quick rescan may follow at once", () => {
  const pacer = new RescanPacer();
  assert.equal(pacer.wait(0), 0, "the first rescan waits for nothing");
  pacer.done(100, 119);
  assert.equal(pacer.wait(119), 0);
});

Deno.test("rescan pacer: a long rescan is followed by nine times its length without one", () => {
  const pacer = new RescanPacer();
  pacer.done(1000, 1050);
  assert.equal(pacer.wait(1050), 450);
  assert.equal(pacer.wait(1300), 200);
  assert.equal(pacer.wait(1500), 0);
  // Rescans then take at most a tenth of the time.
  const busy = 50 / (50 + pacer.wait(1050));
  assert.ok(busy <= 0.1, `busy ${busy}`);
});

Deno.test("rescan pacer: the gap is bounded", () => {
  const pacer = new RescanPacer();
  pacer.done(0, 10_000);
  assert.equal(pacer.wait(10_000), 30_000);
});
