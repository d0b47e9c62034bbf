/**
 * The base backups in `/status` (stored ones, the one being taken from the upstream, and those
 * being sent, with bytes and rate as `pg_stat_progress_basebackup` shows them) and `/metrics`.
 *
 * @module
 */

import { formatLsn } from "../wal/lsn.ts";
import type { BackupService } from "./service.ts";

/** `/status` `base_backups`. */
export interface BaseBackupsStatus {
  /** Stored backups, oldest first. */
  stored: {
    id: string;
    label: string;
    start_lsn: string;
    end_lsn: string;
    timeline: number;
    server_version: number;
    source: string;
    stored_at: string;
    bytes: number;
  }[];
  /** The backup being taken from the upstream, if any. */
  taking: { id: string; started_at: string; bytes_received: number } | null;
  /** BASE_BACKUPs being sent, as `pg_stat_progress_basebackup`. */
  serving: {
    pid: number;
    backup: string;
    phase: string;
    started_at: string;
    bytes_done: number;
    bytes_total: number | null;
    bytes_per_second: number;
  }[];
  /** Counters since start. */
  totals: { served: number; failed: number; taken: number; take_failures: number };
}

/**
 * The `/status` part of the relay's base backups.
 *
 * @example
 * ```ts ignore
 * const json = baseBackupsStatus(relay.backups!);
 * ```
 */
export function baseBackupsStatus(service: BackupService): BaseBackupsStatus {
  const now = Date.now();
  const taking = service.taking;
  return {
    stored: service.store.list().map((b) => ({
      id: b.id,
      label: b.label,
      start_lsn: formatLsn(b.startLsn),
      end_lsn: formatLsn(b.endLsn),
      timeline: b.timeline,
      server_version: b.major,
      source: b.source,
      stored_at: b.storedAt.toISOString(),
      bytes: b.base.bytes + b.tablespaces.reduce((s, t) => s + t.bytes, 0) + b.manifest.bytes,
    })),
    taking: taking
      ? {
        id: taking.id,
        started_at: taking.started.toISOString(),
        bytes_received: taking.bytesReceived,
      }
      : null,
    serving: [...service.serving].map((p) => {
      const secs = Math.max(0.001, (now - p.started.getTime()) / 1000);
      return {
        pid: p.pid,
        backup: p.backupId,
        phase: p.phase,
        started_at: p.started.toISOString(),
        bytes_done: p.bytesDone,
        bytes_total: p.bytesTotal ?? null,
        bytes_per_second: Math.round(p.bytesDone / secs),
      };
    }),
    totals: {
      served: service.totals.served,
      failed: service.totals.failed,
      taken: service.totals.taken,
      take_failures: service.totals.takeFailures,
    },
  };
}

/**
 * The `/metrics` families of the relay's base backups, in the text exposition format.
 *
 * @example
 * ```ts
 * import { baseBackupMetrics } from "./status.ts";
 * import assert from "node:assert/strict";
 * const text = baseBackupMetrics({
 *   stored: [], taking: null, serving: [],
 *   totals: { served: 3, failed: 0, taken: 1, take_failures: 0 },
 * });
 * assert.match(text, /^walrelay_base_backups_served_total 3$/m);
 * ```
 */
export function baseBackupMetrics(s: BaseBackupsStatus): string {
  const family = (name: string, type: string, help: string, value: number): string =>
    `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`;
  return [
    family("walrelay_base_backups_stored", "gauge", "Base backups stored.", s.stored.length),
    family(
      "walrelay_base_backups_stored_bytes",
      "gauge",
      "Bytes of stored base backups.",
      s.stored.reduce((n, b) => n + b.bytes, 0),
    ),
    family(
      "walrelay_base_backups_in_progress",
      "gauge",
      "Base backups being taken from the upstream.",
      s.taking ? 1 : 0,
    ),
    family(
      "walrelay_base_backups_sending",
      "gauge",
      "BASE_BACKUPs being sent to clients.",
      s.serving.length,
    ),
    family(
      "walrelay_base_backups_served_total",
      "counter",
      "BASE_BACKUPs sent to clients in full.",
      s.totals.served,
    ),
    family(
      "walrelay_base_backups_failed_total",
      "counter",
      "BASE_BACKUPs that failed while being sent.",
      s.totals.failed,
    ),
    family(
      "walrelay_base_backups_taken_total",
      "counter",
      "Base backups taken from the upstream and stored.",
      s.totals.taken,
    ),
    family(
      "walrelay_base_backup_take_failures_total",
      "counter",
      "Base backups from the upstream that failed.",
      s.totals.take_failures,
    ),
  ].join("");
}
