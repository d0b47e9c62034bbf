/**
 * The options of `WalRelay.start` and their checking: defaults applied, numbers and addresses
 * checked, and the files the relay needs read, all before anything is acquired.
 *
 * @module
 */

import { type CompressFormat, isCompressFormat } from "./archive/compress.ts";
import type { Logger } from "./log.ts";
import type { Authenticator } from "./auth/contract.ts";
import type { SessionTimeouts } from "./replication/session.ts";
import { type AuthConfig, loadAuthConfig } from "./auth/authenticator.ts";
import type { TlsFiles } from "./pgwire/tls_bridge.ts";
import type { Lsn } from "./wal/lsn.ts";
import { DEFAULTS } from "./defaults.ts";
import { type HttpAccess, isLoopbackHost, loadHttpAccess } from "./http/access.ts";
import { osErrorText } from "./upstream/wal_file_error.ts";
import { checkBackupSettings } from "./backup/service.ts";

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
   * Sender threads serving replication connections. Each listens on the address with
   * `reusePort`, so the kernel spreads the connections; the sender limit, the registry behind
   * `/status`, the slots and the upstream stay global, on the relay's own thread. 1 serves every
   * connection on the relay's own thread, and is the default: on a two-core machine more
   * threads cost more per commit and per byte (they pay off in fan-out from an archive).
   * A custom `authenticate` cannot cross threads and needs 1. Without `--unstable-net` (or
   * `"unstable": ["net"]`), which `reusePort` needs, the relay logs why and uses 1.
   */
  workers?: number;
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
export interface RelaySettings {
  walDir: string;
  hostname: string;
  port: number;
  maxSenders: number;
  maxConnections: number;
  workers: number;
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

/**
 * Checks every option, applies the defaults and reads every file the relay needs (certificates,
 * keys, access rules), creating a missing WAL directory in relay mode. Nothing is bound or
 * contacted: a mistake found here leaves nothing to release.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkRelayOptions } from "./relay_options.ts";
 * const settings = await checkRelayOptions({ walDir: "testdata/wal" });
 * assert.equal(settings.port, 5433);
 * await assert.rejects(checkRelayOptions({ walDir: "testdata/wal", port: 70000 }), RangeError);
 * ```
 */
export async function checkRelayOptions(o: WalRelayOptions): Promise<RelaySettings> {
  const hostname = o.hostname ?? DEFAULTS.hostname;
  if (hostname === "") throw new RangeError("invalid listen address: empty");
  const port = checkInteger("port", o.port ?? DEFAULTS.port, 0, 65535);
  const maxSenders = checkInteger("maxSenders", o.maxSenders ?? DEFAULTS.maxSenders, 1);
  if (o.workers !== undefined && o.workers > 1 && o.authenticate) {
    throw new RangeError(
      `invalid workers ${o.workers}: a custom authenticate runs on the relay's own thread only`,
    );
  }
  const workers = checkInteger(
    "workers",
    o.workers ?? 1,
    1,
    1024,
  );
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
  let http: RelaySettings["http"];
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
    workers,
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
