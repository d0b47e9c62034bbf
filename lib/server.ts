/**
 * The relay server: accepts replication connections and runs a session for each, over one shared
 * WAL store, sender registry and slot manager.
 *
 * @module
 */

import { WalBlockCache } from "./stream/block_cache.ts";
import { type CompressFormat, isCompressFormat } from "./archive/compress.ts";
import { createLogger, type Logger } from "./log.ts";
import { SenderRegistry } from "./replication/registry.ts";
import type { Authenticator } from "./auth/contract.ts";
import { Session, type SessionContext, type SessionTimeouts } from "./replication/session.ts";
import { SlotManager } from "./replication/slots.ts";
import { WalStore } from "./wal/store.ts";
import { type AuthConfig, createAuthenticator, loadAuthConfig } from "./auth/authenticator.ts";
import { TlsBridge, type TlsFiles } from "./pgwire/tls_bridge.ts";
import { RelayCounters } from "./http/counters.ts";
import { ReplicationLag } from "./replication/lag_tracker.ts";
import { followUpstream, type UpstreamReceiver } from "./upstream/receiver.ts";
import { UpstreamConfigError } from "./upstream/config_error.ts";
import { oldestFeedback } from "./upstream/feedback.ts";
import type { Lsn } from "./wal/lsn.ts";
import { PgError, SqlState } from "./pgwire/error.ts";
import { errorResponse } from "./pgwire/messages.ts";
import { DEFAULTS } from "./defaults.ts";
import { startStatusServer, type StatusServer } from "./http/status_server.ts";
import { type HttpAccess, isLoopbackHost, loadHttpAccess } from "./http/access.ts";
import { upstreamProvider } from "./upstream/status_provider.ts";
import { ClientConnection } from "./replication/connection.ts";
import { readStartupPacket } from "./replication/startup.ts";
import { osErrorText } from "./upstream/wal_file_error.ts";
import { BackupService, checkBackupSettings } from "./backup/service.ts";
import { upstreamTaker } from "./backup/upstream_backup.ts";

/**
 * A connection before there is WAL to serve (relay mode, an empty directory, the upstream's first
 * WAL not yet durable): answered as a cascading standby answers before it reaches a consistent
 * state, with FATAL 57P03 after the startup packet, so clients retry as they do there.
 */
class NotYetAccepting {
  #client: ClientConnection;
  #options: { tls: TlsBridge | undefined; timeoutMs: number; log: Logger };

  constructor(
    conn: Deno.Conn,
    options: { tls: TlsBridge | undefined; timeoutMs: number; log: Logger },
  ) {
    this.#client = new ClientConnection(conn);
    this.#options = options;
  }

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
      client.releaseWriter();
      client.close();
    }
  }

  beginShutdown(): void {
    this.close();
  }

  close(): void {
    this.#client.close();
  }
}

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

/** Options of {@linkcode WalRelay.start}. */
export interface WalRelayOptions {
  /**
   * The directory of WAL segment files to serve. Relay mode creates it when missing (mode 0700,
   * as initdb creates a data directory).
   */
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
    /**
     * Store each completed segment compressed (`SEG.gz`, `.lz4`, `.zst`); the segment being
     * written stays plain. `retainBytes` then counts the compressed sizes.
     */
    compress?: CompressFormat;
  };
  /**
   * Base backups served by BASE_BACKUP from `walDir/.walrelay/backups/`. In relay mode they are
   * taken from the upstream on demand.
   */
  baseBackups?: {
    /** Relay mode: a stored backup older than this is taken anew. Default 24 h. */
    maxAgeMs?: number;
    /** Relay mode: take a backup this often, ahead of demand. Default: only on demand. */
    intervalMs?: number;
    /** Keep this many backups. Default 2. */
    keep?: number;
    /** Relay mode: `MAX_RATE` of backups taken from the upstream, in kB/s. Default unlimited. */
    maxRateKb?: number;
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
  /**
   * Bytes of decompressed archived segments kept in memory, shared by every sender (a compressed
   * archive, or the relay's own `--compress`ed segments). Default 256 MiB.
   */
  cacheSize?: number;
  /**
   * Also serve the HTTP status pages (dashboard, `/status`, `/metrics`, `/healthz`) here; see
   * `startStatusServer`. Closed after the replication clients on shutdown.
   */
  http?: {
    /** Listen address. Default `127.0.0.1`. */
    hostname?: string;
    /** Listen port; 0 picks a free one. */
    port: number;
    /** Readiness: the most upstream lag, in seconds, that still counts as ready. Default 60. */
    readyMaxLagSeconds?: number;
    /**
     * Access rules for the HTTP server (path prefix, address, trust/token/reject); see
     * `parseHttpHba`. Without this and `tokenFile` only loopback clients are admitted.
     */
    hbaFile?: string;
    /** A file whose first line is the bearer token `token` rules (or, alone, every request) need. */
    tokenFile?: string;
    /** Serve HTTPS with this certificate (PEM); goes with `tlsKeyFile`. */
    tlsCertFile?: string;
    /** The private key of `tlsCertFile` (PEM). */
    tlsKeyFile?: string;
  };
}

/**
 * The options checked, defaults applied and files read, before anything is acquired: a mistake
 * in them must not leave a port bound or an upstream connected.
 */
interface Settings {
  walDir: string;
  hostname: string;
  port: number;
  maxSenders: number;
  maxConnections: number;
  timeouts: Required<SessionTimeouts>;
  rescanMs: number;
  watch: boolean;
  cacheSize: number;
  tls: TlsFiles | undefined;
  auth: AuthConfig;
  http: {
    hostname: string;
    port: number;
    readyMaxLagSeconds: number;
    access: HttpAccess;
    tls: TlsFiles | undefined;
  } | undefined;
}

function checkInteger(
  name: string,
  value: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`invalid ${name} ${value}: expected an integer from ${min} to ${max}`);
  }
  return value;
}

function checkDuration(name: string, value: number, allowZero: boolean): number {
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new RangeError(
      `invalid ${name} ${value}: expected ${allowZero ? "zero or more" : "more than zero"} ms`,
    );
  }
  return value;
}

/** Reads a file the relay needs at startup, naming it as PostgreSQL does when it cannot. */
async function readStartupFile(what: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`could not load ${what} "${path}": ${(e as Error).message}`);
  }
}

async function checkOptions(o: WalRelayOptions): Promise<Settings> {
  const hostname = o.hostname ?? DEFAULTS.hostname;
  if (hostname === "") throw new RangeError("invalid listen address: empty");
  const port = checkInteger("port", o.port ?? DEFAULTS.port, 0, 65535);
  const maxSenders = checkInteger("maxSenders", o.maxSenders ?? DEFAULTS.maxSenders, 1);
  const maxConnections = checkInteger(
    "maxConnections",
    o.maxConnections ?? maxSenders + DEFAULTS.reservedConnections,
    1,
  );
  const t = o.timeouts ?? {};
  const timeouts: Required<SessionTimeouts> = {
    authentication: checkDuration(
      "authentication timeout",
      t.authentication ?? DEFAULTS.authenticationTimeoutMs,
      false,
    ),
    sender: checkDuration("sender timeout", t.sender ?? DEFAULTS.senderTimeoutMs, true),
    keepalive: checkDuration("keepalive interval", t.keepalive ?? DEFAULTS.keepaliveMs, false),
    progressLog: checkDuration(
      "progress log interval",
      t.progressLog ?? DEFAULTS.progressLogMs,
      false,
    ),
  };
  const rescanMs = checkDuration(
    "rescan interval",
    o.rescanMs ?? (o.upstream ? DEFAULTS.relayRescanMs : DEFAULTS.rescanMs),
    false,
  );
  const compress = o.upstream?.compress;
  if (compress !== undefined && !isCompressFormat(compress)) {
    throw new Error(`invalid compression "${compress}": expected gzip, lz4 or zstd`);
  }
  if (o.baseBackups) checkBackupSettings(o.baseBackups);
  const retain = o.upstream?.retainBytes;
  if (retain !== undefined) checkInteger("retainBytes", retain, 0);
  let http: Settings["http"];
  if (o.http) {
    const readyMaxLagSeconds = o.http.readyMaxLagSeconds ?? DEFAULTS.readyMaxLagSeconds;
    if (!(readyMaxLagSeconds > 0)) {
      throw new RangeError(
        `invalid readyMaxLagSeconds ${readyMaxLagSeconds}: expected more than 0`,
      );
    }
    const httpHostname = o.http.hostname ?? DEFAULTS.httpHostname;
    // /wal/ hands out the whole database: anywhere but loopback, someone must say who may ask.
    if (
      !isLoopbackHost(httpHostname) && o.http.hbaFile === undefined &&
      o.http.tokenFile === undefined
    ) {
      throw new Error(
        `refusing to serve HTTP on non-loopback address "${httpHostname}" without access ` +
          `rules: give --http-hba or --http-token (or listen on 127.0.0.1)`,
      );
    }
    if ((o.http.tlsCertFile === undefined) !== (o.http.tlsKeyFile === undefined)) {
      throw new Error("an HTTP TLS certificate and key go together: give both or neither");
    }
    http = {
      hostname: httpHostname,
      port: checkInteger("http port", o.http.port, 0, 65535),
      readyMaxLagSeconds,
      access: await loadHttpAccess({ hbaFile: o.http.hbaFile, tokenFile: o.http.tokenFile }),
      tls: o.http.tlsCertFile !== undefined && o.http.tlsKeyFile !== undefined
        ? {
          cert: await readStartupFile("HTTP server certificate file", o.http.tlsCertFile),
          key: await readStartupFile("HTTP private key file", o.http.tlsKeyFile),
        }
        : undefined,
    };
  }
  if ((o.tlsCertFile === undefined) !== (o.tlsKeyFile === undefined)) {
    throw new Error("a TLS certificate and key go together: give both or neither");
  }
  const tls = o.tlsCertFile !== undefined && o.tlsKeyFile !== undefined
    ? {
      cert: await readStartupFile("server certificate file", o.tlsCertFile),
      key: await readStartupFile("private key file", o.tlsKeyFile),
    }
    : undefined;
  const auth = await loadAuthConfig({ hba: o.hbaFile, passwords: o.passwordsFile });
  await checkWalDir(o.walDir, o.upstream !== undefined);
  return {
    walDir: o.walDir,
    hostname,
    port,
    maxSenders,
    maxConnections,
    timeouts,
    rescanMs,
    watch: o.watch ?? !o.upstream,
    cacheSize: checkInteger("cache size", o.cacheSize ?? DEFAULTS.cacheSize, 0),
    tls,
    auth,
    http,
  };
}

/**
 * Relay mode: the store of a directory that holds WAL already, served while the upstream is being
 * reached; `undefined` when no segment gives the identity yet (a new directory, or only a
 * zero-filled `.partial`). Anything else wrong with it shows when it is opened again later.
 */
async function openIfHoldsWal(
  dir: string,
  logger: Logger,
  cacheSize: number,
): Promise<WalStore | undefined> {
  try {
    return await WalStore.open(dir, { log: (m) => logger.log("warn", m), cacheSize });
  } catch (e) {
    logger.log("debug", `no WAL to serve yet: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * Checks the WAL directory, last of the options since relay mode creates it when it is missing:
 * the parents as `mkdir -p` does, the directory itself with mode 0700 (as initdb creates a data
 * directory), since WAL holds every row of the cluster. Directory mode serves what exists.
 */
async function checkWalDir(path: string, create: boolean): Promise<void> {
  let dir: Deno.FileInfo;
  try {
    dir = await Deno.stat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new Error(`could not open WAL directory "${path}": ${osErrorText(e)}`);
    }
    if (!create) throw new Error(`WAL directory "${path}" does not exist`);
    try {
      const trimmed = path.replace(/\/+$/, "");
      const cut = trimmed.lastIndexOf("/");
      if (cut > 0) await Deno.mkdir(trimmed.slice(0, cut), { recursive: true });
      await Deno.mkdir(trimmed, { mode: 0o700 });
      // The mode given to mkdir passes through the umask; the directory's must not.
      await Deno.chmod(path, 0o700);
    } catch (e) {
      throw new Error(`could not create WAL directory "${path}": ${osErrorText(e)}`);
    }
    return;
  }
  if (!dir.isDirectory) throw new Error(`WAL directory "${path}" is not a directory`);
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
  readonly lag: ReplicationLag = new ReplicationLag();
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
  #listener: Deno.Listener;
  #sessions = new Set<{ close(): void; beginShutdown(): void }>();
  #shutdown = new AbortController();
  #done: Promise<void>;
  #failure: Error | undefined;
  #timers: ReturnType<typeof setInterval>[] = [];
  #watcher: Deno.FsWatcher | undefined;
  #watching: Promise<void> = Promise.resolve();
  #auth: AuthConfig;
  #maxConnections: number;
  #tls: TlsBridge | undefined;
  #options: WalRelayOptions;
  #settings: Settings;

  private constructor(
    listener: Deno.Listener,
    slots: SlotManager,
    options: WalRelayOptions,
    settings: Settings,
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
    this.#listener = listener;
    this.slots = slots;
    this.logger = logger;
    this.registry = new SenderRegistry(settings.maxSenders);
    this.#serving.promise.catch(() => {});
    this.#done = this.#acceptLoop();
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
    await this.upstream?.attach(store);
    const settings = this.#settings;
    this.#timers.push(setInterval(() => this.#refresh(), settings.rescanMs));
    // In relay mode the writer announces each durable advance itself; watching the directory it
    // writes into would only rescan on every write. The periodic rescan stays as a safety net.
    if (settings.watch) this.#watching = this.#watch();
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
    const addr = this.#listener.addr as Deno.NetAddr;
    const store = this.#store;
    this.logger.log(
      "info",
      store ? "listening for replication connections" : "listening, waiting for WAL from upstream",
      {
        address: `${addr.hostname}:${addr.port}`,
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
    const settings = await checkOptions(options);
    const counters = new RelayCounters();
    // Sessions log every connection, error (with its SQLSTATE) and disconnection; the counters
    // are fed from those lines.
    const logger = counters.tap(options.logger ?? createLogger());
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
      ? await openIfHoldsWal(settings.walDir, logger, settings.cacheSize)
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
    const listener = acquired.adopt(
      Deno.listen({ hostname: settings.hostname, port: settings.port }),
      closeQuietly,
    );
    const relay = new WalRelay(listener, slots, options, settings, logger, tls, counters);
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
    await relay.#startHttp();
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
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** The address listened on. */
  get hostname(): string {
    return (this.#listener.addr as Deno.NetAddr).hostname;
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
      for await (const conn of this.#listener) {
        try {
          (conn as Deno.TcpConn).setNoDelay(true);
        } catch { /* not TCP */ }
        this.counters.connectionAccepted();
        if (this.#sessions.size >= this.#maxConnections) {
          this.#refuse(conn);
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
    this.#store?.refresh().catch((e) => {
      this.logger.log("warn", `could not rescan WAL directory: ${(e as Error).message}`);
    });
  }

  async #watch(): Promise<void> {
    try {
      // Archive layouts (pgBackRest, Barman, WAL-G) add files in subdirectories.
      const layout = this.store.layout;
      const recursive = layout !== "plain" && layout !== "pg_receivewal";
      this.#watcher = Deno.watchFs(this.store.dir, { recursive });
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
    await this.#store?.refresh();
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
      await this.#store?.refresh().catch(() => {});
      for (const s of this.#sessions) s.beginShutdown();
    }
    const grace = options.graceMs ?? DEFAULTS.shutdownGraceMs;
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
    await this.#watching;
    await this.slots.flush().catch(() => {});
    // Last, so the dashboard shows the drain to the end.
    await this.http?.close();
  }

  /** No new clients, no more rescans. */
  #stopAccepting(): void {
    this.backups?.close();
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
    await this.#done;
    await this.#watching;
  }

  /** Graceful shutdown, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown({ graceMs: 5000 });
  }
}
