/**
 * Helpers of the relay-mode integration tests: a relay following an upstream
 * (`cli.ts serve --upstream`), and a table digest.
 *
 * @module
 */

import { type PgCluster, type RelayProcess, startRelay, waitFor } from "./_pg.ts";
import { replPsql } from "./_relay_util.ts";

/**
 * Starts a relay in relay mode on `walDir`, following `upstream` (a conninfo). It listens at
 * once; on an empty directory it answers 57P03 until the upstream's first WAL is durable, so by
 * default this also waits until a replication command succeeds (`serving: false` does not).
 */
export async function startRelayMode(
  opts: {
    walDir: string;
    upstream: string;
    args?: string[];
    port?: number;
    serving?: boolean;
    env?: Record<string, string>;
  },
): Promise<RelayProcess> {
  const relay = await startRelay({
    walDir: opts.walDir,
    args: ["--upstream", opts.upstream, ...(opts.args ?? [])],
    timeoutMs: 60_000,
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    ...(opts.env !== undefined ? { env: opts.env } : {}),
  });
  if (opts.serving === false) return relay;
  try {
    await waitFor(
      async () => !relay.exited && (await replPsql(relay.port, "IDENTIFY_SYSTEM")).code === 0,
      {
        timeoutMs: 60_000,
        intervalMs: 200,
        message: "the relay did not serve WAL from its upstream",
      },
    );
  } catch (e) {
    await relay[Symbol.asyncDispose]();
    throw new Error(`${(e as Error).message}\n--- relay ---\n${relay.stderr()}`);
  }
  return relay;
}

/** pgbench's tables, digested: every node must agree on this. */
export const PGBENCH_DIGEST =
  "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history), " +
  "(SELECT sum(delta) FROM pgbench_history)";

/** Waits until `standby` answers `query` as `want`; throws with its log and the relay's. */
export async function waitSame(
  standby: PgCluster,
  query: string,
  want: string,
  relayLog: () => string,
  timeoutMs = 60_000,
): Promise<void> {
  let last = "";
  await waitFor(async () => (last = await standby.sql(query)) === want, {
    timeoutMs,
    message: "standby did not reach the primary's data",
  }).catch(async (e) => {
    throw new Error(
      `${(e as Error).message}\nwant ${want}\ngot  ${last}\n--- standby log ---\n${await standby
        .log()}\n--- relay ---\n${relayLog()}`,
    );
  });
}
