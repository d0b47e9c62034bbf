/**
 * The defaults of `walrelay serve` and `WalRelay.start`, in one place, so the server, the status
 * server and the CLI's help text cannot disagree.
 *
 * @module
 */

/**
 * What a relay uses when an option is not given. Times are in milliseconds unless the name says
 * otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULTS } from "./defaults.ts";
 * assert.equal(DEFAULTS.port, 5433);
 * assert.equal(DEFAULTS.maxSenders + DEFAULTS.reservedConnections, 20);
 * ```
 */
export const DEFAULTS = {
  /** Listen address of the replication listener. */
  hostname: "127.0.0.1",
  /** Listen port of the replication listener (PostgreSQL's 5432, plus one). */
  port: 5433,
  /** `max_wal_senders`. */
  maxSenders: 10,
  /**
   * Connections beyond `maxSenders` allowed at once, so sockets still authenticating cannot
   * crowd out senders: `maxConnections` defaults to `maxSenders` plus this.
   */
  reservedConnections: 10,
  /** `authentication_timeout`. */
  authenticationTimeoutMs: 60_000,
  /** `wal_sender_timeout`; 0 disables it. */
  senderTimeoutMs: 60_000,
  /** Keepalive interval of a caught-up sender. */
  keepaliveMs: 10_000,
  /** How often a catching-up client's progress is logged. */
  progressLogMs: 10_000,
  /** Rescan of the WAL directory beside file watching. */
  rescanMs: 1000,
  /** Bytes of decompressed archived segments kept in memory for every sender (`--cache-size`). */
  cacheSize: 256 * 1024 * 1024,
  /** Rescan in relay mode, where the writer announces every durable advance itself. */
  relayRescanMs: 10_000,
  /** How long a graceful shutdown waits for clients before closing them. */
  shutdownGraceMs: 30_000,
  /** Listen address of the HTTP status server. */
  httpHostname: "127.0.0.1",
  /** Port of the HTTP status server, where `walrelay status` looks first. */
  httpPort: 9433,
  /** Readiness: the most upstream lag, in seconds, that still counts as ready. */
  readyMaxLagSeconds: 60,
  /** Relay mode: a stored base backup older than this is taken anew from the upstream. */
  baseBackupMaxAgeMs: 24 * 3600_000,
  /** Stored base backups kept; older ones are removed, with the WAL only they needed. */
  baseBackupsKeep: 2,
} as const;
