/**
 * The messages between a relay and its sender threads. Not part of the public API.
 *
 * @module
 */

import type { AuthConfig } from "../auth/authenticator.ts";
import type { BackupProgress } from "../backup/serve.ts";
import type { LogFields, LogLevel } from "../log.ts";
import type { Sender } from "../replication/registry.ts";
import type { RelaySettings } from "../relay_options.ts";
import type { Lsn } from "../wal/lsn.ts";
import type { WalBlockCacheStats } from "../stream/block_cache.ts";
import type { SegmentCall } from "../archive/shared_segments.ts";
import type { SegmentCacheStats } from "../archive/segment_cache.ts";
import { PgError, type PgErrorFields, type Severity, type SqlStateCode } from "../pgwire/error.ts";

/** The durable end of a relay's store, so a sender thread never reads past it. */
export interface DurableEnd {
  tli: number;
  end: Lsn;
}

/** A thread's BASE_BACKUPs: those being sent now, and how many were sent or failed so far. */
export interface BackupReport {
  serving: BackupProgress[];
  served: number;
  failed: number;
}

/** A thread's caches, as `/status` shows them. */
export interface CacheReport {
  blocks: WalBlockCacheStats | undefined;
  archive: ArchiveCacheStats | undefined;
}

/** The store's decoded-segment cache, as `WalStore.archiveCache` gives it. */
export type ArchiveCacheStats = SegmentCacheStats;

/** What a sender thread is told when it starts. */
export interface WorkerInit extends
  Pick<
    RelaySettings,
    | "workers"
    | "walDir"
    | "hostname"
    | "port"
    | "maxSenders"
    | "maxConnections"
    | "timeouts"
    | "rescanMs"
    | "watch"
    | "cacheSize"
    | "tls"
    | "auth"
  > {
  type: "init";
  /** The worker's number, from 1. */
  worker: number;
  counters: SharedArrayBuffer;
  /** Relay mode: the store follows the durable end the relay announces. */
  relay: boolean;
  /** Relay mode: the durable end and the newest WAL, shared (a `SharedTail`). */
  tail: SharedArrayBuffer | undefined;
}

/** From the relay to a sender thread. */
export type ToWorker =
  | WorkerInit
  /** The store is open: serve it, never past `durable` (relay mode) until told more. */
  | { type: "serve"; id: number; durable: DurableEnd | undefined }
  /** Begin accepting connections (before `serve`: answered "not yet accepting"). */
  | { type: "accept" }
  /** Rescan the directory (a segment completed, a history file appeared). */
  | { type: "refresh"; id?: number }
  /** SIGHUP: the authentication configuration now in force. */
  | { type: "auth"; auth: AuthConfig }
  /** Graceful shutdown: stop accepting, drain every stream to the end, then say `stopped`. */
  | { type: "shutdown" }
  /** Close every connection now. */
  | { type: "close" }
  /** The answer to a `call`. */
  | { type: "answer"; id: number; value?: unknown; error?: RemoteError };

/** A thrown error as it crosses threads; a PgError keeps its SQLSTATE and fields. */
export interface RemoteError {
  name: string;
  message: string;
  pg?: { code: string; severity: string; fields: Record<string, string> };
}

/** What a sender thread asks of the relay's slots and base backups, answered by `answer`. */
export type SlotCall =
  | { method: "get"; name: string }
  | {
    method: "create";
    name: string;
    init: {
      temporary: boolean;
      restartLsn: Lsn | undefined;
      restartTli: number | undefined;
      activePid?: number;
    };
  }
  | { method: "drop"; name: string; pid: number }
  | { method: "acquire"; name: string; pid: number }
  | { method: "release"; name: string; pid: number }
  | { method: "flush" }
  | { method: "releaseSession"; pid: number }
  /** The base backup to serve, held against pruning until `releaseBackup`. */
  | { method: "acquireBackup" }
  | { method: "releaseBackup"; hold: number }
  /** Decoded archived segments, read through the relay's store's cache. */
  | { method: "segments"; call: SegmentCall }
  /** The relay's store's validation of a complete segment, or `undefined` when it has none. */
  | { method: "checkSegment"; tli: number; segno: bigint };

/** A standby status update, for the relay's lag tracking. */
export interface ReplyMessage {
  type: "reply";
  sender: Sender;
  write: Lsn;
  flush: Lsn;
  apply: Lsn;
  time: number;
}

/** A slot moved forward on a sender thread. */
export interface AdvanceMessage {
  type: "advance";
  name: string;
  lsn: Lsn;
  tli: number;
}

/** From a sender thread to the relay. */
export type FromWorker =
  | { type: "listening"; port: number; hostname: string }
  | { type: "failed"; message: string }
  /**
   * A log line. `once`: the store's, which every thread may say alike, written once per key (the
   * line, and for a damaged file the version of the file).
   */
  | { type: "log"; level: LogLevel; message: string; fields: LogFields | undefined; once?: string }
  | { type: "accepted" }
  /**
   * What changed in the thread's registry since its last report (senders new or moved, pids
   * gone), and its BASE_BACKUPs and caches.
   */
  | {
    type: "senders";
    changed: Sender[];
    gone: number[];
    backups: BackupReport;
    caches: CacheReport;
  }
  | ReplyMessage
  | AdvanceMessage
  /** Replies and slot advances gathered over a few milliseconds, the latest of each, in order. */
  | { type: "batch"; messages: (ReplyMessage | AdvanceMessage)[] }
  /** The `serve` or `refresh` sent with `id` is done. */
  | { type: "done"; id: number }
  | { type: "call"; id: number; call: SlotCall }
  /** Every session of the thread has ended after `shutdown` or `close`. */
  | { type: "stopped" };

/** An error as it crosses to another thread. */
export function toRemoteError(e: unknown): RemoteError {
  const err = e instanceof Error ? e : new Error(String(e));
  if (err instanceof PgError) {
    return {
      name: err.name,
      message: err.message,
      pg: { code: err.code, severity: err.severity, fields: { ...err.fields } },
    };
  }
  return { name: err.name, message: err.message };
}

/** The error a {@linkcode RemoteError} stands for, a PgError again when it was one. */
export function fromRemoteError(r: RemoteError): Error {
  if (r.pg) {
    return new PgError(
      r.pg.code as SqlStateCode,
      r.message,
      r.pg.fields as PgErrorFields,
      r.pg.severity as Severity,
    );
  }
  const e = new Error(r.message);
  e.name = r.name;
  return e;
}
