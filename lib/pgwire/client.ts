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
  /** Ask for TLS first? Plain connections only here: an SSLRequest answered `N` continues. */
  sslRequest?: boolean;
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

  #conn: Deno.Conn;
  #reader: MessageReader;
  #closed = false;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#reader = new MessageReader(conn);
  }

  /** Connects, authenticates and waits for ReadyForQuery. FATALs reject with PgServerError. */
  static async connect(options: ClientOptions): Promise<PgClient> {
    const conn = await Deno.connect({ hostname: options.hostname, port: options.port });
    conn.setNoDelay(true);
    const client = new PgClient(conn);
    try {
      if (options.sslRequest) {
        await client.write(new MessageBuilder(null).int32(80877103).finish());
        const answer = new Uint8Array(1);
        if (await conn.read(answer) !== 1 || answer[0] !== 0x4e) {
          throw new Error("server answered SSLRequest with something other than N");
        }
      }
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
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
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

  /** Sends a standby status update (`r`). */
  async sendStatus(
    write: bigint,
    flush: bigint,
    apply: bigint,
    replyRequested = false,
  ): Promise<void> {
    const b = new MessageBuilder("d").byte(0x72).int64(write).int64(flush).int64(apply)
      .int64(0n).byte(replyRequested ? 1 : 0);
    await this.write(b.finish());
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

function parseDataRow(body: Uint8Array): (string | null)[] {
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
