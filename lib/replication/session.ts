/**
 * One replication connection, from the startup packet to the end: the walsender of walrelay.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { BodyReader } from "../pgwire/body_reader.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import { ConnectionClosed, type FrontendMessage, MessageReader } from "../pgwire/message_reader.ts";
import {
  authenticationOk,
  backendKeyData,
  commandComplete,
  copyBothResponse,
  copyDone,
  dataRow,
  errorResponse,
  type FieldDescription,
  negotiateProtocolVersion,
  parameterStatus,
  readyForQuery,
  rowDescription,
  TypeOid,
} from "../pgwire/messages.ts";
import { pgTimestampToDate } from "../pgwire/timestamp.ts";
import { openWalSource } from "../stream/source.ts";
import { BufferPool, FRAME_HEADROOM, MAX_SEND_SIZE } from "../stream/chunk.ts";
import { WalSlicer } from "../stream/slicer.ts";
import { keepaliveMessage, WalFramer, XLOG_DATA_OVERHEAD, xlogDataEnd } from "../stream/framer.ts";
import { timelineOf } from "../wal/history.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import type { WalStore } from "../wal/store.ts";
import { parseCommand, type StartPhysicalReplicationCommand, validateSlotName } from "./command.ts";
import type { Sender, SenderRegistry } from "./registry.ts";
import type { ReplicationSlot, SlotManager } from "./slots.ts";
import { showSetting } from "./settings.ts";
import type { TlsBridge } from "../pgwire/tls_bridge.ts";
import type { ReplicationLag } from "./lag_tracker.ts";
import { pgErrorOf } from "./wal_errors.ts";

const PROTOCOL_3_0 = 196608;
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

/** What a session needs from the server around it. */
export interface SessionContext {
  /** The WAL directory served. */
  store: WalStore;
  /** Sender slots. */
  registry: SenderRegistry;
  /** Replication slots. */
  slots: SlotManager;
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

/** What the authenticator knows of the client and how it talks to it. */
export interface AuthRequest {
  /** Startup `user`. */
  user: string;
  /** Client IP address. */
  address: string;
  /** Whether the connection is encrypted. */
  ssl: boolean;
  /** `tls-server-end-point` data when the connection is TLS and the certificate allows binding. */
  channelBinding?: Uint8Array | undefined;
  /** Sends bytes to the client. */
  send(bytes: Uint8Array): Promise<void>;
  /** Reads the client's next password-family (`p`) message body. */
  receive(): Promise<Uint8Array>;
}

/** Decides whether a client may connect; throws a FATAL PgError to refuse. */
export type Authenticator = (req: AuthRequest) => Promise<void>;

/**
 * The default authenticator: trust loopback clients, refuse everyone else as a `pg_hba.conf`
 * without a matching line would.
 *
 * @example
 * ```ts
 * import { loopbackTrust } from "./session.ts";
 * const send = () => Promise.resolve();
 * const receive = () => Promise.resolve(new Uint8Array());
 * await loopbackTrust({ user: "repl", address: "127.0.0.1", ssl: false, send, receive });
 * ```
 */
export function loopbackTrust(req: AuthRequest): Promise<void> {
  if (isLoopback(req.address)) return Promise.resolve();
  return Promise.reject(PgError.fatal(
    SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
    `no pg_hba.conf entry for replication connection from host "${req.address}", user "${req.user}", ${
      req.ssl ? "SSL encryption" : "no encryption"
    }`,
  ));
}

function isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "::1" || address.startsWith("::ffff:127.");
}

/** Largest body accepted per message type; longer ones are refused before they are buffered. */
function maxLength(type: string): number {
  switch (type) {
    case "Q":
      return 1 << 20;
    case "d":
      return 1 << 16;
    default:
      return 10000;
  }
}

type CopyEnd = { kind: "copydone" } | { kind: "eof" } | { kind: "message"; msg: FrontendMessage };

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
  #conn: Deno.Conn;
  #ctx: SessionContext;
  #reader: MessageReader;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #sender: Sender | undefined;
  #streaming = false;
  #closed = false;
  #remote: { address: string; port: number };
  #stopStreaming: (() => void) | undefined;
  #ssl: boolean;
  #closeTls: (() => void) | undefined;
  /** Why the server ended the connection, when it was the server's doing. */
  #endReason: string | undefined;

  /**
   * @param conn The accepted connection (plain or TLS).
   * @param ctx The server around it.
   * @param options `remote` overrides the peer address (TLS bridged through loopback).
   */
  constructor(
    conn: Deno.Conn,
    ctx: SessionContext,
    options: { remote?: { address: string; port: number }; ssl?: boolean } = {},
  ) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.#reader = new MessageReader(conn);
    this.#writer = conn.writable.getWriter();
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.#remote = options.remote ?? { address: addr.hostname ?? "", port: addr.port ?? 0 };
    this.#ssl = options.ssl ?? false;
  }

  /** The sender entry once the startup packet was accepted. */
  get sender(): Sender | undefined {
    return this.#sender;
  }

  /** Begins shutdown: an idle session closes at once; a streaming one drains first. */
  beginShutdown(): void {
    if (!this.#streaming) this.close();
    else this.#stopStreaming?.();
  }

  /** Closes the socket now. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeTls?.();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  async #send(...messages: Uint8Array[]): Promise<void> {
    if (messages.length === 1) return await this.#writer.write(messages[0]!);
    let n = 0;
    for (const m of messages) n += m.length;
    const out = new Uint8Array(n);
    n = 0;
    for (const m of messages) {
      out.set(m, n);
      n += m.length;
    }
    await this.#writer.write(out);
  }

  /** Runs the connection to its end. */
  async run(): Promise<void> {
    const { log } = this.#ctx;
    const authTimer = setTimeout(() => {
      log.log("warn", "authentication timeout", { host: this.#remote.address });
      this.close();
    }, this.#ctx.timeouts.authentication);
    let reason = "client closed connection";
    try {
      const params = await this.#startup();
      if (!params) return;
      await this.#authenticate(params);
      clearTimeout(authTimer);
      await this.#commandLoop();
    } catch (e) {
      reason = await this.#reportFailure(e);
    } finally {
      clearTimeout(authTimer);
      reason = this.#endReason ?? reason;
      const s = this.#sender;
      if (s) {
        this.#ctx.registry.release(s);
        try {
          await this.#ctx.slots.releaseSession(s.pid);
        } catch (e) {
          log.log("warn", `could not save replication slots: ${(e as Error).message}`);
        }
        log.log("info", "disconnection", {
          pid: s.pid,
          host: this.#remote.address,
          user: s.user,
          application_name: s.applicationName,
          sent_lsn: s.sentLsn ? formatLsn(s.sentLsn) : undefined,
          bytes_sent: s.bytesSent,
          reason,
        });
      }
      try {
        this.#writer.releaseLock();
      } catch { /* a pending write holds it; close() below ends it */ }
      this.close();
    }
  }

  async #reportFailure(failure: unknown): Promise<string> {
    const e = pgErrorOf(failure);
    if (e instanceof PgError) {
      if (!this.#closed) {
        try {
          await this.#send(errorResponse(e));
        } catch { /* client gone */ }
      }
      this.#ctx.log.log(e.severity === "FATAL" ? "warn" : "info", e.message, {
        sqlstate: e.code,
        pid: this.#sender?.pid,
        host: this.#remote.address,
      });
      return `${e.severity} ${e.code}: ${e.message}`;
    }
    if (
      e instanceof ConnectionClosed || e instanceof Deno.errors.BadResource ||
      e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset ||
      e instanceof Deno.errors.Interrupted
    ) {
      return this.#closed ? "connection closed by server" : "client closed connection";
    }
    if (e instanceof TypeError && this.#closed) return "connection closed by server";
    this.#ctx.log.log("error", `unexpected failure in session: ${(e as Error)?.stack ?? e}`, {
      pid: this.#sender?.pid,
    });
    if (!this.#closed) {
      try {
        await this.#send(errorResponse(
          PgError.fatal(SqlState.INTERNAL_ERROR, `internal error: ${(e as Error)?.message ?? e}`),
        ));
      } catch { /* client gone */ }
    }
    return "internal error";
  }

  /** Reads startup-phase packets until a StartupMessage; `null` when the client just leaves. */
  async #startup(): Promise<Map<string, string> | null> {
    // PostgreSQL 17's direct TLS: the first byte is a TLS handshake record, not a length.
    if (this.#ctx.tls && await this.#reader.peekByte() === 0x16) {
      const alpn = await this.#startTls(this.#reader.takeBuffered());
      if (alpn !== "postgresql") {
        throw PgError.fatal(
          SqlState.PROTOCOL_VIOLATION,
          "received direct SSL connection request without ALPN protocol negotiation extension",
        );
      }
    }
    while (true) {
      const pkt = await this.#reader.readStartup();
      if (!pkt) return null;
      if (pkt.code === SSL_REQUEST || pkt.code === GSSENC_REQUEST) {
        if (this.#reader.buffered > 0) {
          throw PgError.fatal(
            SqlState.PROTOCOL_VIOLATION,
            "received unencrypted data after SSL request",
          );
        }
        if (pkt.code === SSL_REQUEST && this.#ctx.tls && !this.#ssl) {
          await this.#send(new TextEncoder().encode("S"));
          await this.#startTls(new Uint8Array());
        } else {
          await this.#send(new TextEncoder().encode("N"));
        }
        continue;
      }
      if (pkt.code === CANCEL_REQUEST) return null; // nothing to cancel; nothing is sent back
      const major = pkt.code >>> 16;
      const minor = pkt.code & 0xffff;
      if (major !== 3) {
        throw PgError.fatal(
          SqlState.FEATURE_NOT_SUPPORTED,
          `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`,
        );
      }
      const params = new Map<string, string>();
      const unrecognized: string[] = [];
      const body = new BodyReader(pkt.body);
      while (true) {
        if (body.remaining === 0) {
          throw PgError.fatal(
            SqlState.PROTOCOL_VIOLATION,
            "invalid startup packet layout: expected terminator as last byte",
          );
        }
        const name = body.cstring();
        if (name === "") break;
        const value = body.cstring();
        if (name.startsWith("_pq_.")) unrecognized.push(name);
        else params.set(name, value);
      }
      if (body.remaining !== 0) {
        throw PgError.fatal(
          SqlState.PROTOCOL_VIOLATION,
          "invalid startup packet layout: expected terminator as last byte",
        );
      }
      if (minor !== 0 || unrecognized.length > 0) {
        await this.#send(negotiateProtocolVersion(PROTOCOL_3_0, unrecognized));
      }
      return params;
    }
  }

  /** Moves the session onto a TLS connection bridged over the raw socket. */
  async #startTls(prefix: Uint8Array): Promise<string | null> {
    this.#writer.releaseLock();
    const { conn, alpnProtocol, close } = await this.#ctx.tls!.upgrade(this.#conn, prefix);
    this.#closeTls = close;
    this.#conn = conn;
    this.#reader = new MessageReader(conn);
    this.#writer = conn.writable.getWriter();
    this.#ssl = true;
    return alpnProtocol;
  }

  async #authenticate(params: Map<string, string>): Promise<void> {
    const user = params.get("user");
    if (!user) {
      throw PgError.fatal(
        SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
        "no PostgreSQL user name specified in startup packet",
      );
    }
    const replication = params.get("replication");
    if (replication === "database") {
      throw PgError.fatal(
        SqlState.FEATURE_NOT_SUPPORTED,
        "walrelay does not support logical replication connections",
        { hint: 'Connect with "replication=true" for physical replication.' },
      );
    }
    if (replication === undefined || !parseBool(replication)) {
      if (replication !== undefined && parseBool(replication) === undefined) {
        throw PgError.fatal(
          SqlState.INVALID_PARAMETER_VALUE,
          `invalid value for parameter "replication": "${replication}"`,
          { hint: 'Valid values are: "false", 0, "true", 1, "database".' },
        );
      }
      throw PgError.fatal(
        SqlState.FEATURE_NOT_SUPPORTED,
        "walrelay accepts only physical replication connections",
        { hint: 'Connect with "replication=true", as pg_receivewal and standbys do.' },
      );
    }
    if (this.#ctx.shutdown.aborted) {
      throw PgError.fatal(SqlState.CANNOT_CONNECT_NOW, "the database system is shutting down");
    }
    // As InitProcess does: the walsender slot is taken before authentication.
    const sender = this.#ctx.registry.acquire({
      clientAddr: this.#remote.address,
      clientPort: this.#remote.port,
    });
    if (!sender) {
      throw PgError.fatal(
        SqlState.TOO_MANY_CONNECTIONS,
        `number of requested standby connections exceeds max_wal_senders (currently ${this.#ctx.registry.maxSenders})`,
      );
    }
    this.#sender = sender;
    sender.user = user;
    sender.applicationName = params.get("application_name") ??
      params.get("fallback_application_name") ?? "";
    await this.#ctx.authenticate({
      user,
      address: this.#remote.address,
      ssl: this.#ssl,
      channelBinding: this.#ssl ? this.#ctx.tls?.channelBinding : undefined,
      send: (b) => this.#send(b),
      receive: async () => {
        const msg = await this.#reader.readMessage(maxLength);
        if (!msg) throw new ConnectionClosed();
        if (msg.type !== "p") {
          throw PgError.fatal(
            SqlState.PROTOCOL_VIOLATION,
            `expected password response, got message type ${msg.type.charCodeAt(0)}`,
          );
        }
        return msg.body;
      },
    });
    this.#ctx.log.log("info", "replication connection authorized", {
      pid: sender.pid,
      host: this.#remote.address,
      user,
      application_name: sender.applicationName,
      // As PostgreSQL's log_connections says "SSL enabled": which links are encrypted.
      ssl: this.#ssl ? "on" : "off",
    });
    const major = this.#ctx.store.identity.serverMajor;
    const status: [string, string][] = [
      ["application_name", sender.applicationName],
      ["client_encoding", "SQL_ASCII"],
      ["DateStyle", "ISO, MDY"],
      ["default_transaction_read_only", "off"],
      ["in_hot_standby", "off"],
      ["integer_datetimes", "on"],
      ["IntervalStyle", "postgres"],
      ["is_superuser", "off"],
      ...(major >= 16 ? [["scram_iterations", "4096"] as [string, string]] : []),
      ["server_encoding", "SQL_ASCII"],
      ["server_version", showSetting("server_version", this.#ctx.store)!.value],
      ["session_authorization", user],
      ["standard_conforming_strings", "on"],
      ["TimeZone", "Etc/UTC"],
    ];
    await this.#send(
      authenticationOk(),
      ...status.map(([k, v]) => parameterStatus(k, v)),
      backendKeyData(sender.pid, sender.cancelKey),
      readyForQuery(),
    );
  }

  async #commandLoop(): Promise<void> {
    let skipUntilSync = false;
    let pending: FrontendMessage | undefined;
    while (true) {
      const msg = pending ?? await this.#reader.readMessage(maxLength);
      pending = undefined;
      if (!msg) return;
      if (skipUntilSync && msg.type !== "S") continue;
      switch (msg.type) {
        case "Q": {
          const text = new BodyReader(msg.body).cstring();
          try {
            pending = await this.#execute(text);
          } catch (err) {
            const e = pgErrorOf(err);
            if (!(e instanceof PgError) || e.severity === "FATAL") throw e;
            this.#ctx.log.log("info", e.message, { sqlstate: e.code, pid: this.#sender?.pid });
            await this.#send(errorResponse(e), readyForQuery());
          }
          if (pending?.type === "eof") return;
          break;
        }
        case "X":
          return;
        case "S":
          skipUntilSync = false;
          await this.#send(readyForQuery());
          break;
        case "P":
        case "B":
        case "E":
        case "D":
        case "C":
        case "H":
          // As postgres.c: refused, and the rest of the extended-query batch skipped.
          await this.#send(errorResponse(
            new PgError(
              SqlState.PROTOCOL_VIOLATION,
              "extended query protocol not supported in a replication connection",
            ),
          ));
          skipUntilSync = true;
          break;
        case "F":
          await this.#send(
            errorResponse(
              new PgError(
                SqlState.PROTOCOL_VIOLATION,
                "fastpath function calls not supported in a replication connection",
              ),
            ),
            readyForQuery(),
          );
          break;
        case "d":
        case "c":
        case "f":
          break; // outside COPY these are ignored, per protocol
        default:
          throw PgError.fatal(
            SqlState.PROTOCOL_VIOLATION,
            `invalid frontend message type ${msg.type.charCodeAt(0)}`,
          );
      }
    }
  }

  /**
   * Executes one query. Returns a message read while streaming that belongs to the command loop
   * (a query sent after an error ended COPY), or a pseudo-message of type `eof`.
   */
  async #execute(text: string): Promise<FrontendMessage | undefined> {
    if (this.#ctx.shutdown.aborted) {
      throw new PgError(
        SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE,
        "cannot execute new commands while WAL sender is in stopping mode",
      );
    }
    const cmd = parseCommand(text);
    const { store, slots } = this.#ctx;
    switch (cmd.kind) {
      case "IDENTIFY_SYSTEM":
        await this.#send(
          rowDescription([
            { name: "systemid", typeOid: TypeOid.TEXT, typeLen: -1 },
            { name: "timeline", typeOid: TypeOid.INT4, typeLen: 4 },
            { name: "xlogpos", typeOid: TypeOid.TEXT, typeLen: -1 },
            { name: "dbname", typeOid: TypeOid.TEXT, typeLen: -1 },
          ]),
          dataRow([
            store.identity.systemId.toString(),
            String(store.timeline),
            formatLsn(store.endLsn),
            null,
          ]),
          commandComplete("IDENTIFY_SYSTEM"),
          readyForQuery(),
        );
        return;
      case "SHOW": {
        const setting = showSetting(cmd.name, store, this.#sender);
        if (!setting) {
          throw new PgError(
            SqlState.UNDEFINED_OBJECT,
            `unrecognized configuration parameter "${cmd.name}"`,
          );
        }
        await this.#send(
          rowDescription([{ name: setting.name, typeOid: TypeOid.TEXT, typeLen: -1 }]),
          dataRow([setting.value]),
          commandComplete("SHOW"),
          readyForQuery(),
        );
        return;
      }
      case "TIMELINE_HISTORY": {
        // As the walsender: the row description goes out before the file is opened.
        const fields: FieldDescription[] = [
          { name: "filename", typeOid: TypeOid.TEXT, typeLen: -1, typeMod: 0 },
          { name: "content", typeOid: TypeOid.TEXT, typeLen: -1, typeMod: 0 },
        ];
        await this.#send(rowDescription(fields));
        const content = await store.historyContent(cmd.timeline);
        const name = `${cmd.timeline.toString(16).toUpperCase().padStart(8, "0")}.history`;
        await this.#send(
          dataRow([name, content]),
          commandComplete("TIMELINE_HISTORY"),
          readyForQuery(),
        );
        return;
      }
      case "READ_REPLICATION_SLOT": {
        const slot = slots.get(cmd.slot);
        let row: (string | null)[] = [null, null, null];
        if (slot) {
          const lsn = slot.restartLsn;
          row = [
            "physical",
            lsn === undefined ? null : formatLsn(lsn),
            lsn === undefined ? null : String(slot.restartTli ?? timelineOf(store.history, lsn)),
          ];
        }
        await this.#send(
          rowDescription([
            { name: "slot_type", typeOid: TypeOid.TEXT, typeLen: -1 },
            { name: "restart_lsn", typeOid: TypeOid.TEXT, typeLen: -1 },
            { name: "restart_tli", typeOid: TypeOid.INT8, typeLen: 8 },
          ]),
          dataRow(row),
          commandComplete("READ_REPLICATION_SLOT"),
          readyForQuery(),
        );
        return;
      }
      case "CREATE_REPLICATION_SLOT": {
        if (!cmd.physical) {
          throw new PgError(
            SqlState.FEATURE_NOT_SUPPORTED,
            "logical decoding requires a database connection",
            { hint: "walrelay serves physical replication only." },
          );
        }
        validateSlotName(cmd.slot);
        const slot = await slots.create(cmd.slot, {
          temporary: cmd.temporary,
          restartLsn: cmd.reserveWal ? store.endLsn : undefined,
          restartTli: cmd.reserveWal ? store.timeline : undefined,
        });
        if (slot.temporary) slot.activePid = this.#sender!.pid;
        await this.#send(
          rowDescription([
            { name: "slot_name", typeOid: TypeOid.TEXT, typeLen: -1 },
            { name: "consistent_point", typeOid: TypeOid.TEXT, typeLen: -1 },
            { name: "snapshot_name", typeOid: TypeOid.TEXT, typeLen: -1 },
            { name: "output_plugin", typeOid: TypeOid.TEXT, typeLen: -1 },
          ]),
          dataRow([cmd.slot, "0/0", null, null]),
          commandComplete("CREATE_REPLICATION_SLOT"),
          readyForQuery(),
        );
        return;
      }
      case "DROP_REPLICATION_SLOT": {
        const deadline = Date.now() + this.#ctx.timeouts.sender;
        while (true) {
          const slot = slots.get(cmd.slot);
          const busy = slot && slot.activePid !== 0 && slot.activePid !== this.#sender!.pid;
          if (!cmd.wait || !busy || Date.now() > deadline) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        const slot = slots.get(cmd.slot);
        if (slot?.activePid === this.#sender!.pid) slot.activePid = 0;
        await slots.drop(cmd.slot);
        await this.#send(commandComplete("DROP_REPLICATION_SLOT"), readyForQuery());
        return;
      }
      case "START_REPLICATION":
        if (!cmd.physical) {
          throw new PgError(
            SqlState.FEATURE_NOT_SUPPORTED,
            "logical decoding requires a database connection",
            { hint: "walrelay serves physical replication only." },
          );
        }
        return await this.#startReplication(cmd);
      case "BASE_BACKUP":
        throw new PgError(
          SqlState.FEATURE_NOT_SUPPORTED,
          "BASE_BACKUP is not supported by walrelay",
          { hint: "Take base backups from the primary; walrelay serves WAL only." },
        );
      case "SQL":
        throw new PgError(
          SqlState.FEATURE_NOT_SUPPORTED,
          "cannot execute SQL commands in WAL sender for physical replication",
          { routine: "exec_replication_command" },
        );
    }
  }

  /** `StartReplication` of walsender.c: checks, COPY, streaming, and how COPY ends. */
  async #startReplication(
    cmd: StartPhysicalReplicationCommand,
  ): Promise<FrontendMessage | undefined> {
    const { store, slots } = this.#ctx;
    const sender = this.#sender!;
    let slot: ReplicationSlot | undefined;
    if (cmd.slot !== undefined) slot = slots.acquire(cmd.slot, sender.pid);
    try {
      const tli = cmd.timeline ?? store.timeline;
      let switchPoint: Lsn | undefined;
      if (tli !== store.timeline) {
        switchPoint = store.endOf(tli);
        if (cmd.lsn > switchPoint) {
          throw new PgError(
            SqlState.INTERNAL_ERROR,
            `requested starting point ${
              formatLsn(cmd.lsn)
            } on timeline ${tli} is not in this server's history`,
            {
              detail: `This server's history forked from timeline ${tli} at ${
                formatLsn(switchPoint)
              }.`,
            },
          );
        }
        if (cmd.lsn === switchPoint) {
          // Nothing to stream on that timeline: tell the client where the next one starts,
          // without entering COPY.
          await this.#send(...this.#endOfTimeline(tli, switchPoint), readyForQuery());
          return;
        }
      }
      await this.#send(copyBothResponse());
      if (switchPoint === undefined && cmd.lsn > store.endLsn) {
        throw new PgError(
          SqlState.INTERNAL_ERROR,
          `requested starting point ${
            formatLsn(cmd.lsn)
          } is ahead of the WAL flush position of this server ${formatLsn(store.endLsn)}`,
        );
      }
      return await this.#stream(tli, cmd.lsn, slot);
    } finally {
      if (slot && !slot.temporary) slot.activePid = 0;
      sender.slot = undefined;
      sender.state = "startup";
    }
  }

  /** The next_tli result set and both CommandCompletes that end a historic timeline. */
  #endOfTimeline(tli: number, switchPoint: Lsn): Uint8Array[] {
    const idx = this.#ctx.store.history.findIndex((h) => h.tli === tli);
    const next = this.#ctx.store.history[idx + 1]?.tli ?? tli + 1;
    return [
      rowDescription([
        { name: "next_tli", typeOid: TypeOid.INT8, typeLen: 8 },
        { name: "next_tli_startpos", typeOid: TypeOid.TEXT, typeLen: -1 },
      ]),
      dataRow([String(next), formatLsn(switchPoint)]),
      commandComplete("START_STREAMING"),
      commandComplete("START_REPLICATION"),
    ];
  }

  async #stream(
    tli: number,
    start: Lsn,
    slot: ReplicationSlot | undefined,
  ): Promise<FrontendMessage | undefined> {
    const { store, log, timeouts, slots } = this.#ctx;
    const sender = this.#sender!;
    sender.state = "catchup";
    sender.timeline = tli;
    sender.sentLsn = start;
    sender.slot = slot?.name;
    this.#streaming = true;
    log.log("info", "starting replication", {
      pid: sender.pid,
      application_name: sender.applicationName,
      start_lsn: formatLsn(start),
      timeline: tli,
      slot: slot?.name,
    });

    const stopPipeline = new AbortController();
    let stopAt: Lsn | undefined;
    this.#stopStreaming = () => {
      stopAt = store.endLsn;
      sender.state = "stopping";
      // Wake a caught-up source now rather than at its next periodic wake.
      store.latch.set();
    };
    if (this.#ctx.shutdown.aborted) this.#stopStreaming();

    let lastReceive = Date.now();
    let lastSend = Date.now();
    let pingSent = false;

    const sink = new WritableStream<Uint8Array>({
      write: async (msg) => {
        const end = xlogDataEnd(msg);
        await this.#writer.write(msg);
        // The kernel has the bytes: a buffer framed in place can be read into again. Only a
        // whole chunk is framed in place, so no other message refers to it; the pool ignores
        // buffers that are not its own.
        if (msg.byteOffset === 0) pool.release(msg.buffer);
        lastSend = Date.now();
        sender.sentLsn = end;
        sender.bytesSent += msg.length - XLOG_DATA_OVERHEAD;
        if (sender.state === "catchup" && sender.sentLsn >= store.endOf(tli)) {
          sender.state = "streaming";
        }
      },
    });
    const pool = new BufferPool(FRAME_HEADROOM + MAX_SEND_SIZE, 4);
    const pipeline = openWalSource(store, {
      tli,
      start,
      pool,
      onRead: (source) => sender.source = source,
      signal: stopPipeline.signal,
      stopAt: () => stopAt,
    }).pipeThrough(new WalSlicer(store.identity.blockSize)).pipeThrough(new WalFramer())
      .pipeTo(sink, { preventClose: true })
      .then(
        () => ({ kind: "done" as const }),
        (error) => ({ kind: "error" as const, error: pgErrorOf(error) }),
      );

    const keepaliveWalEnd = () => sender.sentLsn;
    // Reads the client's messages while WAL flows: status updates, feedback, CopyDone.
    const copyReader: Promise<CopyEnd> = (async (): Promise<CopyEnd> => {
      while (true) {
        const msg = await this.#reader.readMessage(maxLength);
        lastReceive = Date.now();
        pingSent = false;
        if (!msg) return { kind: "eof" };
        if (msg.type === "c") return { kind: "copydone" };
        if (msg.type === "d") {
          await this.#standbyMessage(msg.body, slot, keepaliveWalEnd);
          continue;
        }
        if (msg.type === "X") return { kind: "eof" };
        return { kind: "message", msg };
      }
    })().catch((e): CopyEnd => {
      if (e instanceof PgError) throw e;
      return { kind: "eof" };
    });

    // The sender's clock: idle keepalives, the half-timeout ping and wal_sender_timeout.
    // Progress of a catching-up client, every few seconds, so a long catch-up is visible.
    const progressMs = timeouts.progressLog ?? 10_000;
    let progressAt = Date.now();
    let progressLsn = sender.sentLsn;
    const ticker = setInterval(() => {
      const now = Date.now();
      if (sender.state === "catchup" && now - progressAt >= progressMs) {
        const behind = store.endOf(tli) - sender.sentLsn;
        const rate = Number(sender.sentLsn - progressLsn) / ((now - progressAt) / 1000);
        log.log("info", "client catching up", {
          pid: sender.pid,
          application_name: sender.applicationName,
          sent_lsn: formatLsn(sender.sentLsn),
          end_lsn: formatLsn(store.endOf(tli)),
          bytes_behind: behind,
          rate_bytes_per_second: Math.round(rate),
          eta_seconds: rate > 0 ? Math.round(Number(behind) / rate) : undefined,
        });
        progressAt = now;
        progressLsn = sender.sentLsn;
      }
      if (timeouts.sender > 0 && now - lastReceive > timeouts.sender) {
        log.log("warn", "terminating walsender process due to replication timeout", {
          pid: sender.pid,
        });
        this.#endReason = "replication timeout";
        this.close();
        return;
      }
      const wantPing = timeouts.sender > 0 && now - lastReceive > timeouts.sender / 2 && !pingSent;
      if (wantPing || now - lastSend >= timeouts.keepalive) {
        if (wantPing) pingSent = true;
        lastSend = now;
        this.#writer.write(keepaliveMessage(keepaliveWalEnd(), wantPing)).catch(() => {});
      }
    }, Math.max(50, Math.min(1000, timeouts.keepalive / 2, progressMs)));

    try {
      const first = await Promise.race([pipeline, copyReader]);
      if (
        "kind" in first && (first.kind === "copydone" || first.kind === "eof" ||
          first.kind === "message")
      ) {
        // The client ended COPY (or went away): stop reading WAL, answer, return to commands.
        stopPipeline.abort();
        const end = await pipeline;
        if (first.kind === "eof") return { type: "eof", body: new Uint8Array() };
        if (first.kind === "message") return first.msg;
        if (end.kind === "error" && !(end.error instanceof PgError)) throw end.error;
        await this.#send(
          copyDone(),
          commandComplete("START_STREAMING"),
          commandComplete("START_REPLICATION"),
          readyForQuery(),
        );
        return;
      }
      const end = first as { kind: "done" } | { kind: "error"; error: unknown };
      if (end.kind === "error") {
        // An error inside COPY ends it; the client sees ErrorResponse then ReadyForQuery.
        if (end.error instanceof PgError) {
          log.log("warn", end.error.message, { sqlstate: end.error.code, pid: sender.pid });
          await this.#send(errorResponse(end.error), readyForQuery());
          const after = await copyReader;
          if (after.kind === "eof") return { type: "eof", body: new Uint8Array() };
          return after.kind === "message" ? after.msg : undefined;
        }
        throw end.error;
      }
      if (stopAt !== undefined) {
        // Shutdown: everything up to the end is sent; wait for the client to confirm it, then
        // end the stream as PostgreSQL does, with `COPY 0` inside COPY mode.
        const confirmed = await this.#awaitConfirmation(copyReader);
        await this.#send(commandComplete("COPY 0"));
        this.#endReason = "server shutdown";
        log.log("info", "all WAL sent, ending replication with COPY 0", {
          pid: sender.pid,
          sent_lsn: formatLsn(sender.sentLsn),
          confirmed,
        });
        return { type: "eof", body: new Uint8Array() };
      }
      // End of a historic timeline: CopyDone, the client's CopyDone, then where to go next.
      const switchPoint = store.endOf(tli);
      await this.#send(copyDone());
      const answer = await copyReader;
      if (answer.kind === "eof") return { type: "eof", body: new Uint8Array() };
      if (answer.kind === "message") return answer.msg;
      await this.#send(...this.#endOfTimeline(tli, switchPoint), readyForQuery());
      return;
    } finally {
      clearInterval(ticker);
      stopPipeline.abort();
      this.#streaming = false;
      this.#stopStreaming = undefined;
      if (slot) {
        try {
          await slots.flush();
        } catch (e) {
          log.log("warn", `could not save replication slot: ${(e as Error).message}`);
        }
      }
    }
  }

  /**
   * Waits (bounded) until the client reports everything sent as written or flushed.
   *
   * @returns Whether it did.
   */
  async #awaitConfirmation(copyReader: Promise<CopyEnd>): Promise<boolean> {
    const sender = this.#sender!;
    const deadline = Date.now() + Math.max(1000, this.#ctx.timeouts.sender || 10_000);
    let gone = false;
    copyReader.then(() => gone = true, () => gone = true);
    while (!gone && Date.now() < deadline) {
      const confirmed = sender.flushLsn !== 0n ? sender.flushLsn : sender.writeLsn;
      if (confirmed >= sender.sentLsn) return true;
      await this.#writer.write(keepaliveMessage(sender.sentLsn, true));
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  /** A CopyData payload from the client: `r` status update or `h` hot standby feedback. */
  async #standbyMessage(
    body: Uint8Array,
    slot: ReplicationSlot | undefined,
    walEnd: () => Lsn,
  ): Promise<void> {
    const sender = this.#sender!;
    const r = new BodyReader(body);
    const type = body.length > 0 ? String.fromCharCode(r.byte()) : "";
    if (type === "r") {
      sender.writeLsn = r.uint64();
      sender.flushLsn = r.uint64();
      sender.replayLsn = r.uint64();
      sender.replyTime = pgTimestampToDate(r.int64());
      const replyRequested = r.byte() !== 0;
      this.#ctx.lag?.recordReply(sender, sender.writeLsn, sender.flushLsn, sender.replayLsn);
      if (replyRequested) await this.#writer.write(keepaliveMessage(walEnd(), false));
      if (slot) this.#ctx.slots.advance(slot, sender.flushLsn, sender.timeline);
      return;
    }
    if (type === "h") {
      sender.replyTime = pgTimestampToDate(r.int64());
      sender.xmin = r.uint32();
      sender.xminEpoch = r.uint32();
      sender.catalogXmin = r.uint32();
      sender.catalogXminEpoch = r.uint32();
      return;
    }
    // As the walsender: logged, and the connection closed without telling the client.
    this.#ctx.log.log("warn", `unexpected message type "${type}"`, {
      sqlstate: SqlState.PROTOCOL_VIOLATION,
      pid: sender.pid,
    });
    this.close();
    throw new ConnectionClosed();
  }
}

/**
 * PostgreSQL's `parse_bool`: a prefix of `true`, `false`, `yes` or `no`; `on`; `off` and its
 * two-letter prefix (a lone `o` is ambiguous); `1`; `0`. Anything else is `undefined`.
 */
function parseBool(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (v === "") return undefined;
  const prefixOf = (word: string) => word.startsWith(v);
  if (prefixOf("true") || prefixOf("yes") || v === "on" || v === "1") return true;
  if (prefixOf("false") || prefixOf("no") || (v.length >= 2 && prefixOf("off")) || v === "0") {
    return false;
  }
  return undefined;
}
