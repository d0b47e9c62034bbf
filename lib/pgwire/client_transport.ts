/**
 * Establishing a client connection's byte stream, as libpq's `PQconnectPoll` does before startup:
 * TCP, then SSLRequest and TLS as `sslmode` says, with libpq's rules for when to verify the
 * server's certificate and its name. What runs over the stream is the client's business.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { writeAll } from "../_io.ts";
import { connDuplex } from "./_conn_duplex.ts";
import { NodeSocketTransport } from "./_node_socket_transport.ts";
import { MessageBuilder } from "./messages.ts";

/** Where and as whom to connect. */
export interface ClientOptions {
  /** Server host name or address. */
  hostname: string;
  /** Server port. */
  port: number;
  /** Role name. */
  user: string;
  /** Password for password, md5 and SCRAM authentication. */
  password?: string;
  /** Startup parameters beyond `user`; default `database=replication replication=true`. */
  params?: Record<string, string>;
  /**
   * Send an SSLRequest but continue in clear text whatever the answer (`N` expected); for tests of
   * a server's SSLRequest handling. Use `tls` for encryption.
   */
  sslRequest?: boolean;
  /** TLS as libpq's `sslmode`; default `disable`. */
  tls?: ClientTlsOptions;
  /** Give up connecting (TCP, TLS, authentication) after this many milliseconds; 0 = never. */
  connectTimeoutMs?: number;
  /** Name to verify the certificate against (libpq's `host` when `hostaddr` is used). */
  tlsHostname?: string;
}

/** How to use TLS, in libpq's terms. */
export interface ClientTlsOptions {
  /**
   * `disable`: never. `allow`/`prefer`: try, continue in clear when the server says `N`.
   * `require`: insist, but (as libpq without a root certificate) do not check the certificate.
   * `verify-ca`: the chain must lead to `rootCert`. `verify-full`: that, and the name must match.
   * With a `rootCert`, `require` and `prefer` verify the chain, as libpq does.
   */
  mode: "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
  /**
   * Root certificate(s), PEM text: the only trust anchors, as libpq's `sslrootcert`. Without
   * them, `verify-ca` and `verify-full` use the system's trusted roots (`sslrootcert=system`).
   */
  rootCert?: string;
  /** Client certificate (chain), PEM text, presented when the server asks (libpq's `sslcert`). */
  cert?: string;
  /** The client certificate's private key, unencrypted PEM (libpq's `sslkey`). */
  key?: string;
}

/** The byte stream a client speaks over: a Deno connection or an adapted `node:tls` socket. */
export interface Transport {
  /** Reads up to `p.length` bytes; `null` at EOF. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`, returning how much. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the stream. */
  close(): void;
}

/**
 * The server could not be reached: the TCP connection was refused, the name did not resolve, the
 * network was unreachable. libpq moves on to the next host of a list after such a failure, and
 * after a timeout, but not after anything that happens once the server has answered.
 *
 * @example
 * ```ts
 * import { PgConnectError } from "./client_transport.ts";
 * import assert from "node:assert/strict";
 * const e = new PgConnectError("db", 5432, new Deno.errors.ConnectionRefused("refused"));
 * assert.equal(e.message, 'connection to server at "db", port 5432 failed: Connection refused');
 * ```
 */
export class PgConnectError extends Error {
  /**
   * Creates the error.
   *
   * @param hostname Where the connection was attempted.
   * @param port Its port.
   * @param cause The socket's error.
   */
  constructor(readonly hostname: string, readonly port: number, cause: unknown) {
    super(`connection to server at "${hostname}", port ${port} failed: ${reason(cause)}`, {
      cause,
    });
    this.name = "PgConnectError";
  }
}

/** A socket error in libpq's words where there are some (`connect ECONNREFUSED …` otherwise). */
function reason(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (e instanceof Deno.errors.ConnectionRefused || code === "ECONNREFUSED") {
    return "Connection refused";
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "could not translate host name";
  return e instanceof Error ? e.message : String(e);
}

async function readOneByte(t: Transport): Promise<number> {
  const b = new Uint8Array(1);
  const n = await t.read(b);
  if (n !== 1) {
    throw new Deno.errors.UnexpectedEof("server closed the connection during SSL negotiation");
  }
  return b[0]!;
}

const SSL_REQUEST = new MessageBuilder(null).int32(80877103).finish();

/** A connection attempt's open socket, so that a timeout can close whatever stage it reached. */
export interface Attempt {
  /** The innermost stream opened so far. */
  transport: Transport | undefined;
  /** Set when the attempt timed out: whatever opens later is closed at once. */
  abandoned: boolean;
}

/** Sets the attempt's current transport; closes it at once when the attempt has timed out. */
function track<T extends Transport>(attempt: Attempt | undefined, t: T): T {
  if (attempt) {
    attempt.transport = t;
    if (attempt.abandoned) {
      t.close();
      throw new Deno.errors.TimedOut("connection attempt abandoned");
    }
  }
  return t;
}

/**
 * Opens the byte stream: TCP, then SSLRequest and TLS as the options say.
 *
 * @throws {PgConnectError} when the server cannot be reached; an `Error` in libpq's words when
 * TLS negotiation fails.
 *
 * @example
 * ```ts ignore
 * import { openTransport } from "./client_transport.ts";
 * const t = await openTransport({
 *   hostname: "db", port: 5432, user: "repl", tls: { mode: "require" },
 * });
 * t.close();
 * ```
 */
export async function openTransport(options: ClientOptions, attempt?: Attempt): Promise<Transport> {
  const t = options.tls;
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: options.hostname, port: options.port });
  } catch (e) {
    throw new PgConnectError(options.hostname, options.port, e);
  }
  track(attempt, conn);
  conn.setNoDelay(true);
  const wantTls = t !== undefined && t.mode !== "disable";
  if (!wantTls && !options.sslRequest) return conn;
  try {
    await writeAll(conn, SSL_REQUEST);
    const answer = await readOneByte(conn);
    if (!wantTls) {
      if (answer !== 0x4e) {
        throw new Error("server answered SSLRequest with something other than N");
      }
      return conn;
    }
    if (answer === 0x4e) {
      if (t.mode !== "allow" && t.mode !== "prefer") {
        throw new Error("server does not support SSL, but SSL was required");
      }
      return conn;
    }
    if (answer !== 0x53) {
      throw new Error(
        `received invalid response to SSL negotiation: ${String.fromCharCode(answer)}`,
      );
    }
    const name = options.tlsHostname ?? options.hostname;
    // libpq checks the chain whenever it has a root certificate, and always for verify-*.
    const verify = t.rootCert !== undefined || t.mode === "verify-ca" || t.mode === "verify-full";
    const secure = tls.connect({
      socket: connDuplex(conn),
      rejectUnauthorized: verify,
      ...(t.rootCert !== undefined ? { ca: t.rootCert } : {}),
      // The name is checked only for verify-full, against `host` even when `hostaddr` is used.
      checkServerIdentity: t.mode === "verify-full"
        ? (_host: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(name, cert)
        : () => undefined,
      // SNI carries host names only (libpq's sslsni), never an address.
      ...(net.isIP(name) ? {} : { servername: name }),
      ...(t.cert !== undefined ? { cert: t.cert } : {}),
      ...(t.key !== undefined ? { key: t.key } : {}),
    });
    const transport = track(attempt, new NodeSocketTransport(secure));
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", (e: Error) => reject(new Error(`SSL error: ${e.message}`)));
      secure.once("close", () => reject(new Error("SSL error: connection closed")));
    }).catch((e) => {
      transport.close();
      throw e;
    });
    return transport;
  } catch (e) {
    try {
      conn.close();
    } catch { /* closed with the TLS socket */ }
    throw e;
  }
}
