/**
 * The relay's state as one JSON document (`/status`): a `pg_stat_replication` row per sender with
 * catch-up progress, the upstream link, the store and the slots, plus a sampled history of lags and
 * throughput for the dashboard's charts.
 *
 * @module
 */

import type { Sender, SenderRegistry } from "../replication/registry.ts";
import type { SlotManager } from "../replication/slots.ts";
import { type Lags, preciseNow, type ReplicationLag } from "../replication/lag_tracker.ts";
import { WALRELAY_VERSION } from "../replication/settings.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import { crc32cImplementation } from "../wal/crc32c.ts";
import type { WalStore } from "../wal/store.ts";
import type { RelayCounters } from "./counters.ts";
import { redactConninfo } from "../upstream/conninfo.ts";
import type { WalIoStats } from "../upstream/durable_writer.ts";
import type { BackupService } from "../backup/service.ts";
import type { WalBlockCacheStats } from "../stream/block_cache.ts";
import { type BaseBackupsStatus, baseBackupsStatus } from "../backup/status.ts";

/** What the status pages read from a relay (a `WalRelay` has all of it). */
export interface StatusSource {
  /**
   * The WAL store served. In relay mode on an empty directory it opens with the upstream's first
   * WAL; until {@linkcode StatusSource.serving} resolves it may throw.
   */
  readonly store: WalStore;
  /** Resolves once the store is open (absent: open from the start). */
  readonly serving?: Promise<void>;
  /** The senders. */
  readonly registry: SenderRegistry;
  /** The replication slots. */
  readonly slots: SlotManager;
  /** The base backups served by BASE_BACKUP. */
  readonly backups?: BackupService | undefined;
  /** The WAL blocks the senders share, once serving. */
  readonly blockCache?: { readonly stats: WalBlockCacheStats } | undefined;
  /** The decoded-segment cache when it is not the store's own (sender workers each keep one). */
  readonly archiveCache?: WalStore["archiveCache"] | undefined;
}

/** The state of the relay's own replication connection, in relay mode. */
export interface UpstreamStatus {
  /** The upstream's connection string; any password in it is removed before it is shown. */
  conninfo: string;
  /** Whether the connection is up and streaming (or ready to). */
  connected: boolean;
  /** A word for the link's state, as `pg_stat_wal_receiver.status`: `streaming`, `connecting`… */
  state: string;
  /** End of WAL received from upstream. */
  receivedLsn: Lsn | undefined;
  /** End of WAL written and fsynced into the store. */
  flushedLsn: Lsn | undefined;
  /** How far behind the upstream the relay is, in seconds, when known. */
  lagSeconds: number | undefined;
  /** The upstream's clock at its last message, when known. */
  lastMessageTime?: Date | undefined;
  /** Which host of a multi-host connection string the link went to (`host:port`). */
  server?: string | undefined;
  /** Why WAL cannot be written into the directory now (a full disk, a failed fdatasync). */
  storeError?: string | undefined;
  /** The last time the upstream's history forked below the relay's end. */
  divergence?: UpstreamDivergence | undefined;
  /** WAL writes and syncs into the directory since start (`pg_stat_wal`'s counters). */
  walIo?: WalIoStats | undefined;
}

/** WAL set aside because the upstream's history forked below the relay's end. */
export interface UpstreamDivergence {
  /** The timeline the upstream's history forked from. */
  timeline: number;
  /** The fork point. */
  forkLsn: Lsn;
  /** The relay's end of WAL before: the top of the range set aside. */
  endLsn: Lsn;
  /** The timeline followed since. */
  newTimeline: number;
  /** Where the WAL went, relative to the WAL directory. */
  path: string;
  /** When. */
  time: Date;
}

/** Anything that can report the upstream link's state (the upstream receiver). */
export interface UpstreamProvider {
  /** The link's state now. */
  status(): UpstreamStatus;
}

/** Catch-up progress of one sender. */
export interface CatchupProgress {
  /** Durable WAL not yet sent to the client. */
  bytes_behind: number;
  /** Send rate over the last few seconds, bytes per second. */
  rate_bytes_per_second: number;
  /** Seconds until caught up at that rate; `null` when not moving. */
  eta_seconds: number | null;
}

/** One row of `/status` `senders`: `pg_stat_replication`'s columns and walrelay's own. */
export interface SenderStatus {
  /** The pid sent in BackendKeyData. */
  pid: number;
  /** Always NULL: the relay has no catalog. */
  usesysid: null;
  /** Startup `user`. */
  usename: string;
  /** Startup `application_name`. */
  application_name: string;
  /** Client address. */
  client_addr: string;
  /** Always NULL (no reverse lookups). */
  client_hostname: null;
  /** Client port. */
  client_port: number;
  /** When the connection was accepted (ISO 8601). */
  backend_start: string;
  /** Hot standby feedback xmin, or NULL. */
  backend_xmin: number | null;
  /** `startup`, `catchup`, `streaming` or `stopping`. */
  state: string;
  /** End of WAL sent. */
  sent_lsn: string | null;
  /** Reported written. */
  write_lsn: string | null;
  /** Reported flushed. */
  flush_lsn: string | null;
  /** Reported replayed. */
  replay_lsn: string | null;
  /** Seconds, or `null` (SQL NULL). */
  write_lag: number | null;
  /** Seconds, or `null`. */
  flush_lag: number | null;
  /** Seconds, or `null`. */
  replay_lag: number | null;
  /** Always 0: the relay has no synchronous standbys. */
  sync_priority: number;
  /** Always `async`. */
  sync_state: string;
  /** The client's clock at its last reply (ISO 8601). */
  reply_time: string | null;
  /** Timeline streamed. */
  timeline: number;
  /** Slot in use. */
  slot_name: string | null;
  /** WAL bytes sent on this connection. */
  bytes_sent: number;
  /** Where the WAL sent comes from: `memory` or `disk`. */
  source: "memory" | "disk";
  /** Catch-up progress. */
  catchup: CatchupProgress;
  /** The sender thread serving the connection (`--workers`), from 1; 0 for the main thread. */
  worker: number;
}

/** `/status` `upstream`. */
export interface UpstreamStatusJson {
  /** Connection string without password. */
  conninfo: string;
  /** Whether the link is up. */
  connected: boolean;
  /** State of the link. */
  state: string;
  /** End of WAL received. */
  received_lsn: string | null;
  /** End of WAL written durably. */
  flushed_lsn: string | null;
  /** Seconds behind upstream. */
  lag_seconds: number | null;
  /** Upstream clock at its last message (ISO 8601). */
  last_message_time: string | null;
  /** The host (`host:port`) of the connection string the current or last connection went to. */
  server: string | null;
  /** `write` calls putting WAL into segment files since start (`pg_stat_wal.wal_write`). */
  wal_writes: number;
  /** Seconds spent writing. */
  wal_write_seconds: number;
  /** `fdatasync` calls of segment files since start: nothing is sent before its sync. */
  wal_syncs: number;
  /** Seconds spent waiting for them: the disk's share of the lag the relay adds. */
  wal_sync_seconds: number;
  /** The last divergence: WAL above a fork of the upstream's history, set aside. */
  divergence: {
    timeline: number;
    fork_lsn: string;
    end_lsn: string;
    new_timeline: number;
    path: string;
    time: string;
  } | null;
}

/** One timeline of the store. */
export interface TimelineStatus {
  /** Timeline ID. */
  timeline: number;
  /** Segment files. */
  segments: number;
  /** Oldest segment file. */
  first_segment: string | null;
  /** Newest segment file. */
  last_segment: string | null;
  /** Bytes on disk. */
  bytes: number;
}

/** `/status` `store`. */
export interface StoreStatus {
  /** The WAL directory. */
  dir: string;
  /** System identifier of the WAL. */
  system_identifier: string;
  /** PostgreSQL major version of the WAL. */
  server_version: number;
  /** `wal_segment_size` in bytes. */
  segment_size: number;
  /** Timeline ID. */
  timeline: number;
  /** Each timeline present. */
  timelines: TimelineStatus[];
  /** Oldest segment in WAL order. */
  oldest_segment: string | null;
  /** Newest segment in WAL order. */
  newest_segment: string | null;
  /** Durable end that may be sent. */
  valid_end_lsn: string;
  /** Bytes of segment files. */
  bytes_on_disk: number;
  /**
   * Relay mode: why WAL from upstream cannot be written into the directory now, in
   * PostgreSQL's words (`could not write to file "…": No space left on device`); else `null`.
   */
  write_error: string | null;
}

/** `/status` `slots`. */
export interface SlotStatus {
  /** Slot name. */
  slot_name: string;
  /** Always `physical`. */
  slot_type: "physical";
  /** Dropped at the end of its session. */
  temporary: boolean;
  /** Whether a session uses it. */
  active: boolean;
  /** The session using it. */
  active_pid: number | null;
  /** Oldest WAL its client needs. */
  restart_lsn: string | null;
  /** Timeline of `restart_lsn`. */
  restart_tli: number | null;
  /** WAL the slot holds back: valid end minus restart LSN. */
  retained_bytes: number | null;
}

/** The whole `/status` document. */
export interface RelayStatus {
  /** When the document was made (ISO 8601). */
  time: string;
  /** walrelay's version. */
  version: string;
  /**
   * What checksums WAL in long pieces: `native` (the CPU's instructions, with `--allow-ffi`),
   * `wasm` or `js`.
   */
  crc32c: "native" | "wasm" | "js";
  /** The process's memory, and the main thread's JavaScript heap within it. */
  memory: MemoryStatus;
  /** When status collection started. */
  started_at: string;
  /** `max_wal_senders`. */
  max_senders: number;
  /** One row per connection, as `pg_stat_replication`. */
  senders: SenderStatus[];
  /** The upstream link, or NULL without one. */
  upstream: UpstreamStatusJson | null;
  /** The WAL directory. */
  store: StoreStatus;
  /** Replication slots. */
  slots: SlotStatus[];
  /** Base backups: stored, being taken from the upstream, being sent; NULL without a store. */
  base_backups: BaseBackupsStatus | null;
  /**
   * The caches: WAL blocks read once for every sender (NULL before serving), and decoded
   * archived segments.
   */
  caches: { wal_blocks: CacheStatus | null; archive_segments: ArchiveCacheStatus };
  /** Rates over the last sampling interval, bytes per second. */
  throughput: { sent_bytes_per_second: number; received_bytes_per_second: number };
  /** Counters since start. */
  totals: {
    wal_bytes_sent: number;
    connections_accepted: number;
    connections_authorized: number;
    disconnections: number;
    errors: Record<string, number>;
    /** Complete segment files validation found damaged (once per file identity). */
    wal_files_damaged: number;
    /** Failed file operations writing WAL into the directory, by operation. */
    write_failures: Record<string, number>;
  };
}

/**
 * The process's memory as `Deno.memoryUsage` reports it: resident set, and the main thread's
 * JavaScript heap and the buffers outside it (sender workers have heaps of their own, counted in
 * the resident set only).
 */
export interface MemoryStatus {
  /** Resident set size of the whole process. */
  rss_bytes: number;
  /** The main thread's V8 heap, reserved. */
  heap_total_bytes: number;
  /** The main thread's V8 heap, in use. */
  heap_used_bytes: number;
  /** Memory of the main thread's objects held outside its heap: WAL buffers, mostly. */
  external_bytes: number;
}

/** One cache the senders share: what it answered, read, let go, and holds. */
export interface CacheStatus {
  /** Reads answered from the cache. */
  hits: number;
  /** Reads that filled it: a file read, or an archived file decoded. */
  misses: number;
  /** Entries dropped to stay within `max_bytes`. */
  evictions: number;
  /** Bytes held now. */
  bytes: number;
  /** Bytes held at most. */
  max_bytes: number;
}

/** The decoded-segment cache's figures. */
export interface ArchiveCacheStatus extends CacheStatus {
  /**
   * Seconds spent reading and decoding archived files since start, on whichever thread did it:
   * the cost the cache is there to pay once for every client.
   */
  decode_seconds: number;
}

/** One point of the sampled history. */
export interface HistoryPoint {
  /** Milliseconds since the epoch. */
  t: number;
  /** Relay send throughput, bytes per second, over the last interval. */
  sent: number;
  /** Durable end advance, bytes per second. */
  received: number;
  /** Per client: `[pid, application_name, write_lag, flush_lag, replay_lag]` in seconds. */
  clients: [number, string, number | null, number | null, number | null][];
}

interface SenderSample {
  /** Bytes on disk. */
  bytes: number;
  /** When the document was made (ISO 8601). */
  time: number;
}

/**
 * Samples the relay once a second: throughput, each sender's send rate, and a bounded history
 * of lags for the charts. Builds the `/status` document.
 *
 * @example
 * ```ts ignore
 * const status = new StatusModel(relay, { lag, counters });
 * const doc = status.snapshot();
 * ```
 */
export class StatusModel {
  /** The relay observed. */
  readonly source: StatusSource;
  /** The lag of its clients. */
  readonly lag: ReplicationLag;
  /** Its counters. */
  readonly counters: RelayCounters;
  /** The upstream link, in relay mode. */
  readonly upstream: UpstreamProvider | undefined;
  /** When observation began. */
  readonly startedAt: Date = new Date();
  #history: HistoryPoint[] = [];
  #historyLength: number;
  #senderSamples = new Map<number, SenderSample[]>();
  #last: { time: number; sent: number; end: Lsn } | undefined;
  #throughput = { sent: 0, received: 0 };
  #sourceOf: (s: Sender) => "memory" | "disk";

  /**
   * Observes a relay.
   *
   * @param source The relay.
   * @param options Lag tracker, counters, upstream, history length in samples (default 600).
   */
  constructor(
    source: StatusSource,
    options: {
      lag: ReplicationLag;
      counters: RelayCounters;
      upstream?: UpstreamProvider | undefined;
      historyLength?: number;
      sourceOf?: (s: Sender) => "memory" | "disk";
    },
  ) {
    this.source = source;
    this.lag = options.lag;
    this.counters = options.counters;
    this.upstream = options.upstream;
    this.#historyLength = options.historyLength ?? 600;
    this.#sourceOf = options.sourceOf ?? ((s) => s.source);
  }

  /** The sampled history, oldest first. */
  history(): HistoryPoint[] {
    return this.#history;
  }

  /** Takes one sample (call it about once a second). */
  sample(now: number = preciseNow()): void {
    const senders = this.source.registry.list();
    const sent = this.counters.walBytesSent(senders);
    const end = this.source.store.endLsn;
    if (this.#last) {
      const dt = (now - this.#last.time) / 1000;
      if (dt > 0) {
        this.#throughput = {
          sent: Math.max(0, (sent - this.#last.sent) / dt),
          received: Math.max(0, Number(end - this.#last.end) / dt),
        };
      }
    }
    this.#last = { time: now, sent, end };
    const live = new Set<number>();
    for (const s of senders) {
      live.add(s.pid);
      let samples = this.#senderSamples.get(s.pid);
      if (!samples) this.#senderSamples.set(s.pid, samples = []);
      samples.push({ bytes: s.bytesSent, time: now });
      while (samples.length > 11) samples.shift();
    }
    for (const pid of this.#senderSamples.keys()) {
      if (!live.has(pid)) this.#senderSamples.delete(pid);
    }
    this.#history.push({
      t: Math.round(now),
      sent: Math.round(this.#throughput.sent),
      received: Math.round(this.#throughput.received),
      clients: senders.filter((s) => s.state !== "startup").map((s) => {
        const l = this.lag.lags(s.pid);
        return [s.pid, s.applicationName, seconds(l.write), seconds(l.flush), seconds(l.replay)];
      }),
    });
    while (this.#history.length > this.#historyLength) this.#history.shift();
  }

  #rate(pid: number): number {
    const samples = this.#senderSamples.get(pid);
    if (!samples || samples.length < 2) return 0;
    const a = samples[0]!;
    const b = samples[samples.length - 1]!;
    const dt = (b.time - a.time) / 1000;
    return dt > 0 ? Math.max(0, (b.bytes - a.bytes) / dt) : 0;
  }

  /** One sender's row. */
  senderStatus(s: Sender): SenderStatus {
    const lags: Lags = this.lag.lags(s.pid);
    const end = this.source.store.endLsn;
    const streaming = s.state !== "startup";
    const behind = streaming && end > s.sentLsn ? Number(end - s.sentLsn) : 0;
    const rate = this.#rate(s.pid);
    return {
      pid: s.pid,
      usesysid: null,
      usename: s.user,
      application_name: s.applicationName,
      client_addr: s.clientAddr,
      client_hostname: null,
      client_port: s.clientPort,
      backend_start: s.backendStart.toISOString(),
      backend_xmin: s.xmin === 0 ? null : s.xmin,
      state: s.state,
      sent_lsn: lsnOrNull(s.sentLsn),
      write_lsn: lsnOrNull(s.writeLsn),
      flush_lsn: lsnOrNull(s.flushLsn),
      replay_lsn: lsnOrNull(s.replayLsn),
      write_lag: seconds(lags.write),
      flush_lag: seconds(lags.flush),
      replay_lag: seconds(lags.replay),
      sync_priority: 0,
      sync_state: "async",
      reply_time: s.replyTime?.toISOString() ?? null,
      timeline: s.timeline,
      slot_name: s.slot ?? null,
      bytes_sent: s.bytesSent,
      source: this.#sourceOf(s),
      catchup: {
        bytes_behind: behind,
        rate_bytes_per_second: Math.round(rate),
        eta_seconds: behind === 0 ? 0 : rate > 0 ? behind / rate : null,
      },
      worker: s.worker ?? 0,
    };
  }

  /** The store's part. */
  storeStatus(): StoreStatus {
    const store = this.source.store;
    const timelines: TimelineStatus[] = store.timelines().map((tli) => {
      const segs = store.segments(tli);
      return {
        timeline: tli,
        segments: segs.length,
        first_segment: segs[0]?.name ?? null,
        last_segment: segs.at(-1)?.name ?? null,
        bytes: segs.reduce((n, f) => n + f.size, 0),
      };
    });
    const names = timelines.flatMap((t) => [t.first_segment, t.last_segment])
      .filter((n): n is string => n !== null).map((n) => n.replace(/\.partial$/, ""));
    // Oldest and newest by position in WAL (the name's log/segment part), then timeline.
    const byPosition = (a: string, b: string) =>
      a.slice(8).localeCompare(b.slice(8)) || a.localeCompare(b);
    names.sort(byPosition);
    return {
      dir: store.dir,
      system_identifier: store.identity.systemId.toString(),
      server_version: store.identity.serverMajor,
      segment_size: store.identity.segmentSize,
      timeline: store.timeline,
      timelines,
      oldest_segment: names[0] ?? null,
      newest_segment: names.at(-1) ?? null,
      valid_end_lsn: formatLsn(store.endLsn),
      bytes_on_disk: timelines.reduce((n, t) => n + t.bytes, 0),
      write_error: this.upstream?.status().storeError ?? null,
    };
  }

  /** The slots' part. */
  slotStatus(): SlotStatus[] {
    const end = this.source.store.endLsn;
    return this.source.slots.list().map((s) => ({
      slot_name: s.name,
      slot_type: "physical" as const,
      temporary: s.temporary,
      active: s.activePid !== 0,
      active_pid: s.activePid === 0 ? null : s.activePid,
      restart_lsn: s.restartLsn === undefined ? null : formatLsn(s.restartLsn),
      restart_tli: s.restartTli ?? null,
      retained_bytes: s.restartLsn === undefined
        ? null
        : Number(end > s.restartLsn ? end - s.restartLsn : 0n),
    }));
  }

  /** The caches' part. */
  cacheStatus(): RelayStatus["caches"] {
    const b = this.source.blockCache?.stats;
    const a = this.source.archiveCache ?? this.source.store.archiveCache;
    return {
      wal_blocks: b
        ? {
          hits: b.hits,
          misses: b.misses,
          evictions: b.evictions,
          bytes: b.bytes,
          max_bytes: b.maxBytes,
        }
        : null,
      archive_segments: {
        hits: a.hits,
        misses: a.decodes,
        evictions: a.evictions,
        bytes: a.bytes,
        max_bytes: a.capacity,
        decode_seconds: a.decodeSeconds,
      },
    };
  }

  /** The upstream's part, or `null` without upstream. */
  upstreamStatus(): UpstreamStatusJson | null {
    if (!this.upstream) return null;
    const u = this.upstream.status();
    return {
      conninfo: redactConninfo(u.conninfo),
      connected: u.connected,
      state: u.state,
      received_lsn: u.receivedLsn === undefined ? null : formatLsn(u.receivedLsn),
      flushed_lsn: u.flushedLsn === undefined ? null : formatLsn(u.flushedLsn),
      lag_seconds: u.lagSeconds ?? null,
      last_message_time: u.lastMessageTime?.toISOString() ?? null,
      server: u.server ?? null,
      wal_writes: u.walIo?.writes ?? 0,
      wal_write_seconds: u.walIo?.writeSeconds ?? 0,
      wal_syncs: u.walIo?.syncs ?? 0,
      wal_sync_seconds: u.walIo?.syncSeconds ?? 0,
      divergence: u.divergence
        ? {
          timeline: u.divergence.timeline,
          fork_lsn: formatLsn(u.divergence.forkLsn),
          end_lsn: formatLsn(u.divergence.endLsn),
          new_timeline: u.divergence.newTimeline,
          path: u.divergence.path,
          time: u.divergence.time.toISOString(),
        }
        : null,
    };
  }

  /** The whole `/status` document. */
  snapshot(): RelayStatus {
    const senders = this.source.registry.list();
    return {
      time: new Date().toISOString(),
      version: WALRELAY_VERSION,
      crc32c: crc32cImplementation,
      memory: memoryStatus(),
      started_at: this.startedAt.toISOString(),
      max_senders: this.source.registry.maxSenders,
      senders: senders.map((s) => this.senderStatus(s)),
      upstream: this.upstreamStatus(),
      store: this.storeStatus(),
      slots: this.slotStatus(),
      base_backups: this.source.backups ? baseBackupsStatus(this.source.backups) : null,
      caches: this.cacheStatus(),
      throughput: {
        sent_bytes_per_second: Math.round(this.#throughput.sent),
        received_bytes_per_second: Math.round(this.#throughput.received),
      },
      totals: {
        wal_bytes_sent: this.counters.walBytesSent(senders),
        connections_accepted: this.counters.connectionsAccepted,
        connections_authorized: this.counters.connectionsAuthorized,
        disconnections: this.counters.disconnections,
        errors: Object.fromEntries([...this.counters.errors].sort()),
        wal_files_damaged: this.counters.walFilesDamaged,
        write_failures: Object.fromEntries([...this.counters.writeFailures].sort()),
      },
    };
  }
}

function memoryStatus(): MemoryStatus {
  const m = Deno.memoryUsage();
  return {
    rss_bytes: m.rss,
    heap_total_bytes: m.heapTotal,
    heap_used_bytes: m.heapUsed,
    external_bytes: m.external,
  };
}

function lsnOrNull(lsn: Lsn): string | null {
  return lsn === 0n ? null : formatLsn(lsn);
}

function seconds(ms: number | undefined): number | null {
  return ms === undefined ? null : Math.round(ms * 1000) / 1e6;
}
