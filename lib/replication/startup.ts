/**
 * The first phase of a replication connection, as `ProcessStartupPacket` and `InitPostgres` run
 * it for a walsender: encryption requests, the startup packet, the replication parameter, the
 * sender slot, authentication, and the parameters reported to the client.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { Authenticator } from "../auth/contract.ts";
import { BodyReader } from "../pgwire/body_reader.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import { ConnectionClosed } from "../pgwire/message_reader.ts";
import {
  authenticationOk,
  backendKeyData,
  negotiateProtocolVersion,
  parameterStatus,
  readyForQuery,
} from "../pgwire/messages.ts";
import type { TlsBridge } from "../pgwire/tls_bridge.ts";
import type { WalStore } from "../wal/store.ts";
import type { ClientConnection } from "./connection.ts";
import type { Sender, SenderRegistry } from "./registry.ts";
import { startupParameters } from "./settings.ts";

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * Latest minor version of protocol 3 a server of `major` speaks: 3.2 from PostgreSQL 18.
 *
 * @example
 * ```ts
 * import { latestProtocolMinor } from "./startup.ts";
 * import assert from "node:assert/strict";
 * assert.equal(latestProtocolMinor(17), 0);
 * assert.equal(latestProtocolMinor(18), 2);
 * ```
 */
export function latestProtocolMinor(major: number): number {
  return major >= 18 ? 2 : 0;
}

/** A StartupMessage as the postmaster accepts it. */
export interface StartupMessage {
  /** The startup parameters, `_pq_.` options left out. */
  params: Map<string, string>;
  /** The minor version of protocol 3 the connection uses: the client's, or our latest if lower. */
  protocolMinor: number;
}

/**
 * Reads startup-phase packets until a StartupMessage: answers SSLRequest and GSSENCRequest,
 * moves onto TLS when asked (or at once for PostgreSQL 17's direct TLS), and settles the protocol
 * version as a server of the served major does: up to 3.2 from 18, 3.0 before, with
 * NegotiateProtocolVersion when the client asked for more or sent `_pq_.` options.
 *
 * @param major The PostgreSQL major of the WAL served.
 * @param log Told why a connection is dropped without a word to the client.
 * @returns The StartupMessage; `null` when the client leaves, only wanted to cancel, asked for
 * direct TLS from a server without TLS, or sent a length PostgreSQL refuses.
 */
export async function readStartupPacket(
  client: ClientConnection,
  tls: TlsBridge | undefined,
  major: number,
  log?: (message: string) => void,
): Promise<StartupMessage | null> {
  // PostgreSQL 17's direct TLS: the first byte is a TLS handshake record, not a length.
  const first = await client.peekByte();
  if (first === TLS_HANDSHAKE_RECORD && !tls) {
    // A server without TLS (of any major) only logs this, as a COMMERROR, and hangs up: an
    // ErrorResponse would reach a client that is waiting for a TLS record.
    log?.("direct SSL connection request but TLS is not configured");
    return null;
  }
  if (tls && first === TLS_HANDSHAKE_RECORD) {
    const alpn = await client.startTls(tls, client.takeBuffered());
    if (alpn !== "postgresql") {
      throw PgError.fatal(
        SqlState.PROTOCOL_VIOLATION,
        "received direct SSL connection request without ALPN protocol negotiation extension",
      );
    }
  }
  while (true) {
    let pkt;
    try {
      pkt = await client.readStartup();
    } catch (e) {
      // The postmaster only logs a length it refuses (COMMERROR) and hangs up.
      if (!(e instanceof PgError && e.message === "invalid length of startup packet")) throw e;
      log?.(e.message);
      return null;
    }
    if (!pkt) return null;
    if (pkt.code === SSL_REQUEST || pkt.code === GSSENC_REQUEST) {
      if (client.buffered > 0) {
        throw PgError.fatal(
          SqlState.PROTOCOL_VIOLATION,
          "received unencrypted data after SSL request",
        );
      }
      if (pkt.code === SSL_REQUEST && tls && !client.ssl) {
        await client.send(new TextEncoder().encode("S"));
        await client.startTls(tls, new Uint8Array());
      } else {
        await client.send(new TextEncoder().encode("N"));
      }
      continue;
    }
    if (pkt.code === CANCEL_REQUEST) return null; // nothing to cancel; nothing is sent back
    const protoMajor = pkt.code >>> 16;
    const protoMinor = pkt.code & 0xffff;
    const latest = latestProtocolMinor(major);
    if (protoMajor !== 3) {
      throw PgError.fatal(
        SqlState.FEATURE_NOT_SUPPORTED,
        `unsupported frontend protocol ${protoMajor}.${protoMinor}: server supports 3.0 to 3.${latest}`,
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
    const protocolMinor = Math.min(protoMinor, latest);
    if (protoMinor > latest || unrecognized.length > 0) {
      await client.send(negotiateProtocolVersion((3 << 16) | protocolMinor, unrecognized));
    }
    return { params, protocolMinor };
  }
}

/** Who the startup packet says is connecting. */
export interface StartupRequest {
  /** Startup `user`. */
  user: string;
  /** `application_name`, or `fallback_application_name`, or empty. */
  applicationName: string;
}

/**
 * Checks the startup parameters of a replication connection: a user, and `replication` set to
 * a true value (physical replication), while the server is not shutting down.
 *
 * @throws {PgError} FATAL, in the postmaster's words, when the connection cannot go on.
 */
export function checkStartup(params: Map<string, string>, shutdown: AbortSignal): StartupRequest {
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
  if (shutdown.aborted) {
    throw PgError.fatal(SqlState.CANNOT_CONNECT_NOW, "the database system is shutting down");
  }
  return {
    user,
    applicationName: params.get("application_name") ?? params.get("fallback_application_name") ??
      "",
  };
}

/**
 * Takes a sender slot for the client, as `InitProcess` does before authentication, so
 * `max_wal_senders` bounds unauthenticated connections too.
 *
 * @throws {PgError} FATAL 53300 when every slot is taken.
 */
export function acquireSender(
  registry: SenderRegistry,
  client: ClientConnection,
  request: StartupRequest,
): Sender {
  const sender = registry.acquire({
    clientAddr: client.remote.address,
    clientPort: client.remote.port,
  });
  if (!sender) {
    throw PgError.fatal(
      SqlState.TOO_MANY_CONNECTIONS,
      `number of requested standby connections exceeds max_wal_senders (currently ${registry.maxSenders})`,
    );
  }
  sender.user = request.user;
  sender.applicationName = request.applicationName;
  return sender;
}

/** What {@linkcode authenticate} needs from the server. */
export interface AuthenticateContext {
  /** Decides whether the client may connect. */
  authenticate: Authenticator;
  /** Server-side TLS, for channel binding. */
  tls?: TlsBridge | undefined;
  /** The WAL served: its major decides the reported `server_version`. */
  store: Pick<WalStore, "identity">;
  /** Log lines. */
  log: Logger;
}

/**
 * Runs the authenticator, then tells the client it is in: AuthenticationOk, the ParameterStatus
 * burst, BackendKeyData and ReadyForQuery, sent together.
 *
 * @param protocolMinor The minor protocol version settled by {@linkcode readStartupPacket}: from
 * 3.2 the cancel key is 32 bytes long, as PostgreSQL 18 makes it.
 */
export async function authenticate(
  client: ClientConnection,
  ctx: AuthenticateContext,
  sender: Sender,
  protocolMinor = 0,
): Promise<void> {
  await ctx.authenticate({
    user: sender.user,
    address: client.remote.address,
    ssl: client.ssl,
    channelBinding: client.ssl ? ctx.tls?.channelBinding : undefined,
    send: (b) => client.send(b),
    receive: async () => {
      const msg = await client.readMessage();
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
  ctx.log.log("info", "replication connection authorized", {
    pid: sender.pid,
    host: client.remote.address,
    user: sender.user,
    application_name: sender.applicationName,
    // As PostgreSQL's log_connections says "SSL enabled": which links are encrypted.
    ssl: client.ssl ? "on" : "off",
  });
  await client.send(
    authenticationOk(),
    ...startupParameters(ctx.store, sender).map(([k, v]) => parameterStatus(k, v)),
    backendKeyData(sender.pid, protocolMinor >= 2 ? longCancelKey(sender) : sender.cancelKey),
    readyForQuery(),
  );
}

/** A 32-byte cancel key that begins with the sender's 4-byte one; walrelay cancels nothing. */
function longCancelKey(sender: Sender): Uint8Array {
  const key = crypto.getRandomValues(new Uint8Array(32));
  new DataView(key.buffer).setInt32(0, sender.cancelKey);
  return key;
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
