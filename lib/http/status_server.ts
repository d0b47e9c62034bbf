/**
 * `--http HOST:PORT`: the relay's HTTP status server. `/` the live dashboard, `/status` JSON,
 * `/history` the sampled lags and throughput, `/metrics` Prometheus text, `/healthz` readiness
 * (`/healthz/live` liveness, `/healthz/ready` the same as `/healthz`), `/wal/<file>` WAL segments
 * and history files for `restore_command`. Who may ask is for {@linkcode HttpAccess} to say.
 *
 * @module
 */

import { DEFAULTS } from "../defaults.ts";
import { ReplicationLag } from "../replication/lag_tracker.ts";
import type { Sender } from "../replication/registry.ts";
import { RelayCounters } from "./counters.ts";
import { DASHBOARD_HTML } from "./dashboard.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { HttpAccess } from "./access.ts";
import { WalFiles } from "./wal_files.ts";
import { StatusModel, type StatusSource, type UpstreamProvider } from "./status.ts";

/** Options of {@linkcode startStatusServer}. */
export interface StatusServerOptions {
  /** Listen address. Default `127.0.0.1`. */
  hostname?: string;
  /** Listen port; 0 picks a free one. */
  port: number;
  /** The relay (a `WalRelay`, or anything with its store, registry and slots). */
  relay: StatusSource;
  /** The upstream link, in relay mode. */
  upstream?: UpstreamProvider | undefined;
  /**
   * The lag tracker the sessions feed. Default: a new one fed by watching the store and
   * polling the senders.
   */
  lag?: ReplicationLag | undefined;
  /** The counters the relay feeds. Default: new ones (only what polling sees is counted). */
  counters?: RelayCounters | undefined;
  /** Readiness: the most upstream lag, in seconds, that still counts as ready. Default 60. */
  readyMaxLagSeconds?: number;
  /** Sampling interval for rates and charts, ms. Default 1000. */
  sampleMs?: number;
  /** Samples kept for the charts. Default 600 (ten minutes at one a second). */
  historyLength?: number;
  /** Where a sender's WAL comes from; default its `source` field, else `disk`. */
  sourceOf?: (s: Sender) => "memory" | "disk";
  /** Who may ask what. Default: loopback clients only. */
  access?: HttpAccess | undefined;
  /** Serve HTTPS with this certificate and key (PEM text). */
  tls?: { cert: string; key: string } | undefined;
}

/** The outcome of a readiness check. */
export interface Health {
  /** Whether the relay serves requests at all (always, while the server answers). */
  live: boolean;
  /** Whether the relay is fit to serve clients. */
  ready: boolean;
  /** Why not, when not. */
  reasons: string[];
}

/** A running status server. */
export interface StatusServer extends AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:9433/`. */
  readonly url: string;
  /** Port listened on. */
  readonly port: number;
  /** Address listened on. */
  readonly hostname: string;
  /** The model behind the pages (snapshot, history). */
  readonly model: StatusModel;
  /** The lag tracker in use. */
  readonly lag: ReplicationLag;
  /** The counters in use. */
  readonly counters: RelayCounters;
  /** `/wal/`, with its requests counted by outcome. */
  readonly walFiles: WalFiles;
  /** Readiness and liveness now. */
  health(): Promise<Health>;
  /** Stops serving and sampling. */
  close(): Promise<void>;
}

/**
 * Starts the HTTP status server beside a relay.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { silentLogger } from "../log.ts";
 * import { WalRelay } from "../server.ts";
 * import { startStatusServer } from "./status_server.ts";
 * await using relay = await WalRelay.start({ walDir: "testdata/wal", port: 0, logger: silentLogger });
 * await using http = await startStatusServer({ port: 0, relay });
 * const status = await (await fetch(new URL("status", http.url))).json();
 * assert.equal(status.store.timeline, 2);
 * ```
 */
export function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const { relay, upstream } = options;
  const lag = options.lag ?? new ReplicationLag();
  const counters = options.counters ?? new RelayCounters();
  const model = new StatusModel(relay, {
    lag,
    counters,
    upstream,
    ...(options.historyLength === undefined ? {} : { historyLength: options.historyLength }),
    ...(options.sourceOf === undefined ? {} : { sourceOf: options.sourceOf }),
  });
  const maxLag = options.readyMaxLagSeconds ?? DEFAULTS.readyMaxLagSeconds;
  const stop = new AbortController();
  // Relay mode on an empty directory: no store until the upstream's first WAL is durable. The
  // server answers meanwhile (liveness, readiness); the pages built from the store wait.
  let storeOpen = false;
  const opened = (relay.serving ?? Promise.resolve()).then(() => {
    storeOpen = true;
    model.sample();
    return true;
  }, () => false);
  const notYet = (): Response =>
    json({ status: "not ready", reasons: ["no WAL received from the upstream yet"] }, 503);

  const health = async (): Promise<Health> => {
    const reasons: string[] = [];
    if (!storeOpen) reasons.push("no WAL received from the upstream yet");
    if (upstream) {
      const u = upstream.status();
      // A full disk or a failed fdatasync: what the relay serves no longer advances.
      if (u.storeError) reasons.push(`WAL cannot be written: ${u.storeError}`);
      if (!u.connected) reasons.push(`upstream not connected (${u.state})`);
      else if (u.lagSeconds !== undefined && u.lagSeconds > maxLag) {
        reasons.push(`upstream lag ${u.lagSeconds.toFixed(1)} s exceeds ${maxLag} s`);
      }
    } else {
      try {
        for await (const _ of Deno.readDir(relay.store.dir)) break;
      } catch (e) {
        reasons.push(`WAL directory not readable: ${(e as Error).message}`);
      }
    }
    return { live: true, ready: reasons.length === 0, reasons };
  };

  const json = (body: unknown, status = 200): Response =>
    new Response(JSON.stringify(body, null, 2) + "\n", {
      status,
      headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
    });

  const access = options.access ?? new HttpAccess();
  const walFiles = new WalFiles(() => relay.store, stop.signal);

  const handler = async (req: Request, info: Deno.ServeHandlerInfo): Promise<Response> => {
    const rawPath = new URL(req.url).pathname;
    const path = rawPath.replace(/\/+$/, "") || "/";
    const isWal = rawPath.startsWith("/wal/");
    const verdict = await access.check(
      rawPath,
      (info.remoteAddr as Deno.NetAddr).hostname,
      req.headers.get("authorization"),
    );
    if (!verdict.allowed) {
      if (isWal) walFiles.count("denied");
      return new Response(verdict.reason + "\n", {
        status: verdict.status,
        headers: {
          "content-type": "text/plain; charset=utf-8",
          ...(verdict.status === 401 ? { "www-authenticate": 'Bearer realm="walrelay"' } : {}),
        },
      });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    if (isWal) return walFiles.handle(rawPath.slice("/wal/".length), req.method as "GET" | "HEAD");
    switch (path) {
      case "/":
        return new Response(DASHBOARD_HTML, {
          headers: {
            "content-type": "text/html; charset=utf-8",
            "cache-control": "no-store",
            // Everything is inline; nothing may be loaded from elsewhere.
            "content-security-policy":
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
              "img-src data:; connect-src 'self'",
          },
        });
      case "/status":
        return storeOpen ? json(model.snapshot()) : notYet();
      case "/history":
        return json(model.history());
      case "/metrics":
        if (!storeOpen) return notYet();
        return new Response(renderMetrics(model.snapshot(), walFiles.requests), {
          headers: { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" },
        });
      case "/healthz":
      case "/healthz/ready": {
        const h = await health();
        return json({ status: h.ready ? "ok" : "not ready", ...h }, h.ready ? 200 : 503);
      }
      case "/healthz/live":
        return json({ status: "ok", live: true });
      default:
        return new Response("not found\n", { status: 404 });
    }
  };

  const server = Deno.serve({
    hostname: options.hostname ?? DEFAULTS.httpHostname,
    port: options.port,
    signal: stop.signal,
    onListen: () => {},
    ...(options.tls ?? {}),
  }, handler);
  // Started once listening succeeded, so a taken port leaves nothing running.
  const observing = opened.then((open) =>
    open && !stop.signal.aborted ? lag.observe(relay, stop.signal) : undefined
  );
  const sampler = setInterval(() => storeOpen && model.sample(), options.sampleMs ?? 1000);
  const addr = server.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    closed ??= (async () => {
      clearInterval(sampler);
      stop.abort();
      await server.finished;
      await observing;
    })();
  return Promise.resolve({
    url: `${options.tls ? "https" : "http"}://${host}:${addr.port}/`,
    port: addr.port,
    hostname: addr.hostname,
    model,
    lag,
    counters,
    walFiles,
    health,
    close,
    [Symbol.asyncDispose]: close,
  });
}
