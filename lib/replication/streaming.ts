/**
 * The streaming phase of a replication connection, as `WalSndLoop` runs it: WAL flows through
 * the pipeline (store → source → slicer → framer → sink → connection) while a reader takes the
 * client's status updates and a ticker keeps the clock (keepalives, `wal_sender_timeout`). COPY
 * ends by the client's CopyDone, at the end of a historic timeline, at shutdown with `COPY 0`,
 * or by an error.
 *
 * @module
 */

import { BodyReader } from "../pgwire/body_reader.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import { ConnectionClosed, type FrontendMessage } from "../pgwire/message_reader.ts";
import { commandComplete, copyDone, errorResponse, readyForQuery } from "../pgwire/messages.ts";
import { pgTimestampToDate } from "../pgwire/timestamp.ts";
import { BufferPool, FRAME_HEADROOM, MAX_SEND_SIZE } from "../stream/chunk.ts";
import { keepaliveMessage, WalFramer } from "../stream/framer.ts";
import { WalSink } from "../stream/sink.ts";
import { WalSlicer } from "../stream/slicer.ts";
import { openWalSource } from "../stream/source.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import type { TimelineId } from "../wal/segment.ts";
import { ReplyPacer } from "./_reply_pacer.ts";
import { everyPeriod } from "./_session_clock.ts";
import type { ClientConnection } from "./connection.ts";
import type { Sender } from "./registry.ts";
import { endOfTimeline } from "./result_sets.ts";
import type { SessionContext } from "./session.ts";
import type { ReplicationSlot } from "./slots.ts";
import { pgErrorOf } from "./wal_errors.ts";

/**
 * How COPY ended, for the command loop: `copydone` when COPY is over and answered (read the next
 * command), `gone` when the connection is over (the client left, or the server ended the stream
 * at shutdown), `message` when the client's next message was read while streaming.
 */
export type CopyEnd =
  | { kind: "copydone" }
  | { kind: "gone" }
  | { kind: "message"; msg: FrontendMessage };

/** What the session and a streaming phase share. */
export interface StreamControl {
  /** Set while streaming: begins the graceful stop (send WAL up to the end, then `COPY 0`). */
  stop?: (() => void) | undefined;
  /** Why the server ended the connection, when it was the server's doing. */
  endReason?: string | undefined;
}

/** Where to stream from. */
export interface StreamRequest {
  /** The timeline; a historic one ends at its switch point. */
  tli: TimelineId;
  /** The first LSN to send. */
  start: Lsn;
  /** The slot in use, advanced by the client's flush reports. */
  slot: ReplicationSlot | undefined;
}

/**
 * Messages read, framed and written together while a client catches up (1 MB of WAL): one pass
 * through the pipeline and one socket write for all of them, so the fixed cost of a pass, and of a
 * socket write, is paid once per eight messages. A run is also the block cache's unit: the same
 * 32 MiB hold half as many blocks. Measured on the 2-core machine, `deno task bench --suite fanout
 * --fanout-clients 24,50 --workers 1`, six alternating pairs against runs of four: the relay's CPU
 * fell from a median of 1.60 to 1.25 s (24 clients) and from 3.22 to 2.96 s (50), the CPU ratios
 * (PostgreSQL / walrelay) rose from 1.74 to 2.00 and from 1.83 to 1.96, with block cache hits of
 * 83–91% against 88–94%. The memory suite peaked at 159 and 145 MiB against 171 and 148. (Runs
 * of four had halved that cost against one, for about 20 MiB more at the memory suite's peak; an
 * earlier trial of eight, before the shared block cache and pool, did no better than four.
 * Sixteen saved no CPU the suite could resolve, and took the memory suite's peak to 198 MiB.) A
 * caught-up client gets what is there, one message or more.
 */
export const RUN_MESSAGES = 8;

/** Bytes of a run's buffer: each message after its header's room. */
export const RUN_BUFFER_BYTES = RUN_MESSAGES * (FRAME_HEADROOM + MAX_SEND_SIZE);

/**
 * Free run buffers a thread's shared pool keeps: 8 MiB. Buffers in flight are the senders' own;
 * these only spare the allocation when one sender's write ends and another's read begins.
 */
const SHARED_FREE_RUNS = 8;

/**
 * The pool of run buffers a thread's senders share ({@linkcode SessionContext.runBuffers}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRunBuffers, RUN_BUFFER_BYTES } from "./streaming.ts";
 * const pool = createRunBuffers();
 * const b = pool.take();
 * assert.equal(b.byteLength, RUN_BUFFER_BYTES);
 * pool.release(b);
 * assert.equal(pool.take(), b);
 * ```
 */
export function createRunBuffers(): BufferPool {
  return new BufferPool(RUN_BUFFER_BYTES, SHARED_FREE_RUNS);
}

type PipelineEnd = { kind: "done" } | { kind: "failed"; error: unknown };

/**
 * Streams WAL in COPY both mode, after the CopyBothResponse, until COPY ends.
 *
 * @returns How it ended.
 */
export async function streamWal(
  client: ClientConnection,
  ctx: SessionContext,
  sender: Sender,
  request: StreamRequest,
  control: StreamControl,
): Promise<CopyEnd> {
  const { store, log, timeouts, slots } = ctx;
  const { tli, start, slot } = request;
  sender.state = "catchup";
  sender.timeline = tli;
  sender.sentLsn = start;
  sender.slot = slot?.name;
  log.log("info", "starting replication", {
    pid: sender.pid,
    application_name: sender.applicationName,
    start_lsn: formatLsn(start),
    timeline: tli,
    slot: slot?.name,
  });

  const stopPipeline = new AbortController();
  let stopAt: Lsn | undefined;
  const replies = new ReplyPacer();
  control.stop = () => {
    stopAt = store.endLsn;
    sender.state = "stopping";
    replies.end();
    // Wake a caught-up source now rather than at its next periodic wake.
    store.latch.set();
  };
  if (ctx.shutdown.aborted) control.stop();

  const clock = { lastReceive: Date.now(), lastSend: Date.now(), pingSent: false };

  // Each read fills a buffer with a run of up to RUN_MESSAGES messages, framed in place and sent
  // in one write: one pass through the pipeline and one socket write for all of them.
  // Counted among the senders that may share blocks, for as long as this stream runs.
  using reader = ctx.blockCache?.join();
  const pool = ctx.runBuffers;
  const sink = new WalSink({
    write: (message) => client.write(message),
    sender,
    pool,
    cache: ctx.blockCache,
    catchupEnd: () => store.endOf(tli),
    onSent: () => {
      clock.lastSend = Date.now();
      replies.sent();
    },
  });
  const pipeline: Promise<PipelineEnd> = openWalSource(store, {
    tli,
    start,
    pool,
    cache: ctx.blockCache,
    reader,
    onRead: (source) => sender.source = source,
    // Caught up with nothing in flight: streaming, as PostgreSQL's walsender moves once nothing
    // is left to send, even a client that started at the end and was sent nothing.
    onCaughtUp: sink.caughtUp,
    signal: stopPipeline.signal,
    stopAt: () => stopAt,
    sent: () => sender.sentLsn,
  }).pipeThrough(new WalSlicer(store.identity.blockSize)).pipeThrough(new WalFramer())
    .pipeTo(sink, { preventClose: true })
    .then(
      (): PipelineEnd => ({ kind: "done" }),
      (error): PipelineEnd => ({ kind: "failed", error: pgErrorOf(error) }),
    );

  const keepaliveWalEnd = () => sender.sentLsn;
  // Reads the client's messages while WAL flows: status updates, feedback, CopyDone.
  const copyReader: Promise<CopyEnd> = (async (): Promise<CopyEnd> => {
    while (true) {
      const wait = replies.pace(client.buffered);
      if (wait) await wait;
      const msg = await client.readMessage();
      clock.lastReceive = Date.now();
      clock.pingSent = false;
      if (!msg) return { kind: "gone" };
      if (msg.type === "c") return { kind: "copydone" };
      if (msg.type === "d") {
        await standbyMessage(client, ctx, sender, msg.body, slot, keepaliveWalEnd, replies);
        continue;
      }
      if (msg.type === "X") return { kind: "gone" };
      return { kind: "message", msg };
    }
  })().catch((e): CopyEnd => {
    if (e instanceof PgError) throw e;
    return { kind: "gone" };
  });

  // The sender's clock: idle keepalives, the half-timeout ping and wal_sender_timeout.
  // Progress of a catching-up client, every few seconds, so a long catch-up is visible.
  const progressMs = timeouts.progressLog ?? 10_000;
  let progressAt = Date.now();
  let progressLsn = sender.sentLsn;
  // One timer per period for all of the thread's sessions (`_session_clock.ts`).
  const tickMs = Math.max(50, Math.min(1000, timeouts.keepalive / 2, progressMs));
  const ticker = everyPeriod(tickMs, () => {
    const now = Date.now();
    if (sender.state === "catchup" && now - progressAt >= progressMs) {
      const behind = store.endOf(tli) - sender.sentLsn;
      const rate = Number(sender.sentLsn - progressLsn) / ((now - progressAt) / 1000);
      log.log("info", "client catching up", {
        pid: sender.pid,
        application_name: sender.applicationName,
        sent_lsn: formatLsn(sender.sentLsn),
        end_lsn: formatLsn(store.endOf(tli)),
        bytes_behind: behind,
        rate_bytes_per_second: Math.round(rate),
        eta_seconds: rate > 0 ? Math.round(Number(behind) / rate) : undefined,
      });
      progressAt = now;
      progressLsn = sender.sentLsn;
    }
    // A reader holding back replies has not looked: it reads now, and the timeouts wait for it.
    // This tick is what ends a wait that no send ends: the pacer keeps no timer.
    if (replies.deferring) {
      replies.wake();
      return;
    }
    if (timeouts.sender > 0 && now - clock.lastReceive > timeouts.sender) {
      log.log("warn", "terminating walsender process due to replication timeout", {
        pid: sender.pid,
      });
      control.endReason = "replication timeout";
      client.close();
      return;
    }
    const wantPing = timeouts.sender > 0 && now - clock.lastReceive > timeouts.sender / 2 &&
      !clock.pingSent;
    if (wantPing || now - clock.lastSend >= timeouts.keepalive) {
      if (wantPing) clock.pingSent = true;
      clock.lastSend = now;
      client.write(keepaliveMessage(keepaliveWalEnd(), wantPing)).catch(() => {});
    }
  });

  try {
    const first = await Promise.race([pipeline, copyReader]);
    replies.end();
    if (first.kind === "copydone" || first.kind === "gone" || first.kind === "message") {
      // The client ended COPY (or went away): stop reading WAL, answer, return to commands.
      stopPipeline.abort();
      const end = await pipeline;
      if (first.kind !== "copydone") return first;
      if (end.kind === "failed" && !(end.error instanceof PgError)) throw end.error;
      await client.send(
        copyDone(),
        commandComplete("START_STREAMING"),
        commandComplete("START_REPLICATION"),
        readyForQuery(),
      );
      return first;
    }
    if (first.kind === "failed") {
      // An error inside COPY ends it; the client sees ErrorResponse then ReadyForQuery.
      if (!(first.error instanceof PgError)) throw first.error;
      log.log("warn", first.error.message, { sqlstate: first.error.code, pid: sender.pid });
      await client.send(errorResponse(first.error), readyForQuery());
      return await copyReader;
    }
    if (stopAt !== undefined) {
      // Shutdown: everything up to the end is sent; wait for the client to confirm it, then
      // end the stream as PostgreSQL does, with `COPY 0` inside COPY mode.
      const confirmed = await awaitConfirmation(client, ctx, sender, copyReader);
      await client.send(commandComplete("COPY 0"));
      control.endReason = "server shutdown";
      log.log("info", "all WAL sent, ending replication with COPY 0", {
        pid: sender.pid,
        sent_lsn: formatLsn(sender.sentLsn),
        confirmed,
      });
      return { kind: "gone" };
    }
    // End of a historic timeline: CopyDone, the client's CopyDone, then where to go next.
    const switchPoint = store.endOf(tli);
    await client.send(copyDone());
    const answer = await copyReader;
    if (answer.kind !== "copydone") return answer;
    await client.send(...endOfTimeline(store.history, tli, switchPoint), readyForQuery());
    return answer;
  } finally {
    ticker[Symbol.dispose]();
    stopPipeline.abort();
    control.stop = undefined;
    if (slot) {
      try {
        await slots.flush();
      } catch (e) {
        log.log("warn", `could not save replication slot: ${(e as Error).message}`);
      }
    }
  }
}

/**
 * Waits (bounded) until the client reports everything sent as written or flushed.
 *
 * @returns Whether it did.
 */
async function awaitConfirmation(
  client: ClientConnection,
  ctx: SessionContext,
  sender: Sender,
  copyReader: Promise<CopyEnd>,
): Promise<boolean> {
  const deadline = Date.now() + Math.max(1000, ctx.timeouts.sender || 10_000);
  let gone = false;
  copyReader.then(() => gone = true, () => gone = true);
  while (!gone && Date.now() < deadline) {
    const confirmed = sender.flushLsn !== 0n ? sender.flushLsn : sender.writeLsn;
    if (confirmed >= sender.sentLsn) return true;
    await client.write(keepaliveMessage(sender.sentLsn, true));
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** A CopyData payload from the client: `r` status update or `h` hot standby feedback. */
async function standbyMessage(
  client: ClientConnection,
  ctx: SessionContext,
  sender: Sender,
  body: Uint8Array,
  slot: ReplicationSlot | undefined,
  walEnd: () => Lsn,
  replies: ReplyPacer,
): Promise<void> {
  const r = new BodyReader(body);
  const type = body.length > 0 ? String.fromCharCode(r.byte()) : "";
  if (type === "r") {
    sender.writeLsn = r.uint64();
    sender.flushLsn = r.uint64();
    sender.replayLsn = r.uint64();
    sender.replyTime = pgTimestampToDate(r.int64());
    const replyRequested = r.byte() !== 0;
    const at = replies.arrival(sender.replyTime.getTime());
    ctx.lag?.recordReply(sender, sender.writeLsn, sender.flushLsn, sender.replayLsn, at);
    if (replyRequested) await client.write(keepaliveMessage(walEnd(), false));
    if (slot) ctx.slots.advance(slot, sender.flushLsn, sender.timeline);
    return;
  }
  if (type === "h") {
    sender.replyTime = pgTimestampToDate(r.int64());
    sender.xmin = r.uint32();
    sender.xminEpoch = r.uint32();
    sender.catalogXmin = r.uint32();
    sender.catalogXminEpoch = r.uint32();
    return;
  }
  // As the walsender: logged, and the connection closed without telling the client.
  ctx.log.log("warn", `unexpected message type "${type}"`, {
    sqlstate: SqlState.PROTOCOL_VIOLATION,
    pid: sender.pid,
  });
  client.close();
  throw new ConnectionClosed();
}
