/**
 * Relay mode's replication client: follows a primary (or another relay) as `pg_receivewal` and
 * the walreceiver do, writes the WAL durably into the relay's directory, reports what is on disk
 * as write and flush (so a relay named in `synchronous_standby_names` holds commits until the WAL
 * is durable here), forwards hot standby feedback, follows timeline switches and reconnects.
 *
 * This file is the following: where to start, what to do when a timeline ends, when to
 * reconnect. What is said on one connection is in `_session.ts`.
 *
 * @module
 */

import type { PgClient } from "../pgwire/client.ts";
import type { Logger } from "../log.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import {
  historyFileName,
  parseWalFileName,
  segmentFileName,
  segmentOf,
  segmentStart,
  type TimelineId,
} from "../wal/segment.ts";
import { SegmentCompressor } from "../archive/segment_compressor.ts";
import type { CompressFormat } from "../archive/compress.ts";
import { join } from "../wal/_path.ts";
import {
  createPhysicalSlot,
  FeedbackForwarder,
  fetchTimelineHistory,
  identifySystem,
  type NextTimeline,
  readSlotPosition,
  startReplication,
  streamWal,
} from "./_session.ts";
import { UpstreamConfigError } from "./config_error.ts";
import { parseConninfo, redactConninfo } from "./conninfo.ts";
import type { ConninfoEnvironment } from "./conninfo_environment.ts";
import { resolveConninfo, type ResolvedConninfo } from "./conninfo_resolve.ts";
import { connectUpstream } from "./connect.ts";
import {
  type DurableSink,
  DurableWriter,
  newWalIoStats,
  scanLocalWal,
  type WalIoStats,
  writeFileDurably,
} from "./durable_writer.ts";
import { enforceRetention } from "./retention.ts";
import { type Divergence, divergenceMessage, findFork, setAside } from "./divergence.ts";
import { parseHistory } from "../wal/history.ts";
import { PgServerError } from "../pgwire/server_error.ts";
import type { ForwardedFeedback } from "./feedback.ts";
import { WalFileError } from "./wal_file_error.ts";

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
  /** `--retain`: byte budget for segment files (compressed ones counted at their size on disk). */
  retainBytes?: number | undefined;
  /** `--compress`: store each completed segment compressed in this format. */
  compress?: CompressFormat | undefined;
  /** The oldest LSN a slot on the relay still needs (retention never removes it). */
  protectedLsn?: () => Lsn | undefined;
  /**
   * After a divergence: moves the relay's slots whose restart LSN lies above the fork point back
   * to it; returns the names of the slots moved.
   */
  clampSlots?: (lsn: Lsn, tli: TimelineId) => Promise<string[]>;
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
  /**
   * The last failure to write WAL into the directory (a full disk, a failed fdatasync), until
   * WAL beyond the point where it failed is durable.
   */
  storeError: string | undefined;
  /** The host of the list the current (or last) connection went to, as `host:port`. */
  server: string | undefined;
  /** The slot streamed from. */
  slot: string | undefined;
  /** The last time the upstream's history forked below the relay's end, and what was set aside. */
  divergence: Divergence | undefined;
  /** WAL writes and syncs since the receiver started, over every connection. */
  walIo: WalIoStats;
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
  #feedback: FeedbackForwarder;
  #bootstrapStart: Lsn | undefined;
  #retention: Promise<unknown> = Promise.resolve();
  #compressor: SegmentCompressor | undefined;
  /** Where WAL could not be written: the store counts as unwritable until it is durable past it. */
  #faultAt: Lsn | undefined;
  /** When the last message from the upstream arrived (ms); a `Date` only when asked for. */
  #lastMessageAt: number | undefined;

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
      storeError: undefined,
      server: undefined,
      slot: opts.slot,
      divergence: undefined,
      walIo: newWalIoStats(),
    };
    this.#feedback = new FeedbackForwarder(opts.feedback);
    this.#ready.promise.catch(() => {});
  }

  /** A snapshot of the receiver's state. */
  get status(): UpstreamStatus {
    return {
      ...this.#status,
      walIo: { ...this.#status.walIo },
      receivedLsn: this.#writer?.writtenLsn ?? this.#status.receivedLsn,
      flushedLsn: this.#writer?.flushedLsn ?? this.#status.flushedLsn,
      timeline: this.#writer?.timeline || this.#status.timeline,
      lastMessageTime: this.#lastMessageAt === undefined
        ? undefined
        : new Date(this.#lastMessageAt),
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
    await this.#compressor?.close();
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
        if (e instanceof WalFileError) {
          this.#storeFailed(e);
        } else if (e instanceof UpstreamConfigError) {
          this.#log("error", `upstream receiver stopped: ${msg}`, {
            upstream: this.#status.conninfo,
          });
          this.#ready.reject(e);
          this.#stopped = true;
          break;
        } else {
          this.#log("warn", `upstream connection failed: ${msg}`, {
            upstream: this.#status.conninfo,
          });
        }
      } finally {
        this.#client?.close();
        this.#client = undefined;
        if (this.#status.connected) {
          this.#status.connected = false;
          this.#log("info", "disconnected from upstream", { upstream: this.#status.conninfo });
        }
        // Whatever arrived before the connection broke is written: make it durable.
        await this.#writer?.flush().catch((e) =>
          e instanceof WalFileError
            ? this.#storeFailed(e)
            : this.#log("error", `could not flush WAL: ${(e as Error).message}`)
        );
      }
      if (this.#stopped) break;
      if (streamed) delay = backoff.initial;
      this.#log("info", `reconnecting to upstream in ${delay} ms`);
      await this.#sleep(delay);
      delay = Math.min(delay * 2, backoff.max);
    }
  }

  /**
   * One connection: identify, choose where to start, then stream, following the upstream across
   * timeline switches. Returns whether WAL flowed.
   */
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
    const { systemId, timeline: upstreamTli, xlogpos, segmentSize } = await identifySystem(client);

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
        stats: this.#status.walIo,
        onSegmentComplete: (tli, segno) => {
          if (!this.#compress(segmentFileName(tli, segno, segmentSize))) {
            return this.#enforceRetention(segmentSize);
          }
        },
      });
      // Segments completed before a restart (or before --compress was given) are compressed now.
      if (this.#opts.compress) await this.#compressBacklog(segmentSize);
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
      if (await createPhysicalSlot(client, slot)) {
        this.#log("info", `created replication slot "${slot}" on the upstream`);
      }
      this.#slotCreated = true;
    }

    // Where to start: the directory's own durable end, else --start, else the upstream's position.
    let tli: TimelineId;
    let start: Lsn;
    // Only WAL the directory already holds can lie beyond a fork of the upstream's history.
    const holdsWal = this.#writer !== undefined || local?.timeline !== undefined;
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
        const fromSlot = await readSlotPosition(client, slot);
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
    // The upstream is on a newer timeline: does its history still hold the relay's WAL?
    if (upstreamTli > tli && holdsWal) {
      const moved = await this.#diverge(client, upstreamTli);
      if (moved) [tli, start] = [moved.tli, moved.start];
    }
    if (tli > 1) await this.#ensureHistory(client, tli);

    let streamed = false;
    while (!this.#stopped) {
      this.#log("info", "starting replication from upstream", {
        start: formatLsn(start),
        timeline: tli,
        ...(slot ? { slot } : {}),
      });
      let next: NextTimeline | "copy" | undefined;
      try {
        next = await startReplication(client, slot, tli, start);
      } catch (e) {
        // The upstream's history forked below our start (it learnt of a new timeline since it
        // identified itself, or the relay's history disagrees with it): set aside and retry.
        if (!(e instanceof PgServerError) || !/is not in this server's history/.test(e.message)) {
          throw e;
        }
        const { timeline } = await identifySystem(client);
        const moved = timeline > tli ? await this.#diverge(client, timeline) : undefined;
        if (!moved) throw e;
        [tli, start] = [moved.tli, moved.start];
        continue;
      }
      if (next === "copy") {
        const end = await this.#stream(client, writer, tli);
        streamed ||= end.streamed;
        if (end.next === undefined) return streamed; // the upstream ended the stream (shutdown)
        next = end.next;
      }
      if (next.tli <= tli) {
        throw new Error(
          `server reported unexpected next timeline ${next.tli}, following timeline ${tli}`,
        );
      }
      await writer.flush();
      if (next.start < writer.flushedLsn) {
        // The timeline ended below what the relay holds: an upstream relay set its WAL aside.
        const moved = await this.#diverge(client, next.tli);
        if (!moved) {
          throw new Error(
            `upstream ended timeline ${tli} at ${formatLsn(next.start)}, below the end of WAL ` +
              `${formatLsn(writer.flushedLsn)}, and its history does not say where it forked`,
          );
        }
        [tli, start] = [moved.tli, moved.start];
        continue;
      }
      const history = await fetchTimelineHistory(client, next.tli);
      await writer.switchTimeline(next.tli, next.start, history);
      this.#log("info", `switched to timeline ${next.tli} at ${formatLsn(next.start)}`, {
        upstream: this.#status.conninfo,
      });
      tli = next.tli;
      start = segmentStart(segmentOf(next.start, segmentSize), segmentSize);
    }
    return streamed;
  }

  /**
   * Compares the relay's history with that of the upstream's timeline `upstreamTli`. When it
   * forks below the relay's end, the WAL above the fork point is set aside, the writer continues
   * on the upstream's timeline from the fork point, and slots above it are moved back to it.
   * Returns where streaming resumes, or `undefined` when nothing diverged.
   */
  async #diverge(
    client: PgClient,
    upstreamTli: TimelineId,
  ): Promise<{ tli: TimelineId; start: Lsn } | undefined> {
    const writer = this.#writer;
    if (!writer) return undefined;
    await writer.flush();
    const localTli = writer.timeline;
    const end = writer.flushedLsn;
    const upstreamContent = await fetchTimelineHistory(client, upstreamTli);
    const upstream = parseHistory(upstreamTli, new TextDecoder().decode(upstreamContent));
    // Without its history file a timeline has no parents, as PostgreSQL takes it.
    const local = parseHistory(
      localTli,
      localTli > 1
        ? await Deno.readTextFile(join(this.#opts.dir, historyFileName(localTli))).catch((e) => {
          if (e instanceof Deno.errors.NotFound) return undefined;
          throw e;
        })
        : undefined,
    );
    const fork = findFork(local, end, upstream);
    if (!fork) return undefined;
    if (fork.next <= localTli) {
      // The store never goes back to an older timeline ID, nor reads a timeline's history twice.
      throw new Error(
        `upstream history forked from timeline ${fork.tli} at ${formatLsn(fork.lsn)} onto ` +
          `timeline ${fork.next}, which is not newer than the relay's timeline ${localTli}`,
      );
    }
    const d = await setAside(this.#opts.dir, writer.segmentSize, fork, end);
    this.#log("warn", divergenceMessage(d), {
      upstream: this.#status.conninfo,
      files: d.files.length,
    });
    this.#status.divergence = d;
    // The writer continues from the fork point: the new timeline's first segment begins with
    // the fork timeline's bytes below it, as after any timeline switch.
    const history = fork.next === upstreamTli
      ? upstreamContent
      : await fetchTimelineHistory(client, fork.next);
    const segStart = segmentStart(segmentOf(fork.lsn, writer.segmentSize), writer.segmentSize);
    if (d.prefixKept) {
      writer.position(fork.tli, fork.lsn);
      await writer.switchTimeline(fork.next, fork.lsn, history);
    } else {
      // No WAL of the fork's segment below the fork point here: the new timeline's segment
      // comes whole from the upstream, and nothing of it counts until then.
      await writeFileDurably(this.#opts.dir, historyFileName(fork.next), history);
      writer.position(fork.next, segStart);
      await this.#sink?.refresh();
    }
    this.#log("info", `switched to timeline ${fork.next} at ${formatLsn(fork.lsn)}`, {
      upstream: this.#status.conninfo,
    });
    for (const name of await this.#opts.clampSlots?.(fork.lsn, fork.next) ?? []) {
      this.#log(
        "warn",
        `replication slot "${name}" moved back to the fork point ${formatLsn(fork.lsn)}`,
      );
    }
    return { tli: fork.next, start: segStart };
  }

  /** Fetches the history file of `tli` when the directory lacks it (before any of its WAL). */
  async #ensureHistory(client: PgClient, tli: TimelineId): Promise<void> {
    try {
      await Deno.stat(join(this.#opts.dir, historyFileName(tli)));
      return;
    } catch { /* missing */ }
    const content = await fetchTimelineHistory(client, tli);
    await writeFileDurably(this.#opts.dir, historyFileName(tli), content);
    await this.#sink?.refresh();
  }

  /** The COPY BOTH phase on `tli`, with the receiver's settings and status. */
  #stream(
    client: PgClient,
    writer: DurableWriter,
    tli: TimelineId,
  ): ReturnType<typeof streamWal> {
    return streamWal(client, tli, {
      writer,
      statusIntervalMs: this.#opts.statusIntervalMs ?? 10_000,
      receiveTimeoutMs: this.#opts.receiveTimeoutMs ?? 60_000,
      flushIntervalMs: this.#opts.flushIntervalMs ?? 100,
      flushBytes: this.#opts.flushBytes ?? 4 << 20,
      feedback: this.#feedback,
      stopped: () => this.#stopped,
      received: (at) => this.#lastMessageAt = at,
      upstreamEnd: (lsn) => this.#status.upstreamEndLsn = lsn,
      flushed: () => this.#checkReady(),
      log: (level, message, fields) => this.#log(level, message, fields),
    });
  }

  /**
   * Queues a completed segment for compression under `--compress`; retention runs after it, on
   * the compressed size. Returns whether it was queued.
   */
  #compress(name: string): boolean {
    const format = this.#opts.compress;
    if (!format) return false;
    this.#compressor ??= new SegmentCompressor({
      dir: this.#opts.dir,
      format,
      beforeRemove: () => this.#sink?.refresh() ?? Promise.resolve(),
      afterCompress: () => {
        // Plain segments still queued would count at their full size: retention waits until
        // they are compressed, so it never removes compressed WAL to make room for them.
        if (this.#writer && this.#compressor?.pending === 0) {
          this.#enforceRetention(this.#writer.segmentSize);
        }
      },
      log: (level, message) => this.#log(level, message),
    });
    this.#compressor.enqueue(name);
    return true;
  }

  /** Queues every complete plain segment of the directory, oldest first, for compression. */
  async #compressBacklog(segmentSize: number): Promise<void> {
    const names: string[] = [];
    for await (const e of Deno.readDir(this.#opts.dir)) {
      if (!e.isFile) continue;
      if (e.name.endsWith(".tmp") && /^[0-9A-F]{24}\.(gz|lz4|zst)\.tmp$/.test(e.name)) {
        // A compression cut short by a crash: the plain file is still there.
        await Deno.remove(join(this.#opts.dir, e.name)).catch(() => {});
        continue;
      }
      const p = parseWalFileName(e.name, segmentSize);
      if (p?.kind !== "segment" || p.partial) continue;
      const st = await Deno.stat(join(this.#opts.dir, e.name)).catch(() => undefined);
      if (st?.size === segmentSize) names.push(e.name);
    }
    for (const name of names.sort()) this.#compress(name);
  }

  /**
   * Under `--compress` every completed segment is compressed: one queued at startup, one renamed
   * and not yet queued, and a `.partial` written to its end and not yet renamed alike. Retention
   * must not make room for it by its plain size. The `.partial` being written, one of an earlier
   * timeline, and a segment whose compression failed count as they are.
   */
  #awaitsCompression(name: string, segmentSize: number): boolean {
    if (this.#opts.compress === undefined) return false;
    const p = parseWalFileName(name, segmentSize);
    if (p?.kind !== "segment") return false;
    if (!p.partial) return !this.#compressor?.leftPlain(name);
    const w = this.#writer;
    return w !== undefined && p.tli === w.timeline &&
      segmentStart(p.segno + 1n, segmentSize) <= w.writtenLsn;
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
        awaitsCompression: (name) => this.#awaitsCompression(name, segmentSize),
        log: (m) => this.#log("info", m),
      });
      // The store learns of removals now rather than at its next periodic rescan.
      if (removed.length > 0) await this.#sink?.refresh();
    }).catch((e) => this.#log("warn", `retention failed: ${(e as Error).message}`));
    return Promise.resolve();
  }

  /**
   * A local write failure: logged in PostgreSQL's words, apart from upstream errors, with the
   * operation for `/metrics`. What was not durable is streamed again after the reconnect.
   */
  #storeFailed(e: WalFileError): void {
    this.#status.storeError = e.message;
    this.#faultAt = this.#writer?.writtenLsn ?? 0n;
    this.#log("error", e.message, { operation: e.operation, file: e.path });
  }

  /**
   * After each flush: clears a local failure once WAL past it is durable, and resolves `ready`
   * once the first segment's long page header is durable in the directory.
   */
  #checkReady(): void {
    const w = this.#writer;
    if (w && this.#faultAt !== undefined && w.flushedLsn > this.#faultAt) {
      this.#faultAt = undefined;
      this.#status.storeError = undefined;
      this.#log("info", "WAL is being written again", { lsn: formatLsn(w.flushedLsn) });
    }
    if (w && this.#bootstrapStart !== undefined && w.flushedLsn >= this.#bootstrapStart + 40n) {
      this.#bootstrapStart = undefined;
      this.#ready.resolve();
    }
  }
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
  const receiver = followUpstream(opts);
  try {
    await receiver.ready;
  } catch (e) {
    await receiver.close();
    throw e;
  }
  return receiver;
}

/**
 * Starts relay mode's receiver on `opts.dir` without waiting for it. A relay that listens at once
 * serves what the directory holds; an empty directory's store opens when
 * {@linkcode UpstreamReceiver.ready} resolves, once the upstream's first WAL is durable there.
 *
 * @example
 * ```ts ignore
 * import { followUpstream } from "./receiver.ts";
 * const upstream = followUpstream({ dir, conninfo: "host=primary user=repl" });
 * await upstream.ready;
 * await upstream.attach(await WalStore.open(dir));
 * ```
 */
export function followUpstream(opts: UpstreamOptions): UpstreamReceiver {
  const receiver = new UpstreamReceiver(opts);
  receiver.start();
  return receiver;
}
