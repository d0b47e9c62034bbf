/**
 * The authenticator used without `--hba`: loopback clients are trusted, everyone else refused.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import type { AuthRequest } from "./contract.ts";

/**
 * The default authenticator: trust loopback clients, refuse everyone else as a `pg_hba.conf`
 * without a matching line would.
 *
 * @example
 * ```ts
 * import { loopbackTrust } from "./trust.ts";
 * import assert from "node:assert/strict";
 * const send = () => Promise.resolve();
 * const receive = () => Promise.resolve(new Uint8Array());
 * await loopbackTrust({ user: "repl", address: "127.0.0.1", ssl: false, send, receive });
 * await assert.rejects(
 *   loopbackTrust({ user: "repl", address: "10.0.0.5", ssl: false, send, receive }),
 *   { code: "28000" },
 * );
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
