/**
 * A relay and its HTTP status server in this process, wired as `walrelay serve --http` will be:
 * the relay's logger tapped by the counters, the lag tracker fed by watching the store and the
 * senders. For the `http_*` and dashboard tests.
 *
 * @module
 */

import { createLogger } from "../lib/log.ts";
import type { PgClient } from "../lib/pgwire/client.ts";
import { WalRelay } from "../lib/server.ts";
import { RelayCounters } from "../lib/http/counters.ts";
import { startStatusServer, type StatusServer } from "../lib/http/status_server.ts";
import type { RelayStatus, UpstreamProvider } from "../lib/http/status.ts";

/** A running relay with its status server; disposing stops both. */
export interface StatusRelay extends AsyncDisposable {
  /** The relay. */
  readonly relay: WalRelay;
  /** Its status server. */
  readonly http: StatusServer;
  /** The relay's replication port. */
  readonly port: number;
  /** The status server's base URL. */
  readonly url: string;
  /** Log lines so far. */
  logs(): string;
  /** GETs a path of the status server; returns status, content type and body text. */
  get(path: string): Promise<{ status: number; type: string; text: string }>;
  /** GETs `/status`. */
  status(): Promise<RelayStatus>;
  /** A conninfo for replication clients of the relay. */
  conninfo(extra?: Record<string, string | number>): string;
}

/** Starts a relay on `walDir` (port 0) and a status server beside it (port 0). */
export async function startStatusRelay(opts: {
  walDir: string;
  upstream?: UpstreamProvider;
  readyMaxLagSeconds?: number;
  watch?: boolean;
  /** Sender threads (`WalRelayOptions.workers`); default the relay's. */
  workers?: number;
}): Promise<StatusRelay> {
  const lines: string[] = [];
  const counters = new RelayCounters();
  const logger = counters.tap(createLogger({ write: (l) => lines.push(l), level: "debug" }));
  const relay = await WalRelay.start({
    walDir: opts.walDir,
    port: 0,
    logger,
    watch: opts.watch ?? true,
    rescanMs: 200,
    ...(opts.workers === undefined ? {} : { workers: opts.workers }),
  });
  let http: StatusServer;
  try {
    http = await startStatusServer({
      port: 0,
      relay,
      counters,
      upstream: opts.upstream,
      ...(opts.readyMaxLagSeconds === undefined
        ? {}
        : { readyMaxLagSeconds: opts.readyMaxLagSeconds }),
    });
  } catch (e) {
    relay.close();
    await relay.finished;
    throw e;
  }
  const get = async (path: string) => {
    const res = await fetch(new URL(path, http.url));
    return {
      status: res.status,
      type: res.headers.get("content-type") ?? "",
      text: await res.text(),
    };
  };
  return {
    relay,
    http,
    port: relay.port,
    url: http.url,
    logs: () => lines.join("\n"),
    get,
    status: async () => JSON.parse((await get("/status")).text) as RelayStatus,
    conninfo(extra: Record<string, string | number> = {}): string {
      const kv = { host: "127.0.0.1", port: relay.port, user: "postgres", ...extra };
      return Object.entries(kv).map(([k, v]) => `${k}=${v}`).join(" ");
    },
    async [Symbol.asyncDispose]() {
      await http.close();
      relay.close();
      await relay.finished;
      await relay.slots.flush().catch(() => {});
    },
  };
}

/** Reads a streaming client's messages until XLogData carrying WAL up to `end` has arrived. */
export async function receiveUntil(client: PgClient, end: bigint): Promise<void> {
  while (true) {
    const msg = await client.next();
    if (msg.type !== "d" || msg.body[0] !== 0x77) continue; // 'w'
    const view = new DataView(msg.body.buffer, msg.body.byteOffset, msg.body.byteLength);
    if (view.getBigUint64(1) + BigInt(msg.body.length - 25) >= end) return;
  }
}
