/**
 * The relay server: accepts replication connections and runs a session for each, over one shared
 * WAL store, sender registry and slot manager.
 *
 * @module
 */

import { createLogger, type Logger } from "./log.ts";
import { SenderRegistry } from "./replication/registry.ts";
import {
  type Authenticator,
  Session,
  type SessionContext,
  type SessionTimeouts,
} from "./replication/session.ts";
import { SlotManager } from "./replication/slots.ts";
import { WalStore } from "./wal/store.ts";
import { type AuthConfig, createAuthenticator, loadAuthConfig } from "./auth/authenticator.ts";
import { TlsBridge } from "./pgwire/tls_bridge.ts";
import { RelayCounters } from "./http/counters.ts";
import { ReplicationLag } from "./replication/lag_tracker.ts";
import { startUpstream, type UpstreamReceiver } from "./upstream/receiver.ts";
import { oldestFeedback } from "./upstream/feedback.ts";
import type { Lsn } from "./wal/lsn.ts";
import { PgError, SqlState } from "./pgwire/error.ts";
import { errorResponse } from "./pgwire/messages.ts";

/** Options of {@linkcode WalRelay.start}. */
export interface WalRelayOptions {
  /** The directory of WAL segment files to serve. */
  walDir: string;
  /** Listen address. Default `127.0.0.1`. */
  hostname?: string;
  /** Listen port; 0 picks a free one. Default 5433. */
  port?: number;
  /** `max_wal_senders`. Default 10. */
  maxSenders?: number;
  /**
   * Connections at once in any state, authenticating ones included (`max_connections`); more get
   * FATAL 53300 at once. Default `maxSenders + 10`, so idle sockets cannot crowd out senders.
   */
  maxConnections?: number;
  /** Where log lines go. Default: text on stderr. */
  logger?: Logger;
  /**
   * How clients are authenticated. Default: the `hbaFile` and `passwordsFile` rules, or without
   * them loopback clients trusted and everyone else refused.
   */
  authenticate?: Authenticator;
  /** A `pg_hba.conf`-style file of replication rules; reread by {@linkcode WalRelay.reload}. */
  hbaFile?: string;
  /** A `user:verifier` file (verifiers as `pg_authid.rolpassword` stores them). */
  passwordsFile?: string;
  /** Server certificate (PEM file); with `tlsKeyFile`, SSLRequest is answered `S`. */
  tlsCertFile?: string;
  /** Server private key (PEM file). */
  tlsKeyFile?: string;
  /**
   * Relay mode: follow this upstream (a primary or another relay) as a replication client,
   * write its WAL durably into `walDir`, and serve it.
   */
  upstream?: {
    /** libpq conninfo or `postgres://` URL; `PG*` variables and `~/.pgpass` apply. */
    conninfo: string;
    /** Stream through this physical slot on the upstream. */
    slot?: string;
    /** Create the slot on the upstream when it does not exist. */
    createSlot?: boolean;
    /** Where to start in an empty directory (rounded down to a segment start). */
    start?: Lsn;
    /** Remove the oldest complete segments beyond this many bytes (never ones a slot needs). */
    retainBytes?: number;
  };
  /** Session timeouts in milliseconds. */
  timeouts?: Partial<SessionTimeouts>;
  /**
   * How often the directory is rescanned as a safety net beside file watching. Default 1000 ms;
   * 10000 ms in relay mode, where the writer announces every durable advance itself.
   */
  rescanMs?: number;
  /** Whether to watch the directory with `Deno.watchFs`. Default: true, except in relay mode. */
  watch?: boolean;
}

/**
 * A running relay. Start it with {@linkcode WalRelay.start}; stop it with
 * {@linkcode WalRelay.shutdown} (graceful: every client gets all WAL up to the end first).
 *
 * @example
 * ```ts ignore
 * import { WalRelay } from "./server.ts";
 * await using relay = await WalRelay.start({ walDir: "testdata/wal", port: 0 });
 * console.log(relay.port);
 * ```
 */
export class WalRelay {
  /** The WAL store served. */
  readonly store: WalStore;
  /** The senders. */
  readonly registry: SenderRegistry;
  /** The replication slots. */
  readonly slots: SlotManager;
  /** Log lines. */
  readonly logger: Logger;
  /** Replication lag as `pg_stat_replication` computes it, fed by the sessions. */
  readonly lag: ReplicationLag = new ReplicationLag();
  /** Connection, error and byte counters for `/metrics`. */
  readonly counters: RelayCounters;
  /** The upstream receiver, in relay mode. */
  upstream: UpstreamReceiver | undefined;

  #listener: Deno.Listener;
  #sessions = new Set<Session>();
  #shutdown = new AbortController();
  #done: Promise<void>;
  #timers: ReturnType<typeof setInterval>[] = [];
  #watcher: Deno.FsWatcher | undefined;
  #auth: AuthConfig;
  #maxConnections: number;
  #tls: TlsBridge | undefined;
  #options: WalRelayOptions;

  private constructor(
    listener: Deno.Listener,
    store: WalStore,
    slots: SlotManager,
    options: WalRelayOptions,
    logger: Logger,
    auth: AuthConfig,
    tls: TlsBridge | undefined,
    counters: RelayCounters,
  ) {
    this.counters = counters;
    this.#auth = auth;
    this.#options = options;
    this.#tls = tls;
    this.#maxConnections = options.maxConnections ?? (options.maxSenders ?? 10) + 10;
    this.#listener = listener;
    this.store = store;
    this.slots = slots;
    this.logger = logger;
    this.registry = new SenderRegistry(options.maxSenders ?? 10);
    const ctx: SessionContext = {
      store,
      registry: this.registry,
      slots,
      log: logger,
      shutdown: this.#shutdown.signal,
      timeouts: {
        authentication: options.timeouts?.authentication ?? 60_000,
        sender: options.timeouts?.sender ?? 60_000,
        keepalive: options.timeouts?.keepalive ?? 10_000,
        progressLog: options.timeouts?.progressLog ?? 10_000,
      },
      tls,
      lag: this.lag,
      authenticate: options.authenticate ??
        createAuthenticator(() => this.#auth, crypto.getRandomValues(new Uint8Array(32))),
    };
    this.#done = this.#acceptLoop(ctx);
    const rescan = setInterval(
      () => this.#refresh(),
      options.rescanMs ?? (options.upstream ? 10_000 : 1000),
    );
    this.#timers.push(rescan);
    // In relay mode the writer announces each durable advance itself; watching the directory it
    // writes into would only rescan on every write. The periodic rescan stays as a safety net.
    if (options.watch ?? !options.upstream) this.#watch();
  }

  /** Opens the WAL directory, loads slots and starts listening. */
  static async start(options: WalRelayOptions): Promise<WalRelay> {
    const counters = new RelayCounters();
    // Sessions log every connection, error (with its SQLSTATE) and disconnection; the counters
    // are fed from those lines.
    const logger = counters.tap(options.logger ?? createLogger());
    // Relay mode: the receiver starts first; in an empty directory it waits until the first
    // segment's long header is on disk, so the store can read the identity from it.
    const ref: { relay?: WalRelay } = {};
    const upstream = options.upstream
      ? await startUpstream({
        dir: options.walDir,
        conninfo: options.upstream.conninfo,
        slot: options.upstream.slot,
        createSlot: options.upstream.createSlot,
        start: options.upstream.start,
        retainBytes: options.upstream.retainBytes,
        logger,
        protectedLsn: () => ref.relay?.slots.oldestRestartLsn(),
        feedback: () => ref.relay && oldestFeedback(ref.relay.registry.list()),
      })
      : undefined;
    let store: WalStore;
    try {
      store = await WalStore.open(options.walDir, {
        log: (m) => logger.log("warn", m),
      });
    } catch (e) {
      await upstream?.close();
      throw e;
    }
    const slots = await SlotManager.load(options.walDir);
    const auth = await loadAuthConfig({ hba: options.hbaFile, passwords: options.passwordsFile });
    const listener = Deno.listen({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? 5433,
    });
    if ((options.tlsCertFile === undefined) !== (options.tlsKeyFile === undefined)) {
      throw new Error("a TLS certificate and key go together: give both or neither");
    }
    const tls = options.tlsCertFile && options.tlsKeyFile
      ? await TlsBridge.start({
        cert: await Deno.readTextFile(options.tlsCertFile),
        key: await Deno.readTextFile(options.tlsKeyFile),
      })
      : undefined;
    const relay = new WalRelay(listener, store, slots, options, logger, auth, tls, counters);
    ref.relay = relay;
    relay.upstream = upstream;
    await upstream?.attach(store);
    const addr = listener.addr as Deno.NetAddr;
    logger.log("info", "listening for replication connections", {
      address: `${addr.hostname}:${addr.port}`,
      wal_dir: options.walDir,
      system_identifier: store.identity.systemId.toString(),
      timeline: store.timeline,
    });
    return relay;
  }

  /** The port listened on. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** The address listened on. */
  get hostname(): string {
    return (this.#listener.addr as Deno.NetAddr).hostname;
  }

  /** Resolves when the relay has stopped. */
  get finished(): Promise<void> {
    return this.#done;
  }

  async #acceptLoop(ctx: SessionContext): Promise<void> {
    const running = new Set<Promise<void>>();
    try {
      for await (const conn of this.#listener) {
        try {
          (conn as Deno.TcpConn).setNoDelay(true);
        } catch { /* not TCP */ }
        this.counters.connectionAccepted();
        if (this.#sessions.size >= this.#maxConnections) {
          this.#refuse(conn);
          continue;
        }
        const session = new Session(conn, ctx);
        this.#sessions.add(session);
        const p = session.run().finally(() => {
          this.#sessions.delete(session);
          running.delete(p);
        });
        running.add(p);
      }
    } catch (e) {
      if (!this.#shutdown.signal.aborted) {
        this.logger.log("error", `accept failed: ${(e as Error).message}`);
      }
    }
    await Promise.allSettled([...running]);
  }

  /** Over the connection cap: PostgreSQL's answer before the startup packet, then close. */
  #refuse(conn: Deno.Conn): void {
    const err = PgError.fatal(SqlState.TOO_MANY_CONNECTIONS, "sorry, too many clients already");
    this.logger.log("warn", err.message, { sqlstate: err.code });
    conn.write(errorResponse(err)).catch(() => {}).finally(() => {
      try {
        conn.close();
      } catch { /* closed */ }
    });
  }

  #refresh(): void {
    this.store.refresh().catch((e) => {
      this.logger.log("warn", `could not rescan WAL directory: ${(e as Error).message}`);
    });
  }

  async #watch(): Promise<void> {
    try {
      this.#watcher = Deno.watchFs(this.store.dir, { recursive: false });
      // Events are hints only: each one triggers a rescan that re-validates from the files.
      for await (const _ of this.#watcher) this.#refresh();
    } catch (e) {
      if (!this.#shutdown.signal.aborted) {
        this.logger.log("warn", `watching the WAL directory failed: ${(e as Error).message}`);
      }
    }
  }

  /** Asks the store to rescan now (after writing WAL into the directory, say). */
  async refresh(): Promise<void> {
    await this.store.refresh();
  }

  /**
   * SIGHUP: rereads the authentication files and rescans the directory. A broken file keeps the
   * rules in force and says why; connected clients are not touched.
   *
   * @returns Whether the new authentication configuration was taken.
   */
  async reload(): Promise<boolean> {
    let ok = true;
    try {
      this.#auth = await loadAuthConfig({
        hba: this.#options.hbaFile,
        passwords: this.#options.passwordsFile,
      });
      this.logger.log("info", "authentication configuration reloaded", {
        hba_rules: this.#auth.rules.length,
        users: this.#auth.passwords.size,
      });
    } catch (e) {
      ok = false;
      this.logger.log(
        "warn",
        `authentication files not reloaded, previous configuration kept: ${(e as Error).message}`,
      );
    }
    await this.refresh().catch((e) =>
      this.logger.log("warn", `could not rescan WAL directory: ${(e as Error).message}`)
    );
    return ok;
  }

  /**
   * Stops the relay. Graceful: stop accepting, send every streaming client all WAL up to the end,
   * wait for it to confirm, end its stream with `COPY 0`, close idle sessions. After `graceMs`
   * the remaining connections are closed regardless.
   */
  async shutdown(options: { graceMs?: number } = {}): Promise<void> {
    if (!this.#shutdown.signal.aborted) {
      this.#shutdown.abort();
      this.logger.log("info", "received shutdown request", { senders: this.registry.size });
      // The upstream stops first, so the end the senders drain to is final.
      await this.upstream?.close().catch(() => {});
      this.#stopAccepting();
      await this.store.refresh().catch(() => {});
      for (const s of this.#sessions) s.beginShutdown();
    }
    const grace = options.graceMs ?? 30_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const s of this.#sessions) s.close();
        resolve();
      }, grace);
    });
    await Promise.race([this.#done, expired]);
    await this.#done;
    clearTimeout(timer);
    this.#tls?.close();
    await this.slots.flush().catch(() => {});
  }

  /** No new clients, no more rescans. */
  #stopAccepting(): void {
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const t of this.#timers) clearInterval(t);
    try {
      this.#watcher?.close();
    } catch { /* already closed */ }
  }

  /** Closes every connection at once (the second signal). */
  close(): void {
    this.#shutdown.abort();
    this.upstream?.close().catch(() => {});
    this.#stopAccepting();
    for (const s of this.#sessions) s.close();
    this.#tls?.close();
  }

  /** Graceful shutdown, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ graceMs: 5000 });
  }
}
