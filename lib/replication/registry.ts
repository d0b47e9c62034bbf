/**
 * The sender registry: one entry per replication connection, up to `--max-senders`, holding what
 * PostgreSQL keeps in `WalSnd` and shows in `pg_stat_replication`.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";

/** `WalSndState`, as `pg_stat_replication.state` names it. */
export type SenderState = "startup" | "backup" | "catchup" | "streaming" | "stopping";

/** One connected client's shared state. */
export interface Sender {
  /** The pid sent in BackendKeyData, unique per connection. */
  readonly pid: number;
  /** The cancel key sent in BackendKeyData. */
  readonly cancelKey: number;
  /** Client address. */
  readonly clientAddr: string;
  /** Client port. */
  readonly clientPort: number;
  /** When the connection was accepted. */
  readonly backendStart: Date;
  /** Startup `user`. */
  user: string;
  /** Startup `application_name`. */
  applicationName: string;
  /** Where the sender is in its life. */
  state: SenderState;
  /** Timeline being streamed. */
  timeline: number;
  /** End of what has been handed to the socket. */
  sentLsn: Lsn;
  /** Reported by the client: written, flushed, applied. */
  writeLsn: Lsn;
  /** Reported flush position. */
  flushLsn: Lsn;
  /** Reported replay position. */
  replayLsn: Lsn;
  /** The client's clock at its last reply. */
  replyTime: Date | undefined;
  /** Hot standby feedback xmin (0 = none). */
  xmin: number;
  /** The epoch of `xmin`. */
  xminEpoch: number;
  /** Hot standby feedback catalog_xmin (0 = none). */
  catalogXmin: number;
  /** The epoch of `catalogXmin`. */
  catalogXminEpoch: number;
  /** Slot in use while streaming. */
  slot: string | undefined;
  /** WAL bytes handed to the socket. */
  bytesSent: number;
  /** Where the last WAL sent came from: the in-memory tail or the segment files. */
  source: "memory" | "disk";
  /** The sender thread serving the connection, from 1; absent on the relay's own thread. */
  worker?: number;
}

/** What a new connection is known by before the startup packet. */
export interface SenderOrigin {
  /** Client address. */
  clientAddr: string;
  /** Client port. */
  clientPort: number;
}

/**
 * Where the senders of several registries are counted together: one global limit and one pid
 * sequence for a relay whose sessions run on several threads.
 */
export interface SenderCounter {
  /** Takes a place unless `max` are in use, over every registry. */
  tryAcquire(max: number): boolean;
  /** Gives a place back. */
  release(): void;
  /** A pid unique among the registries. */
  nextPid(): number;
}

/**
 * Hands out sender slots up to a limit and lists the live ones. Every exit path of a session
 * must {@linkcode SenderRegistry.release} its sender.
 *
 * @example
 * ```ts
 * import { SenderRegistry } from "./registry.ts";
 * import assert from "node:assert/strict";
 * const reg = new SenderRegistry(1);
 * const a = reg.acquire({ clientAddr: "127.0.0.1", clientPort: 5000 });
 * assert.ok(a);
 * assert.equal(reg.acquire({ clientAddr: "127.0.0.1", clientPort: 5001 }), undefined);
 * reg.release(a);
 * assert.equal(reg.size, 0);
 * ```
 */
export class SenderRegistry {
  /** The limit, `max_wal_senders`. */
  maxSenders: number;
  #senders = new Map<number, Sender>();
  #nextPid: number;
  #counter: SenderCounter | undefined;

  /**
   * Creates an empty registry.
   *
   * @param maxSenders How many senders may exist at once.
   * @param counter Counts senders and hands out pids together with other threads' registries.
   */
  constructor(maxSenders: number, counter?: SenderCounter) {
    this.maxSenders = maxSenders;
    this.#counter = counter;
    // Start from a value derived from our own pid so two relays on one host rarely collide
    // in the temporary slot names clients derive from it.
    this.#nextPid = 10_000 + (Deno.pid % 1000) * 10_000;
  }

  /** Live senders. */
  get size(): number {
    return this.#senders.size;
  }

  /** Takes a slot, or `undefined` when all `maxSenders` are in use. */
  acquire(origin: SenderOrigin): Sender | undefined {
    let pid: number;
    if (this.#counter) {
      if (!this.#counter.tryAcquire(this.maxSenders)) return undefined;
      pid = this.#counter.nextPid();
    } else {
      if (this.#senders.size >= this.maxSenders) return undefined;
      pid = this.#nextPid++;
      if (this.#nextPid > 0x7fff_ffff) this.#nextPid = 10_000;
    }
    const sender: Sender = {
      pid,
      cancelKey: crypto.getRandomValues(new Int32Array(1))[0]!,
      clientAddr: origin.clientAddr,
      clientPort: origin.clientPort,
      backendStart: new Date(),
      user: "",
      applicationName: "",
      state: "startup",
      timeline: 0,
      sentLsn: 0n,
      writeLsn: 0n,
      flushLsn: 0n,
      replayLsn: 0n,
      replyTime: undefined,
      xmin: 0,
      xminEpoch: 0,
      catalogXmin: 0,
      catalogXminEpoch: 0,
      slot: undefined,
      bytesSent: 0,
      source: "disk",
    };
    this.#senders.set(pid, sender);
    return sender;
  }

  /** Frees a sender's slot. Releasing twice is harmless. */
  release(sender: Sender): void {
    if (this.#senders.delete(sender.pid)) this.#counter?.release();
  }

  /** A snapshot of the live senders, oldest first. */
  list(): Sender[] {
    return [...this.#senders.values()];
  }
}
