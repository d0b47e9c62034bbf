/**
 * The answer to a connection over `max_connections`, before its startup packet is read.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import { errorResponse } from "../pgwire/messages.ts";

/**
 * Sends PostgreSQL's `sorry, too many clients already` and closes the connection; never throws.
 *
 * @example
 * ```ts ignore
 * import { refuseTooManyClients } from "./too_many_clients.ts";
 * // in an accept loop, over the cap: refuseTooManyClients(conn, logger);
 * ```
 */
export function refuseTooManyClients(conn: Deno.Conn, log: Logger): void {
  const err = PgError.fatal(SqlState.TOO_MANY_CONNECTIONS, "sorry, too many clients already");
  log.log("warn", err.message, { sqlstate: err.code });
  conn.write(errorResponse(err)).catch(() => {}).finally(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  });
}
