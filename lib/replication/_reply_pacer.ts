/**
 * When a streaming client's replies are read. A standby answers each message of WAL with a status
 * update on receipt and another after its flush, often in separate packets, and each packet read
 * as it comes wakes the thread: tens of microseconds of Deno's event loop each. While WAL flows the
 * replies are left in the socket's buffer until the next send, or the session's next tick (at most
 * a second), and read together. The walsender has less to save: its wake-ups are a latch and a
 * poll().
 *
 * The pacer keeps no timer of its own. Deno wakes at a cleared timer's deadline all the same, so
 * a short timer armed at each wait and cleared at each send woke the thread once per period while
 * WAL flowed, for nothing.
 *
 * @module
 */

import { preciseNow } from "./lag_tracker.ts";

/** Replies are deferred only while WAL went out this recently: otherwise they are read at once. */
export const FLOWING_MS = 100;

/**
 * When one client's reader reads next: at once, or, while WAL flows to it, at the next send or
 * when the session's tick calls {@linkcode ReplyPacer.wake}, whichever comes first.
 *
 * @example
 * ```ts
 * import { ReplyPacer } from "./_reply_pacer.ts";
 * import assert from "node:assert/strict";
 * const replies = new ReplyPacer();
 * assert.equal(replies.pace(0), undefined); // nothing sent yet: read at once
 * replies.sent();
 * const wait = replies.pace(0)!; // WAL flows: the replies wait for the next send
 * replies.sent();
 * await wait;
 * replies.end();
 * ```
 */
export class ReplyPacer {
  #release: (() => void) | undefined;
  /** When the reader last began to wait: a reply read after that wait arrived no earlier. */
  #since: number | undefined;
  #lastSend = -Infinity;
  #ended = false;

  /** Whether the reader is waiting rather than reading: the client's silence means nothing yet. */
  get deferring(): boolean {
    return this.#release !== undefined;
  }

  /** WAL went out: a waiting reader reads now. */
  sent(now: number = performance.now()): void {
    this.#lastSend = now;
    this.wake();
  }

  /** COPY is ending (shutdown, the end of a timeline): the reader reads at once from now on. */
  end(): void {
    this.#ended = true;
    this.wake();
  }

  /** A waiting reader reads now. */
  wake(): void {
    const go = this.#release;
    if (!go) return;
    this.#release = undefined;
    go();
  }

  /**
   * Waits, when the reader should not read yet: while WAL went out within {@linkcode FLOWING_MS},
   * nothing is buffered and COPY is not ending. `undefined` when it reads at once.
   *
   * @param buffered Bytes the connection holds unread: they are read at once.
   */
  pace(buffered: number): Promise<void> | undefined {
    // Messages still buffered came in with the last read: they keep its arrival window.
    if (buffered > 0) return undefined;
    if (this.#ended || performance.now() - this.#lastSend > FLOWING_MS) {
      this.#since = undefined;
      return undefined;
    }
    this.#since = preciseNow();
    return new Promise((resolve) => this.#release = resolve);
  }

  /**
   * When a reply read now arrived, as the lag tracker takes it (ms since the epoch): now, or,
   * when the reader had been waiting, the client's own send time kept within that wait.
   *
   * @param replyTime The reply's `sendTime`, in ms since the epoch.
   */
  arrival(replyTime: number, now: number = preciseNow()): number {
    const since = this.#since;
    if (since === undefined) return now;
    return Math.min(now, Math.max(since, replyTime));
  }
}
