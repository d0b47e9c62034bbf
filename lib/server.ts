/**
 * The relay server: accepts replication connections and runs a session for each, over one shared
 * WAL store, sender registry and slot manager.
 *
 * @module
 */

import { WalBlockCache, type WalBlockCacheStats } from "./stream/block_cache.ts";
import { createLogger, type Logger } from "./log.ts";
import { SenderRegistry } from "./replication/registry.ts";
import { Session, type SessionContext } from "./replication/session.ts";
import { createRunBuffers } from "./replication/streaming.ts";
import type { BufferPool } from "./stream/chunk.ts";
import { SlotManager } from "./replication/slots.ts";
import { WalStore } from "./wal/store.ts";
import { type AuthConfig, createAuthenticator, loadAuthConfig } from "./auth/authenticator.ts";
import { TlsBridge } from "./pgwire/tls_bridge.ts";
import { RelayCounters } from "./http/counters.ts";
import { ReplicationLag } from "./replication/lag_tracker.ts";
import { followUpstream, type UpstreamReceiver } from "./upstream/receiver.ts";
import { UpstreamConfigError } from "./upstream/config_error.ts";
import { oldestFeedback } from "./upstream/feedback.ts";
import type { Lsn } from "./wal/lsn.ts";
import { refuseTooManyClients } from "./replication/too_many_clients.ts";
import { reusePortAvailable, SenderWorkers } from "./workers/sender_workers.ts";
import { DEFAULTS } from "./defaults.ts";
import { startStatusServer, type StatusServer } from "./http/status_server.ts";
import { upstreamProvider } from "./upstream/status_provider.ts";
import { NotYetAccepting } from "./replication/not_yet_accepting.ts";
import { checkRelayOptions, type RelaySettings, type WalRelayOptions } from "./relay_options.ts";

export type { WalRelayOptions } from "./relay_options.ts";
import { BackupService } from "./backup/service.ts";
import { upstreamTaker } from "./backup/upstream_backup.ts";
import { RescanScheduler } from "./wal/_rescan_scheduler.ts";

/** The older of two LSNs either of which may be absent. */
function oldestLsn(a: Lsn | undefined, b: Lsn | undefined): Lsn | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a < b ? a : b;
}

/** Closes a listener that may be closed already. */
function closeQuietly(listener: Deno.Listener): void {
  try {
    listener.close();
  } catch { /* already closed */ }
}

/**
 * Relay mode with sender workers: the relay's own thread serves no client, so only the workers
 * keep recent WAL in memory.
 */
function relayTail(settings: RelaySettings): { memoryTail?: number } {
  return settings.workers > 1 ? { memoryTail: 0 } : {};
}

/**
 * Relay mode: the store of a directory that holds WAL already, served while the upstream is being
 * reached; `undefined` when no segment gives the identity yet (a new directory, or only a
 * zero-filled `.partial`). Anything else wrong with it shows when it is opened again later.
 */
async function openIfHoldsWal(
  dir: string,
  logger: Logger,
  settings: RelaySettings,
): Promise<WalStore | undefined> {
  try {
    return await WalStore.open(dir, {
      log: (m) => logger.log("warn", m),
      cacheSize: settings.cacheSize,
      ...relayTail(settings),
    });
  } catch (e) {
    logger.log("debug", `no WAL to serve yet: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * A running relay. Start it with {@linkcode WalRelay.start}; stop it with
 * {@linkcode WalRelay.shutdown} (graceful: every client gets all WAL up to the end first).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { silentLogger } from "./log.ts";
 * import { WalRelay } from "./server.ts";
 * await using relay = await WalRelay.start({ walDir: "testdata/wal", port: 0, logger: silentLogger });
 * assert.equal(relay.store.timeline, 2);
 * assert.ok(relay.port > 0);
 * ```
 */
export class WalRelay {
  /** The senders. */
  readonly registry: SenderRegistry;
  /** The replication slots. */
  readonly slots: SlotManager;
  /** Log lines. */
  readonly logger: Logger;
  /** Replication lag as `pg_stat_replication` computes it, fed by the sessions. */
  readonly lag: ReplicationLag;
  /** Connection, error and byte counters for `/metrics`. */
  readonly counters: RelayCounters;
  /** The upstream receiver, in relay mode. */
  upstream: UpstreamReceiver | undefined;
  /** The HTTP status server, when the `http` option asked for one. */
  http: StatusServer | undefined;
  /** The base backups served by BASE_BACKUP. */
  backups: BackupService | undefined;

  #store: WalStore | undefined;
  #ctx: SessionContext | undefined;
  #serving = Promise.withResolvers<void>();
  /** With one worker: the replication listener, served on this thread. */
  #listener: Deno.Listener | undefined;
  /** With more: the sender threads, each listening on the same address. */
  #workers: SenderWorkers | undefined;
  #sessions = new Set<{ close(): void; beginShutdown(): void }>();
  #shutdown = new AbortController();
  #done: Promise<void>;
  #failure: Error | undefined;
  #timers: ReturnType<typeof setInterval>[] = [];
  /** Runs the rescans events and the timer ask for. */
  #rescans: RescanScheduler | undefined;
  #watching: Promise<void> = Promise.resolve();
  #auth: AuthConfig;
  #maxConnections: number;
  #tls: TlsBridge | undefined;
  #options: WalRelayOptions;
  #settings: RelaySettings;

  private constructor(
    listen: { listener: Deno.Listener; workers?: undefined } | {
      listener?: undefined;
      workers: SenderWorkers;
    },
    lag: ReplicationLag,
    slots: SlotManager,
    options: WalRelayOptions,
    settings: RelaySettings,
    logger: Logger,
    tls: TlsBridge | undefined,
    counters: RelayCounters,
  ) {
    this.counters = counters;
    this.#auth = settings.auth;
    this.#options = options;
    this.#settings = settings;
    this.#tls = tls;
    this.#maxConnections = settings.maxConnections;
    this.#listener = listen.listener;
    this.#workers = listen.workers;
    this.lag = lag;
    this.slots = slots;
    this.logger = logger;
    this.registry = listen.workers?.registry ?? new SenderRegistry(settings.maxSenders);
    this.#serving.promise.catch(() => {});
    this.#done = listen.workers?.finished ?? this.#acceptLoop();
  }

  /**
   * The WAL store served. In relay mode on an empty directory it opens once the upstream's first
   * WAL is durable there (see {@linkcode WalRelay.serving}); until then this throws.
   */
  get store(): WalStore {
    if (!this.#store) {
      throw new Error(
        `the WAL store "${this.#settings.walDir}" is not open yet: no WAL from the upstream`,
      );
    }
    return this.#store;
  }

  /**
   * The WAL blocks the senders share, once serving (for `/status` and `/metrics`); with sender
   * workers, theirs added up.
   */
  get blockCache(): { readonly stats: WalBlockCacheStats } | undefined {
    if (!this.#workers) return this.#ctx?.blockCache;
    const stats = this.#workers.blockCacheStats;
    return stats ? { stats } : undefined;
  }

  /**
   * The run buffers this thread's senders share, once serving; `undefined` with sender workers,
   * whose threads have their own.
   */
  get runBuffers(): BufferPool | undefined {
    return this.#workers ? undefined : this.#ctx?.runBuffers;
  }

  /**
   * With sender workers, their decoded-segment caches added up; without, `undefined` (the
   * store's own is the one).
   */
  get archiveCache(): WalStore["archiveCache"] | undefined {
    return this.#workers?.archiveCacheStats;
  }

  /**
   * Resolves once the store is open and replication clients are served: at once, except in relay
   * mode on an empty directory, where clients are refused until the upstream's first WAL is
   * durable. Rejects when the relay stops before that.
   */
  get serving(): Promise<void> {
    return this.#serving.promise;
  }

  /**
   * Serves `store` from now on: sessions, the periodic rescan, watching the directory and the
   * upstream's announcements.
   */
  async #serve(store: WalStore): Promise<void> {
    this.#store = store;
    // The sender threads open the store now, bounded by its durable end, then follow each
    // advance the writer announces.
    await this.#workers?.serve(store);
    await this.upstream?.attach(this.#workers?.sink(store) ?? store);
    const settings = this.#settings;
    const rescans = this.#rescans = new RescanScheduler(store, {
      onError: (e) => this.logger.log("warn", `could not rescan WAL directory: ${e.message}`),
    });
    this.#timers.push(setInterval(() => rescans.rescan(), settings.rescanMs));
    // In relay mode the writer announces each durable advance itself; watching the directory it
    // writes into would only rescan on every write. The periodic rescan stays as a safety net.
    if (settings.watch) {
      this.#watching = rescans.watch(store.dir, store.layout, (e) => {
        this.logger.log("warn", `watching the WAL directory failed: ${e.message}`);
      });
    }
    this.#ctx = {
      store,
      registry: this.registry,
      slots: this.slots,
      log: this.logger,
      shutdown: this.#shutdown.signal,
      timeouts: settings.timeouts,
      tls: this.#tls,
      lag: this.lag,
      blockCache: new WalBlockCache(),
      runBuffers: createRunBuffers(),
      backups: this.backups,
      authenticate: this.#options.authenticate ??
        createAuthenticator(() => this.#auth, crypto.getRandomValues(new Uint8Array(32))),
    };
    this.#serving.resolve();
  }

  /**
   * The status server, from the start: until the store opens it answers liveness and says why
   * the relay is not ready.
   */
  async #startHttp(): Promise<void> {
    const settings = this.#settings;
    if (!settings.http) return;
    try {
      this.http = await startStatusServer({
        hostname: settings.http.hostname,
        port: settings.http.port,
        relay: this,
        lag: this.lag,
        counters: this.counters,
        readyMaxLagSeconds: settings.http.readyMaxLagSeconds,
        access: settings.http.access,
        tls: settings.http.tls,
        upstream: this.upstream ? upstreamProvider(this.upstream) : undefined,
      });
    } catch (e) {
      throw new Error(
        `could not start the status server on ${settings.http.hostname}:${settings.http.port}: ${
          (e as Error).message
        }`,
        { cause: e },
      );
    }
  }

  /**
   * Relay mode on an empty directory: opens the store once the upstream's first WAL is durable.
   * A configuration error found on the first contact (another system's directory, unusable TLS
   * files) stops the relay, as it did when it was found before listening.
   */
  async #serveWhenReady(upstream: UpstreamReceiver): Promise<void> {
    try {
      await upstream.ready;
      if (this.#shutdown.signal.aborted) return;
      const store = await WalStore.open(this.#settings.walDir, {
        log: (m) => this.logger.log("warn", m),
        cacheSize: this.#settings.cacheSize,
        ...relayTail(this.#settings),
      });
      if (this.#shutdown.signal.aborted) return;
      await this.#serve(store);
      this.#logListening();
    } catch (e) {
      if (!this.#shutdown.signal.aborted) this.#fail(e as Error);
    } finally {
      this.#serving.reject(new Error("the relay stopped before it had WAL to serve"));
    }
  }

  /** A failure the relay cannot go on from: close everything; {@linkcode finished} rejects. */
  #fail(e: Error): void {
    this.#failure = e;
    this.#serving.reject(e);
    if (!(e instanceof UpstreamConfigError)) {
      this.logger.log("error", e.message); // the receiver logged its own
    }
    this.close();
  }

  #logListening(): void {
    const store = this.#store;
    this.logger.log(
      "info",
      store ? "listening for replication connections" : "listening, waiting for WAL from upstream",
      {
        address: `${this.hostname}:${this.port}`,
        workers: this.#workers ? this.#settings.workers : undefined,
        wal_dir: this.#settings.walDir,
        system_identifier: store?.identity.systemId.toString(),
        timeline: store?.timeline,
      },
    );
  }

  /**
   * Checks the options, then opens the WAL directory, loads slots and starts listening. Every
   * option is checked and every file read before a port is bound or the upstream is contacted;
   * when a later step fails (a port in use, say), what was acquired is released before the
   * error is thrown.
   *
   * Relay mode listens at once. With WAL in the directory it serves it while the upstream is
   * being reached; an empty directory answers connections with PostgreSQL's
   * `the database system is not yet accepting connections` until the upstream's first WAL is
   * durable (see {@linkcode WalRelay.serving}).
   */
  static async start(options: WalRelayOptions): Promise<WalRelay> {
    const settings = await checkRelayOptions(options);
    const counters = new RelayCounters();
    // Sessions log every connection, error (with its SQLSTATE) and disconnection; the counters
    // are fed from those lines.
    const logger = counters.tap(options.logger ?? createLogger());
    if (settings.workers > 1 && !reusePortAvailable()) {
      logger.log(
        "warn",
        `serving on 1 thread instead of ${settings.workers}: sender workers need Deno.listen({ reusePort: true }), which needs --unstable-net`,
      );
      settings.workers = 1;
    }
    // The sessions, and the sender threads' reports, record every standby reply themselves.
    const lag = new ReplicationLag({ direct: true });
    // Released newest first unless ownership passes to the relay at the end.
    await using acquired = new AsyncDisposableStack();
    // The TLS bridge listens on an ephemeral loopback port only; starting it first proves the
    // certificate and key usable before the public port is bound.
    const tls = settings.tls
      ? acquired.adopt(await TlsBridge.start(settings.tls), (b) => b.close())
      : undefined;
    // Relay mode: the directory may be empty; then the store opens once the receiver has written
    // the first segment's long header, from which the store reads the identity.
    const store = options.upstream
      ? await openIfHoldsWal(settings.walDir, logger, settings)
      : await WalStore.open(settings.walDir, {
        log: (m) => logger.log("warn", m),
        cacheSize: settings.cacheSize,
      });
    const slots = await SlotManager.load(settings.walDir);
    const backups = await BackupService.open({
      walDir: settings.walDir,
      log: logger,
      maxAgeMs: options.baseBackups?.maxAgeMs ?? DEFAULTS.baseBackupMaxAgeMs,
      keep: options.baseBackups?.keep ?? DEFAULTS.baseBackupsKeep,
      intervalMs: options.baseBackups?.intervalMs,
      ready: () => relay.#store !== undefined,
      take: options.upstream
        ? upstreamTaker({
          conninfo: options.upstream.conninfo,
          log: logger,
          maxRateKb: options.baseBackups?.maxRateKb,
          holdsWalFrom: (lsn, tli) => relay.#holdsWalFrom(lsn, tli),
        })
        : undefined,
    });
    acquired.defer(() => backups.close());
    const listen = settings.workers > 1
      ? {
        workers: acquired.adopt(
          await SenderWorkers.start({
            count: settings.workers,
            init: {
              walDir: settings.walDir,
              hostname: settings.hostname,
              port: settings.port,
              maxSenders: settings.maxSenders,
              maxConnections: settings.maxConnections,
              timeouts: settings.timeouts,
              rescanMs: settings.rescanMs,
              watch: settings.watch,
              cacheSize: settings.cacheSize,
              tls: settings.tls,
              auth: settings.auth,
              relay: options.upstream !== undefined,
            },
            logger,
            counters,
            lag,
            slots,
            backups,
            onFailure: (e) => relay.#fail(e),
          }),
          (w) => {
            w.close();
            return w.finished;
          },
        ),
      }
      : {
        listener: acquired.adopt(
          Deno.listen({ hostname: settings.hostname, port: settings.port }),
          closeQuietly,
        ),
      };
    const relay = new WalRelay(listen, lag, slots, options, settings, logger, tls, counters);
    acquired.defer(() => relay.#abandon());
    relay.backups = backups;
    relay.upstream = options.upstream
      ? acquired.adopt(
        followUpstream({
          dir: settings.walDir,
          conninfo: options.upstream.conninfo,
          slot: options.upstream.slot,
          createSlot: options.upstream.createSlot,
          start: options.upstream.start,
          retainBytes: options.upstream.retainBytes,
          compress: options.upstream.compress,
          logger,
          protectedLsn: () =>
            oldestLsn(relay.slots.oldestRestartLsn(), relay.backups?.oldestStartLsn()),
          clampSlots: (lsn, tli) => relay.slots.clamp(lsn, tli),
          feedback: () => oldestFeedback(relay.registry.list()),
        }),
        (u) => u.close(),
      )
      : undefined;
    if (store) await relay.#serve(store);
    // Sender threads take connections only once the status server answers, so a client the
    // port answers can read `/status` at once.
    await relay.#startHttp();
    relay.#workers?.accept();
    acquired.move();
    if (relay.upstream && !store) {
      relay.#serveWhenReady(relay.upstream);
    } else if (relay.upstream) {
      // Already serving: a configuration error on the first contact still stops the relay.
      relay.upstream.ready.catch((e) => {
        if (e instanceof UpstreamConfigError && !relay.#shutdown.signal.aborted) relay.#fail(e);
      });
    }
    relay.#logListening();
    if (relay.http) logger.log("info", "status server listening", { url: relay.http.url });
    return relay;
  }

  /**
   * Whether the store's WAL on `tli` begins at or before `lsn` (the start of a backup, say); WAL
   * after the end it holds so far is still to come from the upstream.
   */
  #holdsWalFrom(lsn: Lsn, tli: number): boolean {
    const store = this.#store;
    if (!store) return false;
    const first = store.segments(tli)[0];
    if (!first) return tli > store.timeline;
    return first.segno <= lsn / BigInt(store.identity.segmentSize);
  }

  /** The port listened on. */
  get port(): number {
    return this.#listener
      ? (this.#listener.addr as Deno.NetAddr).port
      : this.#workers!.address.port;
  }

  /** The address listened on. */
  get hostname(): string {
    return this.#listener
      ? (this.#listener.addr as Deno.NetAddr).hostname
      : this.#workers!.address.hostname;
  }

  /**
   * Resolves when the relay has stopped; rejects when it stopped on a failure it could not go on
   * from (in relay mode: a configuration error found on the first contact with the upstream).
   */
  get finished(): Promise<void> {
    return this.#done.then(() => {
      if (this.#failure) throw this.#failure;
    });
  }

  async #acceptLoop(): Promise<void> {
    const running = new Set<Promise<void>>();
    try {
      for await (const conn of this.#listener!) {
        try {
          (conn as Deno.TcpConn).setNoDelay(true);
        } catch { /* not TCP */ }
        this.counters.connectionAccepted();
        if (this.#sessions.size >= this.#maxConnections) {
          refuseTooManyClients(conn, this.logger);
          continue;
        }
        const ctx = this.#ctx;
        const session = ctx ? new Session(conn, ctx) : new NotYetAccepting(conn, {
          tls: this.#tls,
          timeoutMs: this.#settings.timeouts.authentication,
          log: this.logger,
        });
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

  /** Asks the store to rescan now (after writing WAL into the directory, say). */
  async refresh(): Promise<void> {
    await this.#store?.refresh();
    await this.#workers?.refresh();
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
      this.#workers?.setAuth(this.#auth);
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
      await this.#store?.refresh().catch(() => {});
      for (const s of this.#sessions) s.beginShutdown();
      this.#workers?.shutdown();
    }
    const grace = options.graceMs ?? DEFAULTS.shutdownGraceMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const s of this.#sessions) s.close();
        this.#workers?.close();
        resolve();
      }, grace);
    });
    await Promise.race([this.#done, expired]);
    await this.#done;
    clearTimeout(timer);
    this.#tls?.close();
    await this.#watching;
    await this.slots.flush().catch(() => {});
    // Last, so the dashboard shows the drain to the end.
    await this.http?.close();
  }

  /** No new clients, no more rescans. */
  #stopAccepting(): void {
    this.backups?.close();
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    for (const t of this.#timers) clearInterval(t);
    this.#rescans?.stop();
  }

  /** Closes every connection at once (the second signal). */
  close(): void {
    this.#shutdown.abort();
    this.upstream?.close().catch(() => {});
    this.#stopAccepting();
    for (const s of this.#sessions) s.close();
    this.#workers?.close();
    this.#tls?.close();
    this.http?.close().catch(() => {});
  }

  /**
   * Undoes the constructor when {@linkcode WalRelay.start} fails after it: stops the accept loop,
   * timers and watcher, and waits until they have let go. The listener, TLS bridge and upstream
   * are released by `start` itself.
   */
  async #abandon(): Promise<void> {
    this.#shutdown.abort();
    this.#stopAccepting();
    for (const s of this.#sessions) s.close();
    this.#workers?.close();
    await this.#done;
    await this.#watching;
  }

  /** Graceful shutdown, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ graceMs: 5000 });
  }
}
