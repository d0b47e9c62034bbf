import assert from "node:assert/strict";
import { within } from "../../tests/_timers.ts";
import { FLOWING_MS, ReplyPacer } from "./_reply_pacer.ts";

/** Whether `p` settles before `ms` (a hung wait fails the test instead of hanging it). */
function settles(p: Promise<void>, ms = 2000): Promise<boolean> {
  return within(p.then(() => true), ms, false);
}

Deno.test("reply pacer: replies are read at once while no WAL flows, and whenever bytes are buffered", () => {
  const pacer = new ReplyPacer();
  assert.equal(pacer.pace(0), undefined);
  pacer.sent(performance.now() - FLOWING_MS - 1);
  assert.equal(pacer.pace(0), undefined, "WAL went out too long ago");
  pacer.sent();
  assert.equal(pacer.pace(5), undefined, "a buffered message is read at once");
  assert.equal(pacer.deferring, false);
});

Deno.test("reply pacer: while WAL flows the reader waits for the next send", async () => {
  const pacer = new ReplyPacer();
  pacer.sent();
  const wait = pacer.pace(0);
  assert.ok(wait);
  assert.equal(pacer.deferring, true);
  pacer.sent();
  assert.equal(await settles(wait), true);
  assert.equal(pacer.deferring, false);
});

Deno.test("reply pacer: a wait with no send lasts until the session's tick wakes it, on no timer of its own", async () => {
  const a = new ReplyPacer();
  const b = new ReplyPacer();
  a.sent();
  b.sent();
  const wa = a.pace(0)!;
  const wb = b.pace(0)!;
  // Longer than any timer the pacer could keep for itself would make sense: still waiting.
  assert.equal(await settles(wa, 300), false);
  assert.equal(a.deferring && b.deferring, true);
  a.wake();
  assert.equal(await settles(wa), true);
  assert.equal(a.deferring, false);
  assert.equal(b.deferring, true, "one reader's wake is not another's");
  b.wake();
  assert.equal(await settles(wb), true);
});

Deno.test("reply pacer: the end of COPY wakes the reader and it waits no more", async () => {
  const pacer = new ReplyPacer();
  pacer.sent();
  const wait = pacer.pace(0)!;
  pacer.end();
  assert.equal(await settles(wait), true);
  pacer.sent();
  assert.equal(pacer.pace(0), undefined);
});

Deno.test("reply pacer: a reply read after a wait arrived within it, by the client's clock where that agrees", async () => {
  const pacer = new ReplyPacer();
  assert.equal(pacer.arrival(5, 1000), 1000, "read at once: now");
  pacer.sent();
  const before = Date.now() - 1;
  const wait = pacer.pace(0)!;
  pacer.wake();
  await wait;
  const now = Date.now() + 10_000;
  const inside = Date.now() + 1;
  assert.equal(pacer.arrival(inside, now), inside);
  // A client clock behind or ahead is kept within the wait.
  assert.ok(pacer.arrival(0, now) >= before);
  assert.equal(pacer.arrival(now + 60_000, now), now);
  // Messages still buffered after that read keep the same window.
  assert.equal(pacer.pace(10), undefined);
  assert.equal(pacer.arrival(inside, now), inside);
});
