/**
 * One replication connection, from the startup packet to the end: the walsender of walrelay. The
 * session owns the connection and runs its phases in turn: startup and authentication
 * (`startup.ts`), commands (`executor.ts`), and streaming (`streaming.ts`), which the executor
 * enters on START_REPLICATION.
 *
 * @module
 */

import type { WalBlockCache } from "../stream/block_cache.ts";
import type { BufferPool } from "../stream/chunk.ts";
import type { Authenticator } from "../auth/contract.ts";
import type { BackupService } from "../backup/service.ts";
import type { Logger } from "../log.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import { ConnectionClosed } from "../pgwire/message_reader.ts";
import { errorResponse } from "../pgwire/messages.ts";
import type { TlsBridge } from "../pgwire/tls_bridge.ts";
import { formatLsn } from "../wal/lsn.ts";
import type { WalStore } from "../wal/store.ts";
import { ClientConnection, type PeerAddress } from "./connection.ts";
import { runCommands } from "./executor.ts";
import type { ReplicationLag } from "./lag_tracker.ts";
import type { Sender, SenderRegistry } from "./registry.ts";
import type { SlotAccess } from "./slots.ts";
import { acquireSender, authenticate, checkStartup, readStartupPacket } from "./startup.ts";
import type { StreamControl } from "./streaming.ts";
import { pgErrorOf } from "./wal_errors.ts";

/** What a session needs from the server around it. */
export interface SessionContext {
  /** The WAL directory served. */
  store: WalStore;
  /** Sender slots. */
  registry: SenderRegistry;
  /** Replication slots. */
  slots: SlotAccess;
  /** Log lines. */
  log: Logger;
  /** Aborted when the server begins a graceful shutdown. */
  shutdown: AbortSignal;
  /** Timeouts, in milliseconds. */
  timeouts: SessionTimeouts;
  /** Server-side TLS, when a certificate is configured. */
  tls?: TlsBridge | undefined;
  /** Lag tracking for `pg_stat_replication`'s lag columns. */
  lag?: ReplicationLag | undefined;
  /** WAL blocks shared by every sender, so clients at the same place share one read. */
  blockCache?: WalBlockCache | undefined;
  /**
   * Run buffers shared by this thread's senders, so a sender holds only those in flight: with
   * most runs served from the block cache, a pool of its own would keep a buffer or two idle.
   */
  runBuffers: BufferPool;
  /** Base backups served by BASE_BACKUP. */
  backups?: BackupService | undefined;
  /**
   * Authenticates the client after the startup packet, or throws a FATAL PgError. The default
   * admits loopback clients without a password.
   */
  authenticate: Authenticator;
}

/** Session timeouts, in milliseconds. */
export interface SessionTimeouts {
  /** `authentication_timeout`: startup and authentication must finish within it. */
  authentication: number;
  /** `wal_sender_timeout`: a streaming client silent this long is dropped; 0 disables. */
  sender: number;
  /** Idle keepalive interval while streaming and caught up. */
  keepalive: number;
  /** How often a catching-up client's progress is logged. Default 10 s. */
  progressLog?: number;
}

/**
 * Runs one replication connection to its end. Never throws: every exit path closes the socket
 * and frees the sender slot.
 *
 * @example
 * ```ts ignore
 * import { Session } from "./session.ts";
 * // inside an accept loop: new Session(conn, context).run();
 * ```
 */
export class Session {
  #client: ClientConnection;
  #ctx: SessionContext;
  #sender: Sender | undefined;
  #control: StreamControl = {};

  /**
   * @param conn The accepted connection (plain or TLS).
   * @param ctx The server around it.
   * @param options `remote` overrides the peer address (TLS bridged through loopback).
   */
  constructor(
    conn: Deno.Conn,
    ctx: SessionContext,
    options: { remote?: PeerAddress; ssl?: boolean } = {},
  ) {
    this.#client = new ClientConnection(conn, options);
    this.#ctx = ctx;
  }

  /** The sender entry once the startup packet was accepted. */
  get sender(): Sender | undefined {
    return this.#sender;
  }

  /** Begins shutdown: an idle session closes at once; a streaming one drains first. */
  beginShutdown(): void {
    if (this.#control.stop) this.#control.stop();
    else this.close();
  }

  /** Closes the socket now. */
  close(): void {
    this.#client.close();
  }

  /** Runs the connection to its end. */
  async run(): Promise<void> {
    const ctx = this.#ctx;
    const client = this.#client;
    const authTimer = setTimeout(() => {
      ctx.log.log("warn", "authentication timeout", { host: client.remote.address });
      this.close();
    }, ctx.timeouts.authentication);
    let reason = "client closed connection";
    try {
      const startup = await readStartupPacket(
        client,
        ctx.tls,
        ctx.store.identity.serverMajor,
        (message) => ctx.log.log("warn", message, { host: client.remote.address }),
      );
      if (!startup) return;
      const request = checkStartup(startup.params, ctx.shutdown);
      const sender = this.#sender = acquireSender(ctx.registry, client, request);
      await authenticate(client, ctx, sender, startup.protocolMinor);
      clearTimeout(authTimer);
      await runCommands(client, ctx, sender, this.#control);
    } catch (e) {
      reason = await this.#reportFailure(e);
    } finally {
      clearTimeout(authTimer);
      reason = this.#control.endReason ?? reason;
      const s = this.#sender;
      if (s) {
        ctx.registry.release(s);
        try {
          await ctx.slots.releaseSession(s.pid);
        } catch (e) {
          ctx.log.log("warn", `could not save replication slots: ${(e as Error).message}`);
        }
        ctx.log.log("info", "disconnection", {
          pid: s.pid,
          host: client.remote.address,
          user: s.user,
          application_name: s.applicationName,
          sent_lsn: s.sentLsn ? formatLsn(s.sentLsn) : undefined,
          bytes_sent: s.bytesSent,
          reason,
        });
      }
      this.close();
    }
  }

  /** Tells the client why its connection ends, when it can still hear it; says why for the log. */
  async #reportFailure(failure: unknown): Promise<string> {
    const client = this.#client;
    const e = pgErrorOf(failure);
    if (e instanceof PgError) {
      if (!client.closed) {
        try {
          await client.send(errorResponse(e));
        } catch { /* client gone */ }
      }
      this.#ctx.log.log(e.severity === "FATAL" ? "warn" : "info", e.message, {
        sqlstate: e.code,
        pid: this.#sender?.pid,
        host: client.remote.address,
      });
      return `${e.severity} ${e.code}: ${e.message}`;
    }
    if (
      e instanceof ConnectionClosed || e instanceof Deno.errors.BadResource ||
      e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset ||
      e instanceof Deno.errors.Interrupted ||
      // A TLS client gone without close_notify (killed, say): gone all the same.
      e instanceof Deno.errors.UnexpectedEof
    ) {
      return client.closed ? "connection closed by server" : "client closed connection";
    }
    if (e instanceof TypeError && client.closed) return "connection closed by server";
    this.#ctx.log.log("error", `unexpected failure in session: ${(e as Error)?.stack ?? e}`, {
      pid: this.#sender?.pid,
    });
    if (!client.closed) {
      try {
        await client.send(errorResponse(
          PgError.fatal(SqlState.INTERNAL_ERROR, `internal error: ${(e as Error)?.message ?? e}`),
        ));
      } catch { /* client gone */ }
    }
    return "internal error";
  }
}
