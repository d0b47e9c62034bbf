/**
 * A frontend (client) connection speaking the replication protocol, as libpq does for
 * `pg_receivewal` and the walreceiver: simple queries and COPY BOTH over a connection that
 * `client_transport.ts` opens (TCP, TLS) and `_client_startup.ts` authenticates.
 *
 * @module
 */

import { writeAll } from "../_io.ts";
import { startup } from "./_client_startup.ts";
import {
  type Attempt,
  type ClientOptions,
  openTransport,
  type Transport,
} from "./client_transport.ts";
import { type FrontendMessage, MessageReader } from "./message_reader.ts";
import { MessageBuilder } from "./messages.ts";
import {
  parseCommandTag,
  parseDataRow,
  parseRowDescription,
  type QueryResult,
} from "./query_result.ts";
import { parseErrorFields, PgServerError } from "./server_error.ts";

/** A server message as read: type character and body. */
export type BackendMessage = FrontendMessage;

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
      await startup(client, options);
      return client;
    } catch (e) {
      client.close();
      throw e;
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
          current.tag = parseCommandTag(msg.body);
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
        if (last && last.tag === "") last.tag = parseCommandTag(msg.body);
        else results.push({ fields: [], rows: [], tag: parseCommandTag(msg.body) });
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
