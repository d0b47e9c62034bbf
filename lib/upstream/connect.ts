/**
 * Connecting to an upstream named by a libpq host list, as `PQconnectdb` does: the hosts are
 * tried in order (or shuffled, with `load_balance_hosts=random`) until one accepts the connection
 * and is the kind of server `target_session_attrs` asks for.
 *
 * libpq moves on to the next host only when a host cannot be reached (refused, unresolvable,
 * timed out under `connect_timeout`) or is the wrong kind of server. Once a server has answered,
 * anything else (failed authentication, a certificate that does not verify, a server without
 * TLS under `sslmode=require`) ends the attempt: the next host would most likely fail the same
 * way, and trying it could hand credentials to more servers than necessary.
 *
 * @module
 */

import { PgClient } from "../pgwire/client.ts";
import { PgConnectError } from "../pgwire/client_transport.ts";
import { type ConninfoEnvironment, processEnvironment } from "./conninfo_environment.ts";
import type { ConninfoHost, ResolvedConninfo, TargetSessionAttrs } from "./conninfo_resolve.ts";
import { loadClientCertificate } from "./ssl_files.ts";

/** Options of {@linkcode connectUpstream}. */
export interface UpstreamConnectOptions {
  /** Startup parameters besides `user` (`database`, `replication`, `application_name`). */
  params: Record<string, string>;
  /** Where certificate and key files are read; default {@linkcode processEnvironment}. */
  environment?: ConninfoEnvironment;
  /** Told about every host given up on, before the next one is tried. */
  onHostFailed?: (server: string, error: Error) => void;
  /** Checked before each host: `true` stops the attempt (the receiver is closing). */
  stopped?: () => boolean;
  /** Random numbers in [0, 1) for `load_balance_hosts=random`; default `Math.random`. */
  random?: () => number;
}

/** An established connection and the host it went to. */
export interface UpstreamConnection {
  /** The authenticated connection. */
  client: PgClient;
  /** The host list entry that accepted it. */
  host: ConninfoHost;
  /** That host for logs: `host:port`, with the address when `hostaddr` was given. */
  server: string;
}

/**
 * A host list entry for logs and status: `db1:5432`, `[::1]:5432`, `db1 (10.0.0.1):5432`.
 *
 * @example
 * ```ts
 * import { describeHost } from "./connect.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   describeHost({ host: "db1", hostaddr: "10.0.0.1", port: 5432, password: "x" }),
 *   "db1 (10.0.0.1):5432",
 * );
 * assert.equal(describeHost({ host: "::1", hostaddr: undefined, port: 1, password: undefined }), "[::1]:1");
 * ```
 */
export function describeHost(h: ConninfoHost): string {
  const name = h.host.includes(":") ? `[${h.host}]` : h.host;
  const addr = h.hostaddr !== undefined && h.hostaddr !== h.host ? ` (${h.hostaddr})` : "";
  return `${name}${addr}:${h.port}`;
}

/**
 * Why a connected server is not the one `target_session_attrs` wants, or `undefined` when it is.
 * libpq's checks, from the `in_hot_standby` and `default_transaction_read_only` parameters that
 * servers since PostgreSQL 14 report at startup (a walrelay reports a primary's values). Before
 * 14, `read-write`/`read-only` fall back to `SHOW transaction_read_only`, which a walsender
 * answers; `primary`/`standby` need `pg_is_in_recovery()`, which a replication connection cannot
 * run, so such a server is passed over, as libpq's failing query would.
 */
async function targetMismatch(
  client: PgClient,
  want: TargetSessionAttrs,
): Promise<string | undefined> {
  if (want === "any") return undefined;
  const hotStandby = client.parameters.get("in_hot_standby");
  if (want === "read-write" || want === "read-only") {
    let readOnly: boolean;
    const defaultReadOnly = client.parameters.get("default_transaction_read_only");
    if (hotStandby !== undefined && defaultReadOnly !== undefined) {
      readOnly = hotStandby === "on" || defaultReadOnly === "on";
    } else {
      try {
        const [r] = await client.query("SHOW transaction_read_only");
        readOnly = r?.rows[0]?.[0] === "on";
      } catch {
        return `"SHOW transaction_read_only" failed`;
      }
    }
    if (want === "read-write" && readOnly) return "session is read-only";
    if (want === "read-only" && !readOnly) return "session is not read-only";
    return undefined;
  }
  if (hotStandby === undefined) {
    return `server does not report in_hot_standby (PostgreSQL 13 or older), so ` +
      `target_session_attrs=${want} cannot be checked on a replication connection`;
  }
  if (want === "primary" && hotStandby === "on") return "server is in hot standby mode";
  if (want === "standby" && hotStandby !== "on") return "server is not in hot standby mode";
  return undefined;
}

/** Fisher–Yates, as libpq's `libpq_prng`-driven shuffle of the host list. */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Connects to the first suitable host of a resolved connection string (one attempt over the
 * list; reconnecting with backoff is the caller's business). The root certificate, client
 * certificate and key are read again for every attempt, so renewed files take effect at the next
 * connection, as with libpq.
 *
 * @throws {PgConnectError} or `Deno.errors.TimedOut` when the only host cannot be reached; an
 * `Error` listing every host when none of several can be reached or suits
 * `target_session_attrs`; whatever a reachable host answered otherwise (a `PgServerError` for a
 * failed authentication, for instance), without trying further hosts.
 *
 * @example
 * ```ts ignore
 * import { parseConninfo } from "./conninfo.ts";
 * import { resolveConninfo } from "./conninfo_resolve.ts";
 * import { connectUpstream } from "./connect.ts";
 * const c = resolveConninfo(parseConninfo("host=db1,db2 user=repl target_session_attrs=primary"));
 * const { client, server } = await connectUpstream(c, {
 *   params: { database: "replication", replication: "true" },
 * });
 * console.log(`connected to ${server}`);
 * await client.terminate();
 * ```
 */
export async function connectUpstream(
  c: ResolvedConninfo,
  options: UpstreamConnectOptions,
): Promise<UpstreamConnection> {
  const e = options.environment ?? processEnvironment;
  let rootCert: string | undefined;
  if (c.sslrootcert !== undefined) {
    rootCert = e.readFile(c.sslrootcert)?.text;
    if (rootCert === undefined) {
      throw new Error(`could not read root certificate file "${c.sslrootcert}"`);
    }
  }
  const clientCert = loadClientCertificate(c, e);
  const tls = {
    mode: c.sslmode,
    ...(rootCert !== undefined ? { rootCert } : {}),
    ...(clientCert ? { cert: clientCert.cert, key: clientCert.key } : {}),
  };
  const hosts = c.loadBalanceHosts === "random"
    ? shuffled(c.hosts, options.random ?? Math.random)
    : c.hosts;
  // prefer-standby: a first pass for a standby, then, as libpq's second pass, any server.
  const passes: TargetSessionAttrs[] = c.targetSessionAttrs === "prefer-standby"
    ? ["standby", "any"]
    : [c.targetSessionAttrs];
  const failures: string[] = [];
  let only: Error | undefined;
  for (const want of passes) {
    for (const h of hosts) {
      if (options.stopped?.()) throw new Error("connection attempt cancelled");
      const server = describeHost(h);
      let client: PgClient;
      try {
        client = await PgClient.connect({
          hostname: h.hostaddr ?? h.host,
          tlsHostname: h.host,
          port: h.port,
          user: c.user,
          ...(h.password !== undefined ? { password: h.password } : {}),
          params: options.params,
          tls,
          connectTimeoutMs: c.connectTimeout * 1000,
        });
      } catch (err) {
        const error = err as Error;
        if (!(error instanceof PgConnectError || error instanceof Deno.errors.TimedOut)) {
          if (c.hosts.length === 1) throw error;
          // Say which of the hosts answered so.
          throw new Error(
            `connection to server at "${h.host}", port ${h.port} failed: ${error.message}`,
            { cause: error },
          );
        }
        only = error;
        failures.push(
          error instanceof PgConnectError ? error.message : `${server}: ${error.message}`,
        );
        options.onHostFailed?.(server, error);
        continue;
      }
      let mismatch: string | undefined;
      try {
        mismatch = await targetMismatch(client, want);
      } catch (err) {
        client.close();
        throw err;
      }
      if (mismatch === undefined) return { client, host: h, server };
      await client.terminate();
      const error = new Error(
        `connection to server at "${h.host}", port ${h.port} failed: ${mismatch}`,
      );
      only = error;
      failures.push(error.message);
      options.onHostFailed?.(server, error);
    }
  }
  // One host, one failure: its own error, as before host lists.
  if (failures.length === 1 && only) throw only;
  throw new Error(`could not connect to any upstream host: ${failures.join("; ")}`);
}
