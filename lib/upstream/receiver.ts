/**
 * Relay mode's replication client: follows a primary (or another relay) as `pg_receivewal` and
 * the walreceiver do, writes the WAL durably into the relay's directory, reports what is on disk
 * as write and flush (so a relay named in `synchronous_standby_names` holds commits until the WAL
 * is durable here), forwards hot standby feedback, follows timeline switches and reconnects.
 *
 * @module
 */

import type { PgClient } from "../pgwire/client.ts";
import type { QueryResult } from "../pgwire/query_result.ts";
import { parseErrorFields, PgServerError } from "../pgwire/server_error.ts";
import { BodyReader } from "../pgwire/body_reader.ts";
import { pgTimestampNow } from "../pgwire/timestamp.ts";
import type { Logger } from "../log.ts";
import { formatLsn, type Lsn, parseLsn } from "../wal/lsn.ts";
import {
  historyFileName,
  isValidSegmentSize,
  segmentOf,
  segmentStart,
  type TimelineId,
} from "../wal/segment.ts";
import { join } from "../wal/_path.ts";
import { parseConninfo, redactConninfo } from "./conninfo.ts";
import type { ConninfoEnvironment } from "./conninfo_environment.ts";
import { resolveConninfo, type ResolvedConninfo } from "./conninfo_resolve.ts";
import { connectUpstream } from "./connect.ts";
import {
  type DurableSink,
  DurableWriter,
  scanLocalWal,
  writeFileDurably,
} from "./durable_writer.ts";
import { enforceRetention } from "./retention.ts";
import type { ForwardedFeedback } from "./feedback.ts";

/** Hot standby feedback to forward: xmin and catalog_xmin with their epochs (0 = none). */
export type UpstreamFeedback = ForwardedFeedback;

/** Options of {@linkcode startUpstream}. */
export interface UpstreamOptions {
  /** The relay's WAL directory (`--wal-dir`); must exist. */
  dir: string;
  /** libpq conninfo or URL of the upstream (`--upstream`). */
  conninfo: string;
  /** Physical slot on the upstream (`--slot`). */
  slot?: string | undefined;
  /** Create the slot when it does not exist (`--create-slot`). */
  createSlot?: boolean | undefined;
  /** Where to start in an empty directory (`--start`), rounded down to a segment start. */
  start?: Lsn | undefined;
  /** `--retain`: byte budget for segment files. */
  retainBytes?: number | undefined;
  /** The oldest LSN a slot on the relay still needs (retention never removes it). */
  protectedLsn?: () => Lsn | undefined;
  /** The oldest xmin and catalog_xmin among downstream standbys, forwarded as feedback. */
  feedback?: () => UpstreamFeedback | undefined;
  /** `application_name` when the conninfo sets none. Default `walrelay`. */
  applicationName?: string;
  /** Standby status interval (ms). Default 10000. */
  statusIntervalMs?: number;
  /** Silence from the upstream after which the connection is dropped (ms). Default 60000. */
  receiveTimeoutMs?: number;
  /** Flush at least this often while data keeps coming (ms). Default 100. */
  flushIntervalMs?: number;
  /** Flush at least every this many bytes. Default 4 MiB. */
  flushBytes?: number;
  /** Reconnect delays: first, doubling up to max (ms). Default 1000 → 30000. */
  reconnectMs?: { initial: number; max: number };
  /** Log lines. Default: none. */
  logger?: Logger;
  /** Environment for conninfo defaults and the password file (tests). */
  environment?: ConninfoEnvironment;
}

/** What the receiver is doing, for a status page. */
export interface UpstreamStatus {
  /** The conninfo without its password. */
  conninfo: string;
  /** Whether a replication connection is up and streaming. */
  connected: boolean;
  /** The upstream's system identifier, once seen. */
  systemId: string | undefined;
  /** The timeline being received. */
  timeline: TimelineId | undefined;
  /** End of WAL received and written. */
  receivedLsn: Lsn | undefined;
  /** End of WAL durable in the directory. */
  flushedLsn: Lsn | undefined;
  /** The upstream's WAL end, from its last message. */
  upstreamEndLsn: Lsn | undefined;
  /** When the last message from the upstream arrived. */
  lastMessageTime: Date | undefined;
  /** The last error, until the next successful connection. */
  lastError: string | undefined;
  /** The host of the list the current (or last) connection went to, as `host:port`. */
  server: string | undefined;
  /** The slot streamed from. */
  slot: string | undefined;
}

/** Thrown for problems reconnecting cannot fix (another database system, another segment size). */
export class UpstreamConfigError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "UpstreamConfigError";
  }
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

/**
 * A running upstream receiver. Create it with {@linkcode startUpstream}.
 *
 * @example
 * ```ts ignore
 * import { startUpstream } from "./receiver.ts";
 * const upstream = await startUpstream({ dir: "/var/lib/walrelay", conninfo: "host=primary" });
 * const store = await WalStore.open("/var/lib/walrelay");
 * await upstream.attach(store);
 * // …
 * await upstream.close();
 * ```
 */
export class UpstreamReceiver {
  #opts: UpstreamOptions;
  #conn: ResolvedConninfo;
  #status: UpstreamStatus;
  #writer: DurableWriter | undefined;
  #client: PgClient | undefined;
  #stopped = false;
  #stopWake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #ready = Promise.withResolvers<void>();
  #slotCreated = false;
  #feedbackSent = false;
  #bootstrapStart: Lsn | undefined;
  #retention: Promise<unknown> = Promise.resolve();

  /** @internal Use {@linkcode startUpstream}. */
  constructor(opts: UpstreamOptions) {
    this.#opts = opts;
    this.#conn = resolveConninfo(parseConninfo(opts.conninfo), {
      replication: true,
      fallbackApplicationName: opts.applicationName ?? "walrelay",
      ...(opts.environment ? { environment: opts.environment } : {}),
    });
    this.#status = {
      conninfo: redactConninfo(opts.conninfo),
      connected: false,
      systemId: undefined,
      timeline: undefined,
      receivedLsn: undefined,
      flushedLsn: undefined,
      upstreamEndLsn: undefined,
      lastMessageTime: undefined,
      lastError: undefined,
      server: undefined,
      slot: opts.slot,
    };
    this.#ready.promise.catch(() => {});
  }

  /** A snapshot of the receiver's state. */
  get status(): UpstreamStatus {
    return {
      ...this.#status,
      receivedLsn: this.#writer?.writtenLsn ?? this.#status.receivedLsn,
      flushedLsn: this.#writer?.flushedLsn ?? this.#status.flushedLsn,
      timeline: this.#writer?.timeline || this.#status.timeline,
    };
  }

  /** Resolves once the directory holds WAL with the upstream's identity (a store can open it). */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** Resolves when the receiver has stopped (after {@linkcode close} or a fatal error). */
  get finished(): Promise<void> {
    return this.#loop ?? Promise.resolve();
  }

  #log(
    level: "debug" | "info" | "warn" | "error",
    message: string,
    fields?: Record<string, string | number | bigint | undefined>,
  ): void {
    this.#opts.logger?.log(level, message, fields);
  }

  /** @internal Starts the loop. */
  start(): void {
    this.#loop = this.#run();
  }

  /**
   * Hands the store over: from now on durable WAL is announced to it (and what the directory
   * holds beyond the store's view is announced at once).
   */
  async attach(store: DurableSink): Promise<void> {
    this.#sink = store;
    await this.#writer?.attach(store);
  }

  #sink: DurableSink | undefined;

  /** Stops: closes the connection, flushes what was received, closes the files. */
  async close(): Promise<void> {
    this.#stopped = true;
    this.#stopWake?.();
    this.#client?.close();
    await this.#loop?.catch(() => {});
    await this.#writer?.close();
    this.#ready.reject(new Error("upstream receiver closed"));
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stopped) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#stopWake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.#stopWake = undefined;
  }

  async #run(): Promise<void> {
    const backoff = this.#opts.reconnectMs ?? { initial: 1000, max: 30_000 };
    let delay = backoff.initial;
    while (!this.#stopped) {
      let streamed = false;
      try {
        streamed = await this.#session();
      } catch (e) {
        if (this.#stopped) break;
        const msg = e instanceof Error ? e.message : String(e);
        this.#status.lastError = msg;
        if (e instanceof UpstreamConfigError) {
          this.#log("error", `upstream receiver stopped: ${msg}`, {
            upstream: this.#status.conninfo,
          });
          this.#ready.reject(e);
          this.#stopped = true;
          break;
        }
        this.#log("warn", `upstream connection failed: ${msg}`, {
          upstream: this.#status.conninfo,
        });
      } finally {
        this.#client?.close();
        this.#client = undefined;
        if (this.#status.connected) {
          this.#status.connected = false;
          this.#log("info", "disconnected from upstream", { upstream: this.#status.conninfo });
        }
        // Whatever arrived before the connection broke is written: make it durable.
        await this.#writer?.flush().catch((e) =>
          this.#log("error", `could not flush WAL: ${(e as Error).message}`)
        );
      }
      if (this.#stopped) break;
      if (streamed) delay = backoff.initial;
      this.#log("info", `reconnecting to upstream in ${delay} ms`);
      await this.#sleep(delay);
      delay = Math.min(delay * 2, backoff.max);
    }
  }

  /** One connection: identify, start, stream (across timeline switches). Returns whether WAL flowed. */
  async #session(): Promise<boolean> {
    const c = this.#conn;
    // Each (re)connection walks the host list from its start, as a walreceiver's new PGconn does.
    const { client, server } = await connectUpstream(c, {
      params: {
        database: "replication",
        replication: "true",
        ...(c.applicationName ? { application_name: c.applicationName } : {}),
      },
      ...(this.#opts.environment ? { environment: this.#opts.environment } : {}),
      stopped: () => this.#stopped,
      onHostFailed: (host, e) => {
        if (c.hosts.length > 1) {
          this.#log("warn", `could not use upstream host ${host}: ${e.message}`, {
            upstream: this.#status.conninfo,
          });
        }
      },
    });
    this.#client = client;
    this.#status.server = server;
    if (this.#stopped) return false;
    const [ident] = await client.query("IDENTIFY_SYSTEM");
    const row = ident?.rows[0];
    if (!row || row.length < 3) {
      throw new Error("could not identify system: bad IDENTIFY_SYSTEM result");
    }
    const systemId = BigInt(row[0]!);
    const upstreamTli = Number(row[1]);
    const xlogpos = parseLsn(row[2] ?? "");
    if (xlogpos === undefined) {
      throw new Error(`could not parse write-ahead log location "${row[2]}"`);
    }
    const [show] = await client.query("SHOW wal_segment_size");
    const segmentSize = parseSegmentSize(show?.rows[0]?.[0] ?? "");

    let writer = this.#writer;
    let local;
    if (!writer) {
      local = await scanLocalWal(this.#opts.dir, segmentSize);
      if (local.systemId !== undefined && local.systemId !== systemId) {
        throw new UpstreamConfigError(
          `database system identifier differs between the upstream and "${this.#opts.dir}": ` +
            `upstream has ${systemId}, the directory ${local.systemId}`,
        );
      }
      writer = await DurableWriter.open(this.#opts.dir, {
        segmentSize,
        log: (m) => this.#log("debug", m),
        onSegmentComplete: () => this.#enforceRetention(segmentSize),
      });
      // A relay restarted with a smaller --retain trims at once, not at the next segment.
      await this.#enforceRetention(segmentSize);
    } else if (writer.segmentSize !== segmentSize) {
      throw new UpstreamConfigError(
        `upstream WAL segment size ${segmentSize} differs from ${writer.segmentSize}`,
      );
    }
    if (this.#status.systemId !== undefined && this.#status.systemId !== String(systemId)) {
      throw new UpstreamConfigError(
        `database system identifier of the upstream changed from ${this.#status.systemId} to ${systemId}`,
      );
    }
    this.#status.systemId = String(systemId);
    this.#status.connected = true;
    this.#status.lastError = undefined;
    this.#log("info", "connected to upstream", {
      upstream: this.#status.conninfo,
      server: this.#status.server,
      system_identifier: String(systemId),
      timeline: upstreamTli,
      upstream_lsn: formatLsn(xlogpos),
    });

    const slot = this.#opts.slot;
    if (slot && this.#opts.createSlot && !this.#slotCreated) {
      const major = Math.floor(
        Number(/^\d+/.exec(client.parameters.get("server_version") ?? "")?.[0] ?? 15),
      );
      const cmd = major >= 15
        ? `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} PHYSICAL ( RESERVE_WAL)`
        : `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} PHYSICAL RESERVE_WAL`;
      try {
        await client.query(cmd);
        this.#log("info", `created replication slot "${slot}" on the upstream`);
      } catch (e) {
        if (!(e instanceof PgServerError && e.code === "42710")) throw e;
      }
      this.#slotCreated = true;
    }

    // Where to start: the directory's own durable end, else --start, else the upstream's position.
    let tli: TimelineId;
    let start: Lsn;
    if (this.#writer) {
      // A reconnect: continue exactly where the durable WAL ends (any start is valid upstream).
      tli = writer.timeline;
      start = writer.flushedLsn;
      writer.position(tli, start);
    } else if (local?.timeline !== undefined && local.resumeLsn !== undefined) {
      tli = local.timeline;
      start = local.resumeLsn;
      writer.position(tli, start, local.durableEnd ?? start);
      this.#log(
        "info",
        `resuming from the WAL directory at ${formatLsn(start)} on timeline ${tli}`,
      );
    } else {
      tli = upstreamTli;
      start = this.#opts.start ?? xlogpos;
      if (slot && this.#opts.start === undefined) {
        const fromSlot = await this.#slotPosition(client, slot);
        if (fromSlot) [start, tli] = [fromSlot.lsn, fromSlot.tli];
      }
      start = segmentStart(segmentOf(start, segmentSize), segmentSize);
      writer.position(tli, start);
    }
    if (!this.#writer) {
      this.#writer = writer;
      if (this.#sink) await writer.attach(this.#sink);
      // The store reads the identity from a long page header: only then is the directory ready.
      if (local?.systemId !== undefined) this.#ready.resolve();
      else this.#bootstrapStart = start;
    }
    if (tli > 1) await this.#ensureHistory(client, tli);

    let streamed = false;
    while (!this.#stopped) {
      const cmd = `START_REPLICATION ${slot ? `SLOT ${quoteIdent(slot)} ` : ""}${
        formatLsn(start)
      } TIMELINE ${tli}`;
      this.#log("info", "starting replication from upstream", {
        start: formatLsn(start),
        timeline: tli,
        ...(slot ? { slot } : {}),
      });
      const result = await client.startReplication(cmd);
      let next: { tli: TimelineId; start: Lsn } | undefined;
      if (result === "copy") {
        const end = await this.#stream(client, tli);
        streamed ||= end.streamed;
        if (end.next === undefined) return streamed; // the upstream ended the stream (shutdown)
        next = end.next;
      } else {
        next = parseNextTimeline(result);
        if (!next) throw new Error("unexpected result after START_REPLICATION");
      }
      if (next.tli <= tli) {
        throw new Error(
          `server reported unexpected next timeline ${next.tli}, following timeline ${tli}`,
        );
      }
      await this.#writer.flush();
      const history = await this.#fetchHistory(client, next.tli);
      await this.#writer.switchTimeline(next.tli, next.start, history);
      this.#log("info", `switched to timeline ${next.tli} at ${formatLsn(next.start)}`, {
        upstream: this.#status.conninfo,
      });
      tli = next.tli;
      start = segmentStart(segmentOf(next.start, segmentSize), segmentSize);
    }
    return streamed;
  }

  async #slotPosition(
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

  async #fetchHistory(client: PgClient, tli: TimelineId): Promise<Uint8Array> {
    const [r] = await client.query(`TIMELINE_HISTORY ${tli}`);
    const name = r?.rows[0]?.[0];
    const content = r?.rows[0]?.[1];
    if (name !== historyFileName(tli) || content === null || content === undefined) {
      throw new Error(`unexpected response to TIMELINE_HISTORY ${tli}: file "${name}"`);
    }
    return new TextEncoder().encode(content);
  }

  /** Fetches the history file of `tli` when the directory lacks it (before any of its WAL). */
  async #ensureHistory(client: PgClient, tli: TimelineId): Promise<void> {
    try {
      await Deno.stat(join(this.#opts.dir, historyFileName(tli)));
      return;
    } catch { /* missing */ }
    const content = await this.#fetchHistory(client, tli);
    await writeFileDurably(this.#opts.dir, historyFileName(tli), content);
    await this.#sink?.refresh();
  }

  /**
   * The COPY BOTH phase. Returns the next timeline when the upstream ended this one, or
   * `undefined` when it ended the stream (`COPY 0` at shutdown).
   */
  async #stream(
    client: PgClient,
    tli: TimelineId,
  ): Promise<{ streamed: boolean; next: { tli: TimelineId; start: Lsn } | undefined }> {
    const writer = this.#writer!;
    const statusInterval = this.#opts.statusIntervalMs ?? 10_000;
    const receiveTimeout = this.#opts.receiveTimeoutMs ?? 60_000;
    const flushInterval = this.#opts.flushIntervalMs ?? 100;
    const flushBytes = this.#opts.flushBytes ?? 4 << 20;
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
    const sendStatus = (replyRequested = false): Promise<void> =>
      serially(async () => {
        const flushed = writer.flushedLsn;
        await client.sendStatus(flushed, flushed, 0n, replyRequested, pgTimestampNow());
        reportedFlush = flushed;
        lastStatus = Date.now();
        await this.#sendFeedback(client);
      });
    const flush = async (): Promise<void> => {
      await writer.flush();
      this.#checkReady();
      lastFlush = Date.now();
      if (writer.flushedLsn !== reportedFlush) await sendStatus();
    };

    // The periodic duties (status, the receive timeout, a flush left by a stalled burst) run
    // beside the read loop, so each message is one await on the socket and no timer of its own.
    let failure: Error | undefined;
    let ticking: Promise<void> | undefined;
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
    const ticker = setInterval(() => {
      if (ticking || failure) return;
      ticking = tick().catch((e) => {
        failure ??= e as Error;
        client.close();
      }).finally(() => ticking = undefined);
    }, Math.max(10, Math.min(flushInterval, statusInterval, receiveTimeout / 4)));
    const stopTicker = async (): Promise<void> => {
      clearInterval(ticker);
      await ticking;
      await sending;
    };

    try {
      await sendStatus();
      while (!this.#stopped) {
        let msg;
        try {
          msg = await client.nextRaw();
        } catch (e) {
          throw failure ?? e;
        }
        lastReceive = Date.now();
        pinged = false;
        this.#status.lastMessageTime = new Date(lastReceive);
        if (msg.type === "d") {
          const kind = msg.body[0];
          if (kind === 0x77) {
            const r = new BodyReader(msg.body.subarray(1));
            const dataStart = r.uint64();
            const walEnd = r.uint64();
            r.uint64(); // sendTime
            this.#status.upstreamEndLsn = walEnd;
            await writer.write(tli, dataStart, msg.body.subarray(25));
            streamed = true;
          } else if (kind === 0x6b) {
            const r = new BodyReader(msg.body.subarray(1));
            this.#status.upstreamEndLsn = r.uint64();
            r.uint64();
            if (r.byte() === 1) {
              // Answer at once, with everything received made durable first.
              await writer.flush();
              this.#checkReady();
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
            else if (m.type === "D") current.rows.push(dataRowText(m.body));
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
          this.#log("info", "replication terminated by upstream server", {
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

  async #sendFeedback(client: PgClient): Promise<void> {
    const f = this.#opts.feedback?.();
    if (f === undefined) {
      if (!this.#feedbackSent) return;
      // Release what was held back before.
      await client.sendFeedback(0, 0, 0, 0, pgTimestampNow());
      this.#feedbackSent = false;
      return;
    }
    await client.sendFeedback(f.xmin, f.epoch, f.catalogXmin, f.catalogEpoch, pgTimestampNow());
    this.#feedbackSent = true;
  }

  #enforceRetention(segmentSize: number): Promise<void> {
    const budget = this.#opts.retainBytes;
    if (budget === undefined) return Promise.resolve();
    // In the background, one pass at a time: removing files must not stall the stream.
    this.#retention = this.#retention.then(async () => {
      const removed = await enforceRetention(this.#opts.dir, {
        retainBytes: budget,
        segmentSize,
        keepFrom: this.#opts.protectedLsn?.(),
        log: (m) => this.#log("info", m),
      });
      // The store learns of removals now rather than at its next periodic rescan.
      if (removed.length > 0) await this.#sink?.refresh();
    }).catch((e) => this.#log("warn", `retention failed: ${(e as Error).message}`));
    return Promise.resolve();
  }

  /** Resolves `ready` once the first segment's long page header is durable in the directory. */
  #checkReady(): void {
    const w = this.#writer;
    if (w && this.#bootstrapStart !== undefined && w.flushedLsn >= this.#bootstrapStart + 40n) {
      this.#bootstrapStart = undefined;
      this.#ready.resolve();
    }
  }
}

function dataRowText(body: Uint8Array): (string | null)[] {
  const r = new BodyReader(body);
  const n = r.int16();
  const out: (string | null)[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    out.push(len < 0 ? null : new TextDecoder().decode(r.bytes(len)));
  }
  return out;
}

function parseNextTimeline(results: QueryResult[]): { tli: TimelineId; start: Lsn } | undefined {
  const row = results.find((r) => r.rows.length > 0)?.rows[0];
  if (!row || row.length < 2) return undefined;
  const tli = Number(row[0]);
  const start = parseLsn(row[1] ?? "");
  return Number.isInteger(tli) && tli > 0 && start !== undefined ? { tli, start } : undefined;
}

/**
 * Starts relay mode's receiver on `opts.dir`. Call it before opening the `WalStore`: when the
 * directory is empty it waits until the first WAL from the upstream is durable there, so the store
 * can read the identity from it. Then {@linkcode UpstreamReceiver.attach} the store.
 *
 * @throws {UpstreamConfigError} when the directory belongs to another database system; a bad
 * conninfo throws at once.
 *
 * @example
 * ```ts ignore
 * import { startUpstream } from "./receiver.ts";
 * const upstream = await startUpstream({ dir, conninfo: "host=primary user=repl", slot: "relay1" });
 * const store = await WalStore.open(dir);
 * await upstream.attach(store);
 * ```
 */
export async function startUpstream(opts: UpstreamOptions): Promise<UpstreamReceiver> {
  const receiver = new UpstreamReceiver(opts);
  receiver.start();
  try {
    await receiver.ready;
  } catch (e) {
    await receiver.close();
    throw e;
  }
  return receiver;
}
