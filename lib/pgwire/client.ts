/**
 * A frontend (client) connection speaking the replication protocol, as libpq does for
 * `pg_receivewal` and the walreceiver: startup, authentication (trust, password, md5,
 * SCRAM-SHA-256), simple queries and COPY BOTH.
 *
 * @module
 */

import { md5PasswordHash, md5SaltedResponse } from "../auth/md5.ts";
import { ScramClient } from "../auth/scram_client.ts";
import { BodyReader } from "./body_reader.ts";
import { PgError, type SqlStateCode } from "./error.ts";
import { type FrontendMessage, MessageReader } from "./message_reader.ts";
import { MessageBuilder } from "./messages.ts";
import net from "node:net";
import { connDuplex } from "./_conn_duplex.ts";
import tls from "node:tls";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

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
interface Transport {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/**
 * The server could not be reached: the TCP connection was refused, the name did not resolve, the
 * network was unreachable. libpq moves on to the next host of a list after such a failure, and
 * after a timeout, but not after anything that happens once the server has answered.
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

/**
 * A `node:tls` socket as a {@linkcode Transport}. TLS goes through `node:tls`, not
 * `Deno.startTls`: only `node:tls` can skip the chain check (libpq's `sslmode=require`), present a
 * client certificate, and trust `sslrootcert` alone (`Deno.startTls` adds its `caCerts` to the
 * default store, so `verify-ca` would also accept any publicly trusted certificate).
 */
class NodeSocketTransport implements Transport {
  #sock: net.Socket;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #onData = (c: Uint8Array) => {
    this.#chunks.push(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
    // Backpressure: stop reading from the kernel while a few chunks wait for the consumer.
    if (this.#chunks.length > 64) this.#sock.pause();
    this.#notify();
  };
  #onEnd = () => {
    this.#ended = true;
    this.#notify();
  };
  #onError = (e: Error) => {
    this.#error = e;
    this.#notify();
  };

  constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.on("data", this.#onData);
    sock.on("end", this.#onEnd);
    sock.on("close", this.#onEnd);
    sock.on("error", this.#onError);
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    const c = this.#chunks[0]!;
    const n = Math.min(c.length, p.length);
    p.set(c.subarray(0, n));
    if (n === c.length) this.#chunks.shift();
    else this.#chunks[0] = c.subarray(n);
    if (this.#chunks.length <= 16) this.#sock.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#sock.write(p, (e) => (e ? reject(e) : resolve(p.length)));
    });
  }

  close(): void {
    this.#sock.destroy();
  }
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
interface Attempt {
  transport: Transport | undefined;
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

/** Opens the byte stream: TCP, then SSLRequest and TLS as the options say. */
async function openTransport(options: ClientOptions, attempt?: Attempt): Promise<Transport> {
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

async function writeAll(t: Transport, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await t.write(bytes.subarray(off));
}

/** A server message as read: type character and body. */
export type BackendMessage = FrontendMessage;

/** A column of a result set. */
export interface ResultField {
  /** Column name. */
  name: string;
  /** Type OID. */
  typeOid: number;
  /** `atttypmod`. */
  typeMod: number;
}

/** One result of a simple query. */
export interface QueryResult {
  /** Columns, when the command returned rows. */
  fields: ResultField[];
  /** Rows of text values (`null` = SQL NULL). */
  rows: (string | null)[][];
  /** The CommandComplete tag. */
  tag: string;
}

/** An ErrorResponse from the server, with every field it sent. */
export class PgServerError extends PgError {
  /** All fields by their one-letter code. */
  readonly all: Record<string, string>;

  /** @param fields The ErrorResponse fields by code. */
  constructor(fields: Record<string, string>) {
    super(
      (fields.C ?? "XX000") as SqlStateCode,
      fields.M ?? "unknown error",
      {
        ...(fields.D !== undefined ? { detail: fields.D } : {}),
        ...(fields.H !== undefined ? { hint: fields.H } : {}),
        ...(fields.R !== undefined ? { routine: fields.R } : {}),
      },
      fields.V === "FATAL" || fields.S === "FATAL" ? "FATAL" : "ERROR",
    );
    this.name = "PgServerError";
    this.all = fields;
  }
}

/** Parses an ErrorResponse or NoticeResponse body into its fields. */
export function parseErrorFields(body: Uint8Array): Record<string, string> {
  const r = new BodyReader(body);
  const out: Record<string, string> = {};
  while (r.remaining > 0) {
    const code = r.byte();
    if (code === 0) break;
    out[String.fromCharCode(code)] = r.cstring();
  }
  return out;
}

/**
 * A connection to a PostgreSQL server (or a walrelay) in replication mode.
 *
 * @example
 * ```ts ignore
 * import { PgClient } from "./client.ts";
 * await using c = await PgClient.connect({ hostname: "127.0.0.1", port: 5433, user: "repl" });
 * const [r] = await c.query("IDENTIFY_SYSTEM");
 * console.log(r!.rows[0]);
 * ```
 */
export class PgClient {
  /** ParameterStatus values reported by the server. */
  readonly parameters: Map<string, string> = new Map();
  /** NoticeResponses received, oldest first. */
  readonly notices: Record<string, string>[] = [];
  /** BackendKeyData pid. */
  pid = 0;

  #conn: Transport;
  #reader: MessageReader;
  #closed = false;

  private constructor(conn: Transport) {
    this.#conn = conn;
    this.#reader = new MessageReader(conn);
  }

  /** Connects, authenticates and waits for ReadyForQuery. FATALs reject with PgServerError. */
  static async connect(options: ClientOptions): Promise<PgClient> {
    const timeout = options.connectTimeoutMs ?? 0;
    if (timeout <= 0) return await PgClient.#connect(options);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const attempt: Attempt = { transport: undefined, abandoned: false };
    const connecting = PgClient.#connect(options, attempt);
    // A connection that completes after the deadline is nobody's: close it.
    connecting.then((c) => attempt.abandoned && c.close(), () => {});
    try {
      return await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            // Close the socket too: a server that accepted and then went silent would otherwise
            // hold it (and a pending read) for as long as the process lives.
            attempt.abandoned = true;
            try {
              attempt.transport?.close();
            } catch { /* closed already */ }
            reject(
              new Deno.errors.TimedOut(
                `timeout expired connecting to ${options.hostname}:${options.port}`,
              ),
            );
          }, timeout);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  static async #connect(options: ClientOptions, attempt?: Attempt): Promise<PgClient> {
    const conn = await openTransport(options, attempt);
    const client = new PgClient(conn);
    try {
      const startup = new MessageBuilder(null).int32(196608).cstring("user").cstring(options.user);
      const params = options.params ?? { database: "replication", replication: "true" };
      for (const [k, v] of Object.entries(params)) startup.cstring(k).cstring(v);
      await client.write(startup.byte(0).finish());
      await client.#authenticate(options);
      return client;
    } catch (e) {
      client.close();
      throw e;
    }
  }

  async #authenticate(options: ClientOptions): Promise<void> {
    let scram: ScramClient | undefined;
    while (true) {
      const msg = await this.next();
      if (msg.type === "R") {
        const r = new BodyReader(msg.body);
        const code = r.int32();
        const password = options.password;
        if (code === 0) continue;
        if (password === undefined && code !== 12) {
          throw new Error("the server asked for a password and none was given");
        }
        if (code === 3) {
          await this.write(new MessageBuilder("p").cstring(password!).finish());
        } else if (code === 5) {
          const salt = r.bytes(4);
          const answer = md5SaltedResponse(md5PasswordHash(password!, options.user), salt);
          await this.write(new MessageBuilder("p").cstring(answer).finish());
        } else if (code === 10) {
          const mechanisms: string[] = [];
          for (let m = r.cstring(); m !== ""; m = r.cstring()) mechanisms.push(m);
          if (!mechanisms.includes("SCRAM-SHA-256")) {
            throw new Error(`no supported SASL mechanism among ${mechanisms.join(", ")}`);
          }
          scram = new ScramClient(password!);
          const first = encoder.encode(scram.clientFirst());
          await this.write(
            new MessageBuilder("p").cstring("SCRAM-SHA-256").int32(first.length).bytes(first)
              .finish(),
          );
        } else if (code === 11 && scram) {
          const final = await scram.clientFinal(decoder.decode(r.bytes(r.remaining)));
          await this.write(new MessageBuilder("p").bytes(encoder.encode(final)).finish());
        } else if (code === 12 && scram) {
          scram.verifyServerFinal(decoder.decode(r.bytes(r.remaining)));
        } else {
          throw new Error(`unsupported authentication request ${code}`);
        }
      } else if (msg.type === "S") {
        const r = new BodyReader(msg.body);
        this.parameters.set(r.cstring(), r.cstring());
      } else if (msg.type === "K") {
        this.pid = new BodyReader(msg.body).int32();
      } else if (msg.type === "Z") {
        return;
      } else if (msg.type === "v") {
        continue;
      } else {
        throw new Error(`unexpected message "${msg.type}" during startup`);
      }
    }
  }

  /** Writes raw bytes. */
  async write(bytes: Uint8Array): Promise<void> {
    await writeAll(this.#conn, bytes);
  }

  /** Bytes received and not yet returned as messages: 0 means the server paused. */
  get buffered(): number {
    return this.#reader.buffered;
  }

  /**
   * The next backend message. NoticeResponse is collected and skipped; ErrorResponse is thrown
   * as {@linkcode PgServerError} (after which a caller in a query still has to read `Z`).
   */
  async next(): Promise<BackendMessage> {
    while (true) {
      const msg = await this.nextRaw();
      if (msg.type === "N") {
        this.notices.push(parseErrorFields(msg.body));
        continue;
      }
      if (msg.type === "E") throw new PgServerError(parseErrorFields(msg.body));
      return msg;
    }
  }

  /** The next backend message exactly as received, errors included. */
  async nextRaw(): Promise<BackendMessage> {
    const msg = await this.#reader.readMessage((t) => (t === "d" ? 1 << 30 : 1 << 20));
    if (!msg) throw new Deno.errors.UnexpectedEof("server closed the connection unexpectedly");
    return msg;
  }

  /**
   * Runs a simple query and returns its results; an ErrorResponse rejects with
   * {@linkcode PgServerError} once the server is ready again.
   */
  async query(text: string): Promise<QueryResult[]> {
    await this.write(new MessageBuilder("Q").cstring(text).finish());
    const results: QueryResult[] = [];
    let current: QueryResult = { fields: [], rows: [], tag: "" };
    let error: PgServerError | undefined;
    while (true) {
      const msg = await this.nextRaw();
      switch (msg.type) {
        case "T":
          current.fields = parseRowDescription(msg.body);
          break;
        case "D":
          current.rows.push(parseDataRow(msg.body));
          break;
        case "C":
          current.tag = decodeTag(msg.body);
          results.push(current);
          current = { fields: [], rows: [], tag: "" };
          break;
        case "E":
          error = new PgServerError(parseErrorFields(msg.body));
          if (error.severity === "FATAL") throw error;
          break;
        case "N":
          this.notices.push(parseErrorFields(msg.body));
          break;
        case "I":
        case "S":
          break;
        case "W":
          throw new Error("query entered COPY BOTH mode; use startReplication()");
        case "Z":
          if (error) throw error;
          return results;
        default:
          throw new Error(`unexpected message "${msg.type}" in query response`);
      }
    }
  }

  /**
   * Sends `START_REPLICATION …` and waits for CopyBothResponse. Errors before COPY reject;
   * a result set instead of COPY (the start is a timeline's switch point) is returned as such.
   */
  async startReplication(command: string): Promise<"copy" | QueryResult[]> {
    await this.write(new MessageBuilder("Q").cstring(command).finish());
    const results: QueryResult[] = [];
    while (true) {
      const msg = await this.nextRaw();
      if (msg.type === "W") return "copy";
      if (msg.type === "E") {
        const err = new PgServerError(parseErrorFields(msg.body));
        if (err.severity !== "FATAL") await this.#readUntilReady();
        throw err;
      }
      if (msg.type === "T") {
        results.push({ fields: parseRowDescription(msg.body), rows: [], tag: "" });
      } else if (msg.type === "D") results.at(-1)?.rows.push(parseDataRow(msg.body));
      else if (msg.type === "C") {
        const last = results.at(-1);
        if (last && last.tag === "") last.tag = decodeTag(msg.body);
        else results.push({ fields: [], rows: [], tag: decodeTag(msg.body) });
      }
      if (msg.type === "Z") return results;
    }
  }

  async #readUntilReady(): Promise<void> {
    while ((await this.nextRaw()).type !== "Z") { /* skip */ }
  }

  /** Sends a standby status update (`r`); `sendTime` is µs since 2000-01-01 (0 = unset). */
  async sendStatus(
    write: bigint,
    flush: bigint,
    apply: bigint,
    replyRequested = false,
    sendTime = 0n,
  ): Promise<void> {
    const b = new MessageBuilder("d").byte(0x72).int64(write).int64(flush).int64(apply)
      .int64(sendTime).byte(replyRequested ? 1 : 0);
    await this.write(b.finish());
  }

  /**
   * Sends hot standby feedback (`h`): xmin and catalog_xmin with their epochs, 0 meaning "hold
   * nothing back".
   */
  async sendFeedback(
    xmin: number,
    xminEpoch: number,
    catalogXmin: number,
    catalogXminEpoch: number,
    sendTime = 0n,
  ): Promise<void> {
    const b = new MessageBuilder("d").byte(0x68).int64(sendTime).int32(xmin).int32(xminEpoch)
      .int32(catalogXmin).int32(catalogXminEpoch);
    await this.write(b.finish());
  }

  /** Sends CopyDone (`c`), to answer the server's at the end of a timeline or to stop. */
  async sendCopyDone(): Promise<void> {
    await this.write(new MessageBuilder("c").finish());
  }

  /** Closes the connection, sending Terminate when it is still open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  /** Sends Terminate and closes. */
  async terminate(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.write(new MessageBuilder("X").finish());
    } catch { /* gone already */ }
    this.close();
  }

  /** Closes, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.terminate();
  }
}

function parseRowDescription(body: Uint8Array): ResultField[] {
  const r = new BodyReader(body);
  const count = r.int16();
  const fields: ResultField[] = [];
  for (let i = 0; i < count; i++) {
    const name = r.cstring();
    r.bytes(6); // table OID, column number
    const typeOid = r.int32();
    r.bytes(2); // typlen
    const typeMod = r.int32();
    r.bytes(2); // format
    fields.push({ name, typeOid, typeMod });
  }
  return fields;
}

/**
 * The text values of a DataRow body (`null` for SQL NULL).
 *
 * @example
 * ```ts
 * import { parseDataRow } from "./client.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseDataRow(new Uint8Array([0, 1, 255, 255, 255, 255])), [null]);
 * ```
 */
export function parseDataRow(body: Uint8Array): (string | null)[] {
  const r = new BodyReader(body);
  const count = r.int16();
  const row: (string | null)[] = [];
  for (let i = 0; i < count; i++) {
    const len = r.int32();
    row.push(len < 0 ? null : decoder.decode(r.bytes(len)));
  }
  return row;
}

function decodeTag(body: Uint8Array): string {
  return new BodyReader(body).cstring();
}
