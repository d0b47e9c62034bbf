// The COPY BOTH loop against a scripted upstream: the one timer that does the periodic duties
// (a flush left by a stalled burst, the status interval, the receive timeout), and hot standby
// feedback sent with a status update only when it changed.

import assert from "node:assert/strict";
import type { PgClient } from "../pgwire/client.ts";
import { DurableWriter } from "./durable_writer.ts";
import type { ForwardedFeedback } from "./feedback.ts";
import { FeedbackForwarder, type StreamContext, streamWal } from "./_session.ts";

const SEG = 1 << 20;

/** An XLogData message of `bytes` at `start`, as the upstream's walsender frames it. */
function xlogData(start: bigint, bytes: Uint8Array): { type: string; body: Uint8Array } {
  const body = new Uint8Array(25 + bytes.length);
  const v = new DataView(body.buffer);
  body[0] = 0x77;
  v.setBigUint64(1, start);
  v.setBigUint64(9, start + BigInt(bytes.length));
  body.set(bytes, 25);
  return { type: "d", body };
}

/**
 * An upstream that hands out `messages`, then stays silent until closed. `buffered` is what the
 * loop sees as still received: non-zero makes it leave a write unsynced, as in a burst.
 */
function scriptedUpstream(messages: { type: string; body: Uint8Array }[], buffered: number) {
  const statuses: { flush: bigint; replyRequested: boolean }[] = [];
  const feedback: number[] = [];
  const closed = Promise.withResolvers<never>();
  closed.promise.catch(() => {});
  let isClosed = false;
  const client = {
    get buffered() {
      return buffered;
    },
    nextRaw() {
      const m = messages.shift();
      return m ? Promise.resolve(m) : closed.promise;
    },
    sendStatus(_write: bigint, flush: bigint, _apply: bigint, replyRequested = false) {
      statuses.push({ flush, replyRequested });
      return Promise.resolve();
    },
    sendFeedback(xmin: number) {
      feedback.push(xmin);
      return Promise.resolve();
    },
    close() {
      if (isClosed) return;
      isClosed = true;
      closed.reject(new Deno.errors.UnexpectedEof("closed"));
    },
  };
  return { client: client as unknown as PgClient, statuses, feedback, close: client.close };
}

async function withWriter(fn: (w: DurableWriter) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const w = await DurableWriter.open(dir, { segmentSize: SEG });
    w.position(1, 0n);
    try {
      await fn(w);
    } finally {
      await w.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function context(
  writer: DurableWriter,
  overrides: Partial<StreamContext> = {},
): StreamContext {
  return {
    writer,
    statusIntervalMs: 10_000,
    receiveTimeoutMs: 60_000,
    flushIntervalMs: 50,
    flushBytes: 4 << 20,
    feedback: new FeedbackForwarder(undefined),
    stopped: () => false,
    received: () => {},
    upstreamEnd: () => {},
    flushed: () => {},
    log: () => {},
    ...overrides,
  };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("upstream session: a burst cut short is synced and reported by the timer", async () => {
  await withWriter(async (writer) => {
    const up = scriptedUpstream([xlogData(0n, new Uint8Array(100).fill(1))], 1);
    const ended = streamWal(up.client, 1, context(writer));
    // The loop left the write unsynced (more seemed buffered); the flush interval syncs it.
    await until(() => writer.flushedLsn === 100n);
    await until(() => up.statuses.some((s) => s.flush === 100n));
    assert.equal(writer.pendingBytes, 0);
    up.close();
    await assert.rejects(ended, Deno.errors.UnexpectedEof);
  });
});

Deno.test("upstream session: a write with nothing more buffered is synced and reported at once", async () => {
  await withWriter(async (writer) => {
    const up = scriptedUpstream([xlogData(0n, new Uint8Array(100).fill(1))], 0);
    const ended = streamWal(up.client, 1, context(writer, { flushIntervalMs: 60_000 }));
    await until(() => up.statuses.some((s) => s.flush === 100n), 1000);
    up.close();
    await assert.rejects(ended, Deno.errors.UnexpectedEof);
  });
});

Deno.test("upstream session: a silent upstream is pinged, then dropped at the receive timeout", async () => {
  await withWriter(async (writer) => {
    const up = scriptedUpstream([], 0);
    const t0 = Date.now();
    const ended = streamWal(up.client, 1, context(writer, { receiveTimeoutMs: 300 }));
    await assert.rejects(ended, /terminating upstream connection due to timeout/);
    assert.ok(Date.now() - t0 >= 290, `dropped after ${Date.now() - t0} ms`);
    // The first status, then the ping asking for a reply at half the timeout.
    assert.deepEqual(up.statuses.map((s) => s.replyRequested), [false, true]);
  });
});

Deno.test("upstream session: status updates at the status interval while nothing flows", async () => {
  await withWriter(async (writer) => {
    const up = scriptedUpstream([], 0);
    const ended = streamWal(up.client, 1, context(writer, { statusIntervalMs: 40 }));
    await until(() => up.statuses.length >= 4);
    up.close();
    await assert.rejects(ended, Deno.errors.UnexpectedEof);
  });
});

Deno.test("feedback forwarder: after a flush only a change is sent; the periodic update always", async () => {
  let current: ForwardedFeedback | undefined = {
    xmin: 700,
    epoch: 0,
    catalogXmin: 0,
    catalogEpoch: 0,
  };
  const f = new FeedbackForwarder(() => current);
  const up = scriptedUpstream([], 0);
  await f.send(up.client, false);
  await f.send(up.client, false); // unchanged: not again
  assert.deepEqual(up.feedback, [700]);
  await f.send(up.client); // the status interval: always
  assert.deepEqual(up.feedback, [700, 700]);
  current = { xmin: 701, epoch: 0, catalogXmin: 0, catalogEpoch: 0 };
  await f.send(up.client, false);
  assert.deepEqual(up.feedback, [700, 700, 701]);
  current = undefined; // the standbys stopped asking: one release
  await f.send(up.client, false);
  await f.send(up.client, false);
  assert.deepEqual(up.feedback, [700, 700, 701, 0]);
});
