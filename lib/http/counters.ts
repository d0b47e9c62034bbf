/**
 * Monotonic counters of a relay for `/metrics`: connections, errors by SQLSTATE, WAL bytes sent,
 * failed writes into the WAL directory by operation.
 *
 * @module
 */

import type { LogFields, Logger } from "../log.ts";

/** The store's log line for a segment file that validation found damaged. */
const DAMAGED = /^WAL file "[^"]+" is damaged: .*; valid WAL of segment /;

/**
 * Counters since the relay started. Feed them either by calling the methods where things happen,
 * or by wrapping the relay's logger with {@linkcode RelayCounters.tap}, which counts the
 * structured log lines every session already writes (a `sqlstate` field on each error, the
 * `replication connection authorized` and `disconnection` lines, an `operation` field on each
 * error line of a failed file operation in the WAL directory). Use one way, not both.
 *
 * @example
 * ```ts
 * import { RelayCounters } from "./counters.ts";
 * import { silentLogger } from "../log.ts";
 * import assert from "node:assert/strict";
 * const counters = new RelayCounters();
 * const log = counters.tap(silentLogger);
 * log.log("warn", "sorry, too many clients already", { sqlstate: "53300" });
 * assert.equal(counters.errors.get("53300"), 1);
 * ```
 */
export class RelayCounters {
  /** Connections accepted on the replication port. */
  connectionsAccepted = 0;
  /** Connections that passed authentication. */
  connectionsAuthorized = 0;
  /** Connections that ended after authentication. */
  disconnections = 0;
  /** Errors reported to clients (or logged with a SQLSTATE), by SQLSTATE. */
  readonly errors: Map<string, number> = new Map();
  /** Complete segment files that validation found damaged, once per file identity. */
  walFilesDamaged = 0;
  /** Failed file operations writing WAL into the directory, by operation (`fdatasync`, …). */
  readonly writeFailures: Map<string, number> = new Map();
  /** WAL bytes of senders that are gone. */
  #bytesOfGone = 0;
  /** The last total reported: a counter never goes back, even while a sender is being released. */
  #lastTotal = 0;

  /** Counts one accepted connection. */
  connectionAccepted(): void {
    this.connectionsAccepted++;
  }

  /** Counts one authorized connection. */
  connectionAuthorized(): void {
    this.connectionsAuthorized++;
  }

  /** Counts a segment file that validation found damaged. */
  walFileDamaged(): void {
    this.walFilesDamaged++;
  }

  /** Counts an error by its SQLSTATE. */
  error(sqlstate: string): void {
    this.errors.set(sqlstate, (this.errors.get(sqlstate) ?? 0) + 1);
  }

  /** Counts a failed file operation of the WAL writer (`write`, `extend`, `fdatasync`, …). */
  writeFailure(operation: string): void {
    this.writeFailures.set(operation, (this.writeFailures.get(operation) ?? 0) + 1);
  }

  /** Records the final WAL byte count of a sender that ended (after it left the registry). */
  senderEnded(_pid: number, bytesSent: number): void {
    this.disconnections++;
    this.#bytesOfGone += bytesSent;
  }

  /**
   * WAL bytes sent since start: those of senders that ended plus `live` (pid → bytes sent) of
   * the ones still connected.
   */
  walBytesSent(live: Iterable<{ pid: number; bytesSent: number }>): number {
    let n = this.#bytesOfGone;
    for (const s of live) {
      n += s.bytesSent;
    }
    this.#lastTotal = Math.max(this.#lastTotal, n);
    return this.#lastTotal;
  }

  /** A logger that counts what passes through it, then hands every line to `inner`. */
  tap(inner: Logger): Logger {
    return {
      log: (level, message, fields?: LogFields) => {
        const sqlstate = fields?.sqlstate;
        if (typeof sqlstate === "string" && sqlstate !== "") this.error(sqlstate);
        if (level === "error" && typeof fields?.operation === "string") {
          this.writeFailure(fields.operation);
        }
        if (message === "replication connection authorized") this.connectionAuthorized();
        // The store's line, once per validation that finds a segment damaged.
        if (DAMAGED.test(message)) this.walFileDamaged();
        if (message === "disconnection" && typeof fields?.pid === "number") {
          const bytes = typeof fields.bytes_sent === "number" ? fields.bytes_sent : 0;
          this.senderEnded(fields.pid, bytes);
        }
        inner.log(level, message, fields);
      },
    };
  }
}
