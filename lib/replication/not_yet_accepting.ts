/**
 * A connection accepted before there is WAL to serve.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import { errorResponse } from "../pgwire/messages.ts";
import type { TlsBridge } from "../pgwire/tls_bridge.ts";
import { ClientConnection } from "./connection.ts";
import { readStartupPacket } from "./startup.ts";

/**
 * A connection before there is WAL to serve (relay mode, an empty directory, the upstream's first
 * WAL not yet durable): answered as a cascading standby answers before it reaches a consistent
 * state, with FATAL 57P03 after the startup packet, so clients retry as they do there.
 *
 * @example
 * ```ts ignore
 * import { NotYetAccepting } from "./not_yet_accepting.ts";
 * // in an accept loop before the store opens:
 * new NotYetAccepting(conn, { tls: undefined, timeoutMs: 60_000, log }).run();
 * ```
 */
export class NotYetAccepting {
  #client: ClientConnection;
  #options: { tls: TlsBridge | undefined; timeoutMs: number; log: Logger };

  /**
   * @param conn The accepted connection.
   * @param options Server-side TLS, the startup deadline and where to log.
   */
  constructor(
    conn: Deno.Conn,
    options: { tls: TlsBridge | undefined; timeoutMs: number; log: Logger },
  ) {
    this.#client = new ClientConnection(conn);
    this.#options = options;
  }

  /** Reads the startup packet, answers 57P03 and closes; never throws. */
  async run(): Promise<void> {
    const client = this.#client;
    const timer = setTimeout(() => client.close(), this.#options.timeoutMs);
    try {
      // The served major is not known before the first WAL: protocol 3.0, as PostgreSQL 15
      // speaks it, is what every client accepts.
      if (!await readStartupPacket(client, this.#options.tls, 15)) return;
      const err = PgError.fatal(
        SqlState.CANNOT_CONNECT_NOW,
        "the database system is not yet accepting connections",
        { detail: "No WAL has been received from the upstream server yet." },
      );
      this.#options.log.log("info", err.message, {
        sqlstate: err.code,
        host: client.remote.address,
      });
      await client.send(errorResponse(err));
    } catch {
      /* the client left, or sent something that is no startup packet */
    } finally {
      clearTimeout(timer);
      client.close();
    }
  }

  /** Shutdown: nothing to drain. */
  beginShutdown(): void {
    this.close();
  }

  /** Closes the socket now. */
  close(): void {
    this.#client.close();
  }
}
