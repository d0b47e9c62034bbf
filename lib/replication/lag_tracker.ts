/**
 * Replication lag as PostgreSQL measures it for `pg_stat_replication`'s `write_lag`, `flush_lag`
 * and `replay_lag`: the time between the relay having WAL up to some position and the client
 * reporting that position written, flushed or applied.
 *
 * The sender side remembers when each durable end was reached (a ring of `(lsn, time)` samples);
 * each status update then looks up, for each of its three positions, the time the relay had that
 * WAL. Positions between two samples are interpolated, so a client that is stuck shows a lag that
 * keeps growing instead of freezing at the last sample it crossed.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";
import type { Sender } from "./registry.ts";

/** Which reported position a lag belongs to (PostgreSQL's `SYNC_REP_WAIT_*`). */
export type LagHead = "write" | "flush" | "replay";

const HEADS: readonly LagHead[] = ["write", "flush", "replay"];

/** The three lags of one client, in milliseconds; `undefined` is SQL NULL. */
export interface Lags {
  /** `write_lag`. */
  write: number | undefined;
  /** `flush_lag`. */
  flush: number | undefined;
  /** `replay_lag`. */
  replay: number | undefined;
}

/** One sample: the relay had WAL up to `lsn` at `time` (milliseconds since the epoch). */
interface Sample {
  lsn: Lsn;
  time: number;
}

/** Samples per client, as `LAG_TRACKER_BUFFER_SIZE`. */
export const LAG_TRACKER_BUFFER_SIZE = 8192;

/** How often `observe` forgets gone clients once the sessions report replies themselves, ms. */
const RETAIN_MS = 1000;

/** Milliseconds since the epoch with sub-millisecond precision. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * The lag tracker of one client. A ring of samples with one write head and a read head per
 * reported position; a read consumes the samples its position has passed.
 *
 * @example
 * ```ts
 * import { LagTracker } from "./lag_tracker.ts";
 * import assert from "node:assert/strict";
 * const t = new LagTracker();
 * t.write(100n, 1000);
 * t.write(200n, 2000);
 * // The client has written up to 200 at 2500: the relay had that WAL 500 ms earlier.
 * assert.equal(t.read("write", 200n, 2500), 500);
 * // Replay reached 100 at 1200, then 150 at 2500: half way between the samples at 100 and 200,
 * // so the relay had it at 1500.
 * assert.equal(t.read("replay", 100n, 1200), 200);
 * assert.equal(t.read("replay", 150n, 2500), 1000);
 * ```
 */
export class LagTracker {
  #buffer: Sample[] = [];
  #size: number;
  #writeHead = 0;
  #lastLsn: Lsn = 0n;
  #readHeads: Record<LagHead, number> = { write: 0, flush: 0, replay: 0 };
  #lastRead: Record<LagHead, Sample | undefined> = {
    write: undefined,
    flush: undefined,
    replay: undefined,
  };

  /**
   * Creates an empty tracker.
   *
   * @param size Ring size; the default is PostgreSQL's.
   */
  constructor(size: number = LAG_TRACKER_BUFFER_SIZE) {
    this.#size = size;
    this.#buffer = new Array(size);
  }

  /**
   * Records that WAL up to `lsn` was available at `time`. Repeats of a position are ignored.
   * When the ring is full (a client far behind), the newest sample is overwritten: the sampling
   * rate drops, but the slowest reader keeps the samples it still needs.
   */
  write(lsn: Lsn, time: number): void {
    if (lsn <= this.#lastLsn) return;
    this.#lastLsn = lsn;
    let next = (this.#writeHead + 1) % this.#size;
    if (HEADS.some((h) => this.#readHeads[h] === next)) {
      next = this.#writeHead;
      this.#writeHead = (this.#writeHead - 1 + this.#size) % this.#size;
    }
    this.#buffer[this.#writeHead] = { lsn, time };
    this.#writeHead = next;
  }

  /**
   * How long ago (ms) the relay had WAL up to `lsn`, as seen from `now`; `undefined` when it
   * cannot be told (nothing sampled ahead of a caught-up client, a clock that went backwards).
   */
  read(head: LagHead, lsn: Lsn, now: number): number | undefined {
    let time: number | undefined;
    // Consume every sample the client's position has reached.
    while (this.#readHeads[head] !== this.#writeHead) {
      const s = this.#buffer[this.#readHeads[head]]!;
      if (s.lsn > lsn) break;
      time = s.time;
      this.#lastRead[head] = s;
      this.#readHeads[head] = (this.#readHeads[head] + 1) % this.#size;
    }
    const empty = this.#readHeads[head] === this.#writeHead;
    // Caught up with everything sampled: forget the last sample, so the next burst of WAL after
    // an idle spell is not measured against a stale one.
    if (empty) this.#lastRead[head] = undefined;
    if (time !== undefined) return time > now ? undefined : now - time;
    if (empty) return undefined;
    const next = this.#buffer[this.#readHeads[head]]!;
    const prev = this.#lastRead[head];
    if (prev === undefined) {
      // Only a future sample: the client was caught up and a new burst began. Report the lag it
      // would have if it reached that sample now.
      return next.time > now ? undefined : now - next.time;
    }
    // Between two samples: interpolate the time the relay had this position.
    if (lsn < prev.lsn || prev.time > next.time) return undefined;
    const fraction = Number(lsn - prev.lsn) / Number(next.lsn - prev.lsn);
    const t = prev.time + (next.time - prev.time) * fraction;
    return t > now ? undefined : now - t;
  }
}

/** What the hub keeps per client. */
interface ClientLag {
  tracker: LagTracker;
  lags: Lags;
  fullyAppliedLastTime: boolean;
  /** The last reply seen, to tell a new one when observing by polling. */
  seen: string;
}

/**
 * The lag of every client of a relay. Two hooks feed it: {@linkcode ReplicationLag.recordAvailable}
 * whenever the durable end advances, and {@linkcode ReplicationLag.recordReply} for each standby
 * status update. {@linkcode ReplicationLag.observe} can stand in for both by watching the store's
 * latch and polling the registry, at the cost of a little precision.
 *
 * @example
 * ```ts
 * import { ReplicationLag } from "./lag_tracker.ts";
 * import { SenderRegistry } from "./registry.ts";
 * import assert from "node:assert/strict";
 * const lag = new ReplicationLag();
 * const sender = new SenderRegistry(1).acquire({ clientAddr: "127.0.0.1", clientPort: 1 })!;
 * sender.sentLsn = 300n;
 * lag.recordAvailable(100n, 1000);
 * lag.recordReply(sender, 100n, 100n, 100n, 1000);
 * lag.recordAvailable(300n, 2000);
 * lag.recordReply(sender, 300n, 300n, 100n, 2250);
 * assert.equal(lag.lags(sender.pid).flush, 250);
 * // Apply is stuck at 100: its lag grows from the next sample it has not reached.
 * assert.equal(lag.recordReply(sender, 300n, 300n, 100n, 3000).replay, 1000);
 * ```
 */
export class ReplicationLag {
  #clients = new Map<number, ClientLag>();
  #available: Sample | undefined;
  #direct: boolean;

  /**
   * A tracker with no clients yet.
   *
   * @param options `direct`: every standby reply will come through
   * {@linkcode ReplicationLag.recordReply}, as a relay's sessions report them, so
   * {@linkcode ReplicationLag.observe} never polls for replies. Otherwise it polls until the
   * first direct one.
   */
  constructor(options: { direct?: boolean } = {}) {
    this.#direct = options.direct ?? false;
  }

  /** The newest durable end recorded, or `undefined` before the first. */
  get available(): Lsn | undefined {
    return this.#available?.lsn;
  }

  /**
   * Records that WAL up to `lsn` is durable and may be sent, as of `time` (ms since the epoch).
   * Call it whenever the store's durable end advances.
   */
  recordAvailable(lsn: Lsn, time: number = preciseNow()): void {
    if (this.#available && lsn <= this.#available.lsn) return;
    this.#available = { lsn, time };
    for (const c of this.#clients.values()) c.tracker.write(lsn, time);
  }

  /**
   * Takes a standby status update (`r` message) of `sender`: computes its three lags as
   * `ProcessStandbyReplyMessage` does and returns them. Call it after `sender`'s positions were
   * updated, with the time the message arrived.
   */
  recordReply(
    sender: Sender,
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    time: number = preciseNow(),
  ): Lags {
    this.#direct = true;
    return this.#reply(sender, write, flush, apply, time);
  }

  #reply(sender: Sender, write: Lsn, flush: Lsn, apply: Lsn, time: number): Lags {
    const c = this.#client(sender.pid, time);
    // Two replies in a row with everything sent applied: the second comes from the client's
    // status interval, a good moment to drop lags measured on WAL long gone.
    let clear = false;
    if (apply === sender.sentLsn) {
      if (c.fullyAppliedLastTime) clear = true;
      c.fullyAppliedLastTime = true;
    } else {
      c.fullyAppliedLastTime = false;
    }
    const positions: Record<LagHead, Lsn> = { write, flush, replay: apply };
    for (const head of HEADS) {
      const lag = c.tracker.read(head, positions[head], time);
      if (lag !== undefined || clear) c.lags[head] = lag;
    }
    // Only polling tells replies apart by their key; direct replies need none.
    if (!this.#direct) c.seen = replyKey(sender);
    return { ...c.lags };
  }

  #client(pid: number, time: number): ClientLag {
    let c = this.#clients.get(pid);
    if (!c) {
      c = {
        tracker: new LagTracker(),
        lags: { write: undefined, flush: undefined, replay: undefined },
        fullyAppliedLastTime: false,
        seen: "",
      };
      // A walsender samples the flush position when it first sends; the client's lag is measured
      // from the moment it started following the relay.
      if (this.#available) c.tracker.write(this.#available.lsn, Math.min(time, preciseNow()));
      this.#clients.set(pid, c);
    }
    return c;
  }

  /** The lags of the client with `pid` (all `undefined` when unknown). */
  lags(pid: number): Lags {
    const c = this.#clients.get(pid);
    return c ? { ...c.lags } : { write: undefined, flush: undefined, replay: undefined };
  }

  /** Drops the state of clients that are gone. */
  retain(live: Iterable<number>): void {
    const keep = new Set(live);
    for (const pid of this.#clients.keys()) if (!keep.has(pid)) this.#clients.delete(pid);
  }

  /**
   * Feeds the tracker without hooks in the session: wakes on the store's latch to sample the
   * durable end, and polls the senders' reported positions every `intervalMs` (default 100),
   * treating each change of position or reply time as a status update. Once
   * {@linkcode ReplicationLag.recordReply} is called directly (or from the start, when constructed
   * `direct`), polling stops feeding replies and only forgets clients that are gone, once a
   * second. Runs until `signal` aborts.
   */
  async observe(
    source: {
      store: {
        readonly endLsn: Lsn;
        readonly latch: {
          wait(ms: number, s?: AbortSignal): Promise<boolean>;
          join?(): Disposable;
        };
      };
      registry: { list(): Sender[] };
    },
    signal: AbortSignal,
    intervalMs = 100,
  ): Promise<void> {
    this.recordAvailable(source.store.endLsn);
    const latchLoop = (async () => {
      // It waits at every advance, as a sender does: joined, it arms no timer for each.
      using _member = source.store.latch.join?.();
      while (!signal.aborted) {
        await source.store.latch.wait(1000, signal);
        this.recordAvailable(source.store.endLsn);
      }
    })();
    const pollLoop = (async () => {
      while (!signal.aborted) {
        // Forgetting gone clients needs no haste: a quiet relay should not wake ten times a
        // second for it.
        await sleep(this.#direct ? RETAIN_MS : intervalMs, signal);
        const senders = source.registry.list();
        if (!this.#direct) {
          for (const s of senders) {
            if (s.state !== "catchup" && s.state !== "streaming" && s.state !== "stopping") {
              continue;
            }
            const c = this.#client(s.pid, preciseNow());
            if (s.replyTime === undefined || c.seen === replyKey(s)) continue;
            this.#reply(s, s.writeLsn, s.flushLsn, s.replayLsn, preciseNow());
          }
        }
        this.retain(senders.map((s) => s.pid));
      }
    })();
    await Promise.all([latchLoop, pollLoop]);
  }
}

function replyKey(s: Sender): string {
  return `${s.writeLsn}/${s.flushLsn}/${s.replayLsn}/${s.replyTime?.getTime()}`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
