import assert from "node:assert/strict";
import { LagTracker, ReplicationLag } from "./lag_tracker.ts";
import { SenderRegistry } from "./registry.ts";
import { Latch } from "../wal/latch.ts";
import { delay, waitFor } from "../../tests/_pg.ts";
import { countTimers } from "../../tests/_timers.ts";

Deno.test("lag tracker: samples, interpolation, catching up and a full ring", () => {
  const t = new LagTracker(4);
  assert.equal(t.read("flush", 0n, 0), undefined, "nothing sampled");
  t.write(100n, 1000);
  t.write(100n, 1500); // a repeated position is no new sample
  t.write(200n, 2000);
  assert.equal(t.read("flush", 100n, 1100), 100);
  assert.equal(t.read("flush", 150n, 2100), 600, "interpolated between 1000 and 2000");
  assert.equal(t.read("flush", 200n, 2300), 300);
  assert.equal(t.read("flush", 200n, 2400), undefined, "caught up: nothing new to measure");
  t.write(300n, 3000);
  assert.equal(t.read("flush", 200n, 3500), 500, "a new burst, not reached yet");
  // The ring holds 4 samples; the write head never overruns the slowest reader ("write" here
  // is still at its first sample), it overwrites its own newest sample instead.
  for (let i = 4n; i < 20n; i++) t.write(i * 100n, Number(i) * 1000);
  assert.equal(t.read("write", 1900n, 20_000), 1000, "the newest sample survives");
});

Deno.test("lag: two fully applied replies in a row clear the lags, as the walsender does", () => {
  const lag = new ReplicationLag();
  const s = new SenderRegistry(1).acquire({ clientAddr: "127.0.0.1", clientPort: 1 })!;
  lag.recordAvailable(1000n, 0);
  lag.recordReply(s, 0n, 0n, 0n, 0);
  lag.recordAvailable(2000n, 1000);
  s.sentLsn = 2000n;
  assert.deepEqual(lag.recordReply(s, 2000n, 2000n, 2000n, 1200), {
    write: 200,
    flush: 200,
    replay: 200,
  });
  assert.deepEqual(lag.recordReply(s, 2000n, 2000n, 2000n, 2200), {
    write: undefined,
    flush: undefined,
    replay: undefined,
  });
});

Deno.test("lag: observe() feeds polled replies, unless the sessions report them (direct)", async () => {
  const registry = new SenderRegistry(2);
  const store = { endLsn: 1000n, latch: new Latch() };
  const streaming = () => {
    const s = registry.acquire({ clientAddr: "127.0.0.1", clientPort: 1 })!;
    s.state = "streaming";
    s.sentLsn = 1000n;
    s.writeLsn = s.flushLsn = s.replayLsn = 500n;
    s.replyTime = new Date();
    return s;
  };

  // Polling: a reply seen in the registry becomes a status update within a few polls.
  const polled = new ReplicationLag();
  const stopPolled = new AbortController();
  const a = streaming();
  const observingPolled = polled.observe({ store, registry }, stopPolled.signal, 10);
  await waitFor(() => polled.lags(a.pid).write !== undefined, {
    timeoutMs: 5000,
    intervalMs: 10,
    message: "a polled reply",
  });
  stopPolled.abort();
  await observingPolled;
  registry.release(a);

  // Direct: the registry's replies are not taken as status updates (the sessions report them),
  // while clients that are gone are still forgotten.
  const direct = new ReplicationLag({ direct: true });
  const stopDirect = new AbortController();
  const b = streaming();
  const observingDirect = direct.observe({ store, registry }, stopDirect.signal, 10);
  await delay(100);
  assert.equal(direct.lags(b.pid).write, undefined, "ten polling intervals: nothing taken");
  direct.recordAvailable(2000n);
  direct.recordReply(b, 2000n, 1000n, 1000n, Date.now() + 40);
  assert.ok(direct.lags(b.pid).write! > 0, "a reply reported directly is taken");
  registry.release(b);
  await waitFor(() => direct.lags(b.pid).write === undefined, {
    timeoutMs: 5000,
    intervalMs: 10,
    message: "the gone client forgotten",
  });
  stopDirect.abort();
  await observingDirect;
});

Deno.test("lag: observe() samples every advance without a timer for each", async () => {
  const registry = new SenderRegistry(1);
  const store = { endLsn: 1000n, latch: new Latch() };
  const lag = new ReplicationLag({ direct: true });
  const stop = new AbortController();
  let observing: Promise<void> | undefined;
  // Microtasks only, so every timer counted is the observer's.
  const settle = async (done: () => boolean) => {
    for (let k = 0; k < 100 && !done(); k++) await Promise.resolve();
    return done();
  };
  const armed = await countTimers(async () => {
    observing = lag.observe({ store, registry }, stop.signal);
    for (let i = 1n; i <= 20n; i++) {
      store.endLsn = 1000n + i * 100n;
      store.latch.set();
      assert.ok(await settle(() => lag.available === store.endLsn), `advance ${i} sampled`);
    }
  });
  stop.abort();
  await observing;
  // The latch's timer once, and the poll loop's sleep.
  assert.ok(armed <= 2, `${armed} timers armed for 20 advances`);
});
