/**
 * One replication connection to the upstream, as the walreceiver's `libpqwalreceiver.c` speaks
 * it: IDENTIFY_SYSTEM and the segment size, the slot commands, TIMELINE_HISTORY,
 * START_REPLICATION, and the COPY BOTH loop that writes WAL and answers with status updates and
 * hot standby feedback. Which timeline to ask for, and what to do when one ends, is the
 * receiver's business.
 *
 * @module
 */

import { BodyReader } from "../pgwire/body_reader.ts";
import type { PgClient } from "../pgwire/client.ts";
import { parseDataRow, type QueryResult } from "../pgwire/query_result.ts";
import { parseErrorFields, PgServerError } from "../pgwire/server_error.ts";
import { pgTimestampNow } from "../pgwire/timestamp.ts";
import { formatLsn, type Lsn, parseLsn } from "../wal/lsn.ts";
import { PAGE_MAGIC_BY_MAJOR } from "../wal/page_header.ts";
import { historyFileName, isValidSegmentSize, type TimelineId } from "../wal/segment.ts";
import { UpstreamConfigError } from "./config_error.ts";
import type { DurableWriter } from "./durable_writer.ts";
import type { ForwardedFeedback } from "./feedback.ts";

/** What IDENTIFY_SYSTEM and `SHOW wal_segment_size` say about the upstream. */
export interface UpstreamIdentity {
  /** The database system identifier. */
  systemId: bigint;
  /** The upstream's current timeline. */
  timeline: TimelineId;
  /** The upstream's current WAL position. */
  xlogpos: Lsn;
  /** The WAL segment size in bytes. */
  segmentSize: number;
}

/** Where the upstream's next timeline starts, as it reports it when one ends. */
export interface NextTimeline {
  /** The next timeline. */
  tli: TimelineId;
  /** Its switch point. */
  start: Lsn;
}

/**
 * The PostgreSQL major of an upstream, from the `server_version` it reports at startup; one whose
 * WAL walrelay could not serve is refused before any of it is written.
 *
 * @param serverVersion The `server_version` ParameterStatus (`18.6 (Debian 18.6-3)`, `19devel`).
 * @throws {UpstreamConfigError} for a major walrelay does not support, or no version at all.
 *
 * @example
 * ```ts
 * import { upstreamMajor } from "./_session.ts";
 * import assert from "node:assert/strict";
 * assert.equal(upstreamMajor("18.6 (Debian 18.6-3)"), 18);
 * assert.throws(() => upstreamMajor("19devel"), /not a PostgreSQL major walrelay supports/);
 * ```
 */
export function upstreamMajor(serverVersion: string | undefined): number {
  const major = Number(/^(\d+)/.exec(serverVersion ?? "")?.[1]);
  if (PAGE_MAGIC_BY_MAJOR[major] === undefined) {
    const majors = Object.keys(PAGE_MAGIC_BY_MAJOR).map(Number);
    throw new UpstreamConfigError(
      `upstream server version ${serverVersion ?? "(not reported)"} is not a PostgreSQL major ` +
        `walrelay supports (${Math.min(...majors)}–${Math.max(...majors)})`,
    );
  }
  return major;
}

/**
 * Asks the upstream who it is: system identifier, timeline, position and segment size. An
 * upstream of a major walrelay cannot serve is refused first, so its WAL is never written.
 */
export async function identifySystem(client: PgClient): Promise<UpstreamIdentity> {
  upstreamMajor(client.parameters.get("server_version"));
  const [ident] = await client.query("IDENTIFY_SYSTEM");
  const row = ident?.rows[0];
  if (!row || row.length < 3) {
    throw new Error("could not identify system: bad IDENTIFY_SYSTEM result");
  }
  const xlogpos = parseLsn(row[2] ?? "");
  if (xlogpos === undefined) {
    throw new Error(`could not parse write-ahead log location "${row[2]}"`);
  }
  const [show] = await client.query("SHOW wal_segment_size");
  return {
    systemId: BigInt(row[0]!),
    timeline: Number(row[1]),
    xlogpos,
    segmentSize: parseSegmentSize(show?.rows[0]?.[0] ?? ""),
  };
}

/** Parses `SHOW wal_segment_size` (`16MB`, `1GB`). */
function parseSegmentSize(text: string): number {
  const m = /^(\d+)\s*(kB|MB|GB)$/.exec(text);
  const unit = m?.[2] === "GB" ? 1 << 30 : m?.[2] === "MB" ? 1 << 20 : 1024;
  const size = m ? Number(m[1]) * unit : NaN;
  if (!isValidSegmentSize(size)) {
    throw new UpstreamConfigError(`WAL segment size could not be parsed: "${text}"`);
  }
  return size;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Creates a physical slot that reserves WAL at once; one that exists already is fine. */
export async function createPhysicalSlot(client: PgClient, slot: string): Promise<boolean> {
  const major = Math.floor(
    Number(/^\d+/.exec(client.parameters.get("server_version") ?? "")?.[0] ?? 15),
  );
  const cmd = major >= 15
    ? `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} PHYSICAL ( RESERVE_WAL)`
    : `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} PHYSICAL RESERVE_WAL`;
  try {
    await client.query(cmd);
    return true;
  } catch (e) {
    if (!(e instanceof PgServerError && e.code === "42710")) throw e;
    return false;
  }
}

/** Where a slot stands (READ_REPLICATION_SLOT), or `undefined` before PostgreSQL 15. */
export async function readSlotPosition(
  client: PgClient,
  slot: string,
): Promise<{ lsn: Lsn; tli: TimelineId } | undefined> {
  try {
    const [r] = await client.query(`READ_REPLICATION_SLOT ${quoteIdent(slot)}`);
    const lsn = parseLsn(r?.rows[0]?.[1] ?? "");
    const tli = Number(r?.rows[0]?.[2]);
    return lsn !== undefined && tli > 0 ? { lsn, tli } : undefined;
  } catch {
    return undefined; // before PostgreSQL 15
  }
}

/** The history file of `tli`, as TIMELINE_HISTORY returns it. */
export async function fetchTimelineHistory(
  client: PgClient,
  tli: TimelineId,
): Promise<Uint8Array> {
  const [r] = await client.query(`TIMELINE_HISTORY ${tli}`);
  const name = r?.rows[0]?.[0];
  const content = r?.rows[0]?.[1];
  if (name !== historyFileName(tli) || content === null || content === undefined) {
    throw new Error(`unexpected response to TIMELINE_HISTORY ${tli}: file "${name}"`);
  }
  return new TextEncoder().encode(content);
}

/**
 * Sends START_REPLICATION. Returns `"copy"` when the stream began, or the next timeline when the
 * start is the requested timeline's end (the upstream answers with a result set instead).
 */
export async function startReplication(
  client: PgClient,
  slot: string | undefined,
  tli: TimelineId,
  start: Lsn,
): Promise<"copy" | NextTimeline> {
  const cmd = `START_REPLICATION ${slot ? `SLOT ${quoteIdent(slot)} ` : ""}${
    formatLsn(start)
  } TIMELINE ${tli}`;
  const result = await client.startReplication(cmd);
  if (result === "copy") return result;
  const next = parseNextTimeline(result);
  if (!next) throw new Error("unexpected result after START_REPLICATION");
  return next;
}

function parseNextTimeline(results: QueryResult[]): NextTimeline | undefined {
  const row = results.find((r) => r.rows.length > 0)?.rows[0];
  if (!row || row.length < 2) return undefined;
  const tli = Number(row[0]);
  const start = parseLsn(row[1] ?? "");
  return Number.isInteger(tli) && tli > 0 && start !== undefined ? { tli, start } : undefined;
}

/**
 * Hot standby feedback for the upstream. It remembers whether something is held back, so that
 * when the downstream standbys stop asking, one all-zero message releases it.
 */
export class FeedbackForwarder {
  #source: (() => ForwardedFeedback | undefined) | undefined;
  #held = false;
  #sent: ForwardedFeedback | undefined;

  /** @param source The oldest xmin and catalog_xmin among downstream standbys. */
  constructor(source: (() => ForwardedFeedback | undefined) | undefined) {
    this.#source = source;
  }

  /**
   * Sends the current feedback, or the release of the last one. Unless `always`, feedback the
   * upstream has already got is not sent again: as the walreceiver, which sends it at most once
   * per status interval, a status update after each flush need not carry it.
   */
  send(client: PgClient, always = true): Promise<void> {
    const f = this.#source?.();
    if (f === undefined) {
      if (!this.#held) return Promise.resolve();
      this.#held = false;
      this.#sent = undefined;
      return client.sendFeedback(0, 0, 0, 0, pgTimestampNow());
    }
    const s = this.#sent;
    if (
      !always && s !== undefined && s.xmin === f.xmin && s.epoch === f.epoch &&
      s.catalogXmin === f.catalogXmin && s.catalogEpoch === f.catalogEpoch
    ) {
      return Promise.resolve();
    }
    this.#held = true;
    this.#sent = f;
    return client.sendFeedback(f.xmin, f.epoch, f.catalogXmin, f.catalogEpoch, pgTimestampNow());
  }
}

/** What the COPY loop needs besides the connection. */
export interface StreamContext {
  /** Where WAL goes. */
  writer: DurableWriter;
  /** Standby status interval (ms). */
  statusIntervalMs: number;
  /** Silence after which the connection is dropped (ms). */
  receiveTimeoutMs: number;
  /** Flush at least this often while data keeps coming (ms). */
  flushIntervalMs: number;
  /** Flush at least every this many bytes. */
  flushBytes: number;
  /** Hot standby feedback, sent with each status update. */
  feedback: FeedbackForwarder;
  /** `true` once the receiver is closing. */
  stopped(): boolean;
  /** Told when each message arrived (`Date.now()`). */
  received(at: number): void;
  /** Told the upstream's WAL end, from the messages that carry it. */
  upstreamEnd(lsn: Lsn): void;
  /** Told after each flush. */
  flushed(): void;
  /** Log lines. */
  log(level: "info", message: string, fields: Record<string, string | number>): void;
}

/** How a COPY BOTH phase ended. */
export interface StreamEnd {
  /** Whether any WAL arrived. */
  streamed: boolean;
  /** The next timeline when the upstream ended this one; `undefined` when it ended the stream. */
  next: NextTimeline | undefined;
}

/**
 * The COPY BOTH phase on timeline `tli`. Returns the next timeline when the upstream ended this
 * one, or `undefined` when it ended the stream (`COPY 0` at shutdown) or the receiver stopped.
 */
export async function streamWal(
  client: PgClient,
  tli: TimelineId,
  ctx: StreamContext,
): Promise<StreamEnd> {
  const writer = ctx.writer;
  const statusInterval = ctx.statusIntervalMs;
  const receiveTimeout = ctx.receiveTimeoutMs;
  const flushInterval = ctx.flushIntervalMs;
  const flushBytes = ctx.flushBytes;
  let streamed = false;
  let lastReceive = Date.now();
  let lastStatus = 0;
  let lastFlush = Date.now();
  let reportedFlush = -1n;
  let pinged = false;

  // Messages to the upstream go out one at a time, whether from the loop or the ticker.
  let sending: Promise<unknown> = Promise.resolve();
  const serially = (send: () => Promise<void>): Promise<void> => {
    const p = sending.then(send);
    sending = p.catch(() => {});
    return p;
  };
  // `afterFlush`: the update a flush owes the upstream, carrying feedback only when it changed.
  const sendStatus = (replyRequested = false, afterFlush = false): Promise<void> =>
    serially(async () => {
      const flushed = writer.flushedLsn;
      await client.sendStatus(flushed, flushed, 0n, replyRequested, pgTimestampNow());
      reportedFlush = flushed;
      lastStatus = Date.now();
      await ctx.feedback.send(client, !afterFlush);
    });
  const flush = async (): Promise<void> => {
    await writer.flush();
    ctx.flushed();
    lastFlush = Date.now();
    if (writer.flushedLsn !== reportedFlush) await sendStatus(false, true);
  };

  // The periodic duties (status, the receive timeout, a flush left by a stalled burst) run on
  // one timer beside the read loop, armed for the earliest of them: a message costs no timer, and
  // a quiet link wakes the relay only when a duty is due, as the walreceiver computes its wakeups.
  let failure: Error | undefined;
  let ticking: Promise<void> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timerAt = Infinity;
  let stopped = false;
  const tick = async (): Promise<void> => {
    const t = Date.now();
    if (writer.pendingBytes > 0 && t - lastFlush >= flushInterval) await flush();
    if (t - lastReceive >= receiveTimeout) {
      failure = new Error("terminating upstream connection due to timeout");
      client.close();
    } else if (!pinged && t - lastReceive >= receiveTimeout / 2) {
      pinged = true;
      await sendStatus(true);
    } else if (t - lastStatus >= statusInterval) {
      await sendStatus();
    }
  };
  /** When the next duty is due; a deadline that moved on since only makes the timer early. */
  const nextDuty = (): number => {
    let at = lastStatus + statusInterval;
    const silence = lastReceive + (pinged ? receiveTimeout : receiveTimeout / 2);
    if (silence < at) at = silence;
    if (writer.pendingBytes > 0 && lastFlush + flushInterval < at) at = lastFlush + flushInterval;
    return at;
  };
  const arm = (at: number): void => {
    if (stopped || failure || ticking) return;
    if (timer !== undefined) {
      if (at >= timerAt) return;
      clearTimeout(timer);
    }
    timerAt = at;
    // Never sooner than 10 ms: a zero interval means "at every wake", not a busy loop.
    timer = setTimeout(onTimer, Math.max(10, at - Date.now()));
  };
  const onTimer = (): void => {
    timer = undefined;
    timerAt = Infinity;
    if (stopped || failure) return;
    ticking = tick().catch((e) => {
      failure ??= e as Error;
      client.close();
    }).finally(() => {
      ticking = undefined;
      arm(nextDuty());
    });
  };
  const stopTicker = async (): Promise<void> => {
    stopped = true;
    clearTimeout(timer);
    await ticking;
    await sending;
  };

  try {
    await sendStatus();
    arm(nextDuty());
    while (!ctx.stopped()) {
      let msg;
      try {
        msg = await client.nextRaw();
      } catch (e) {
        throw failure ?? e;
      }
      lastReceive = Date.now();
      pinged = false;
      ctx.received(lastReceive);
      if (msg.type === "d") {
        const kind = msg.body[0];
        if (kind === 0x77) {
          const r = new BodyReader(msg.body.subarray(1));
          const dataStart = r.uint64();
          const walEnd = r.uint64();
          r.uint64(); // sendTime
          ctx.upstreamEnd(walEnd);
          await writer.write(tli, dataStart, msg.body.subarray(25));
          streamed = true;
        } else if (kind === 0x6b) {
          const r = new BodyReader(msg.body.subarray(1));
          ctx.upstreamEnd(r.uint64());
          r.uint64();
          if (r.byte() === 1) {
            // Answer at once, with everything received made durable first.
            await writer.flush();
            ctx.flushed();
            lastFlush = Date.now();
            await sendStatus();
          }
        } else {
          throw new Error(`unrecognized streaming header: "${String.fromCharCode(kind ?? 0)}"`);
        }
        // Sync when the upstream pauses (nothing buffered), or at the byte/time bounds.
        if (
          writer.pendingBytes > 0 &&
          (client.buffered === 0 || writer.pendingBytes >= flushBytes ||
            Date.now() - lastFlush >= flushInterval)
        ) {
          await flush();
        }
        // A burst cut short with WAL still to sync: the timer flushes it if nothing follows.
        if (writer.pendingBytes > 0) arm(lastFlush + flushInterval);
      } else if (msg.type === "c") {
        // End of the timeline: answer CopyDone, read next_tli and the two CommandCompletes.
        // Nothing else may follow CopyDone: the ticker stops first.
        await stopTicker();
        await writer.flush();
        await sendStatus();
        await client.sendCopyDone();
        const results: QueryResult[] = [];
        let current: QueryResult = { fields: [], rows: [], tag: "" };
        while (true) {
          const m = await client.next();
          if (m.type === "Z") break;
          if (m.type === "T") current.fields = [];
          else if (m.type === "D") current.rows.push(parseDataRow(m.body));
          else if (m.type === "C") {
            results.push(current);
            current = { fields: [], rows: [], tag: "" };
          }
        }
        const next = parseNextTimeline(results);
        if (!next) throw new Error("upstream ended the stream without a next timeline");
        return { streamed, next };
      } else if (msg.type === "C") {
        // `COPY 0`: the upstream shut down after sending everything.
        await writer.flush();
        ctx.log("info", "replication terminated by upstream server", {
          end: formatLsn(writer.flushedLsn),
          timeline: tli,
        });
        return { streamed, next: undefined };
      } else if (msg.type === "E") {
        throw new PgServerError(parseErrorFields(msg.body));
      } else if (msg.type !== "N" && msg.type !== "S") {
        throw new Error(`unexpected message "${msg.type}" in replication stream`);
      }
    }
    return { streamed, next: undefined };
  } finally {
    await stopTicker();
  }
}
