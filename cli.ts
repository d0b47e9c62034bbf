/**
 * The `walrelay` command line: `serve`, `inspect`, `status`, `passwd`, `backup`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createLogger } from "./lib/log.ts";
import { WalRelay, type WalRelayOptions } from "./lib/server.ts";
import { type Lsn, parseLsn } from "./lib/wal/lsn.ts";
import { parseSize } from "./lib/upstream/retention.ts";
import { isCompressFormat } from "./lib/archive/compress.ts";
import { WALRELAY_VERSION } from "./lib/replication/settings.ts";
import { buildScramVerifier } from "./lib/auth/scram.ts";
import { runInspectCommand } from "./lib/inspect/command.ts";
import { runStatusCommand } from "./lib/http/status_command.ts";
import { DEFAULTS } from "./lib/defaults.ts";
import { firstRunExamples } from "./lib/first_run.ts";
import { runBackupCommand } from "./lib/backup/command.ts";
import { parseDuration } from "./lib/backup/duration.ts";

const D = DEFAULTS;
const USAGE = `walrelay ${WALRELAY_VERSION}: a PostgreSQL WAL sender

Usage:
  walrelay serve   --wal-dir DIR [--upstream CONNINFO [--slot NAME [--create-slot]] [--start LSN]
                   [--retain SIZE] [--compress gzip|lz4|zstd]] [--listen HOST:PORT]
                   [--max-senders N] [--workers N] [--hba FILE]
                   [--passwords FILE] [--tls-cert FILE --tls-key FILE] [--log-format text|json]
                   [--http HOST:PORT [--http-hba FILE] [--http-token FILE]
                   [--http-tls-cert FILE --http-tls-key FILE]] [--cache-size SIZE] [--examples]
  walrelay inspect DIR|FILE [--json]
  walrelay status  [URL] [--json] [--token FILE]   (default http://${D.httpHostname}:${D.httpPort})
  walrelay passwd  USER
  walrelay backup  import PATH --wal-dir DIR | list --wal-dir DIR

serve options:
  --wal-dir DIR         directory of WAL segment files to serve (required)
  --listen HOST:PORT    where to accept replication connections (default ${D.hostname}:${D.port})
  --upstream CONNINFO   relay mode: follow this primary (or relay) and store its WAL durably in
                        --wal-dir (libpq conninfo or postgres:// URL; PG* variables, ~/.pgpass)
  --slot NAME           stream through this physical slot on the upstream
  --create-slot         create that slot on the upstream when missing
  --start LSN           where to start in an empty directory (default: the upstream's position)
  --retain SIZE         keep at most SIZE of complete segments (e.g. 10GB), never one a slot needs
  --compress FORMAT     store each completed segment compressed: gzip, lz4 or zstd (SEG.gz,
                        SEG.lz4, SEG.zst, as pg_receivewal and WAL-G name them); the segment
                        being written stays plain; --retain counts compressed sizes
  --base-backup-max-age DUR
                        serve a stored base backup while younger than this, else take a new one
                        from the upstream (default 24h)
  --base-backup-interval DUR
                        take a base backup from the upstream this often (default: on demand only)
  --base-backups-keep N keep this many base backups, and the WAL they need (default ${D.baseBackupsKeep})
  --base-backup-max-rate KB
                        take base backups from the upstream at most this fast, in kB/s
  --cache-size SIZE     memory for decompressed archived segments, shared by every client
                        (default 256MB)
  --max-senders N       most replication connections at once, as max_wal_senders (default ${D.maxSenders})
  --workers N           threads serving replication connections, each listening on the address
                        (the kernel spreads the connections); the limits, slots, /status and the
                        upstream stay global (default 1: all on the main thread)
  --log-format FORMAT   text (default) or json
  --log-level LEVEL     debug, info (default), warn or error
  --max-connections N   connections at once in any state (default max-senders + ${D.reservedConnections});
                        more get 53300
  --sender-timeout SEC  drop a streaming client silent this long, as wal_sender_timeout
                        (default ${D.senderTimeoutMs / 1000}); 0 disables
  --authentication-timeout SEC
                        drop a client that has not authenticated within this time
                        (default ${D.authenticationTimeoutMs / 1000})
  --hba FILE            pg_hba.conf-style rules (host/hostssl/hostnossl, database replication,
                        methods trust, reject, scram-sha-256, md5, password); default: loopback trust
  --passwords FILE      user:verifier lines, verifiers as pg_authid.rolpassword stores them
  --tls-cert FILE       server certificate (PEM); with --tls-key, clients may use TLS
  --tls-key FILE        server private key (PEM)
  --http HOST:PORT      status server: / dashboard, /status JSON, /metrics, /healthz, and /wal/FILE
                        for restore_command ('curl -fsS http://HOST:PORT/wal/%f -o %p'); only
                        loopback clients unless --http-hba or --http-token, and a non-loopback
                        HOST is refused without one of them
  --http-hba FILE       HTTP access rules, one a line: PATH ADDRESS METHOD, first match wins;
                        PATH all or a prefix (/wal/), ADDRESS all, IP or CIDR, METHOD trust,
                        token (Authorization: Bearer) or reject; no match is refused (403)
  --http-token FILE     bearer token (first line, 16+ characters) for token rules; alone, every
                        HTTP request needs it, loopback included
  --http-tls-cert FILE  serve the status server over HTTPS with this certificate (PEM)
  --http-tls-key FILE   its private key (PEM)
  --http-ready-max-lag SEC
                        /healthz readiness: the most upstream lag still ready (default ${D.readyMaxLagSeconds})
  --examples            once listening, print client commands to try (psql, pg_receivewal) and the
                        dashboard URL on stdout

Signals: SIGTERM/SIGINT send all WAL then stop (a second one, more than a second later, exits at
once); SIGHUP rereads --hba and --passwords (a broken file keeps the previous rules).
`;

/**
 * A terminal's Ctrl-C reaches the relay twice when it runs under `deno task`: the terminal signals
 * the whole foreground process group, and the task runner forwards what it got to its child. A
 * second signal this soon after the first is the same request, not an impatient operator.
 */
const SAME_REQUEST_MS = 1000;

/** Exit with a message, as a CLI user expects. */
function fail(message: string, code = 2): never {
  console.error(`walrelay: ${message}`);
  Deno.exit(code);
}

function parseListen(text: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (!m) fail(`invalid --listen "${text}": expected HOST:PORT`);
  const port = Number(m[3]);
  if (port < 0 || port > 65535) fail(`invalid port in --listen "${text}"`);
  return { hostname: m[1] ?? (m[2] || "127.0.0.1"), port };
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      "wal-dir": { type: "string" },
      listen: { type: "string" },
      "max-senders": { type: "string", default: String(DEFAULTS.maxSenders) },
      workers: { type: "string" },
      "log-format": { type: "string", default: "text" },
      "log-level": { type: "string", default: "info" },
      "sender-timeout": { type: "string", default: String(DEFAULTS.senderTimeoutMs / 1000) },
      "max-connections": { type: "string" },
      "authentication-timeout": {
        type: "string",
        default: String(DEFAULTS.authenticationTimeoutMs / 1000),
      },
      hba: { type: "string" },
      passwords: { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      http: { type: "string" },
      upstream: { type: "string" },
      slot: { type: "string" },
      "create-slot": { type: "boolean" },
      start: { type: "string" },
      retain: { type: "string" },
      "cache-size": { type: "string" },
      compress: { type: "string" },
      "base-backup-max-age": { type: "string" },
      "base-backup-interval": { type: "string" },
      "base-backups-keep": { type: "string" },
      "base-backup-max-rate": { type: "string" },
      "http-ready-max-lag": { type: "string", default: String(DEFAULTS.readyMaxLagSeconds) },
      "http-hba": { type: "string" },
      "http-token": { type: "string" },
      "http-tls-cert": { type: "string" },
      "http-tls-key": { type: "string" },
      examples: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const walDir = values["wal-dir"];
  if (!walDir) fail("--wal-dir is required\n\n" + USAGE);
  const maxSenders = Number(values["max-senders"]);
  if (!Number.isInteger(maxSenders) || maxSenders < 1) {
    fail(`invalid --max-senders "${values["max-senders"]}"`);
  }
  const workers = values.workers === undefined ? undefined : Number(values.workers);
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 1)) {
    fail(`invalid --workers "${values.workers}"`);
  }
  const senderTimeout = Number(values["sender-timeout"]);
  if (!(senderTimeout >= 0)) fail(`invalid --sender-timeout "${values["sender-timeout"]}"`);
  const maxConnections = values["max-connections"] === undefined
    ? maxSenders + DEFAULTS.reservedConnections
    : Number(values["max-connections"]);
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    fail(`invalid --max-connections "${values["max-connections"]}"`);
  }
  const authTimeout = Number(values["authentication-timeout"]);
  if (!(authTimeout > 0)) {
    fail(`invalid --authentication-timeout "${values["authentication-timeout"]}"`);
  }
  const format = values["log-format"];
  if (format !== "text" && format !== "json") fail(`invalid --log-format "${format}"`);
  const level = values["log-level"];
  if (level !== "debug" && level !== "info" && level !== "warn" && level !== "error") {
    fail(`invalid --log-level "${level}": expected debug, info, warn or error`);
  }
  const logger = createLogger({ format, level });
  const { hostname, port } = values.listen === undefined
    ? { hostname: DEFAULTS.hostname, port: DEFAULTS.port }
    : parseListen(values.listen);
  let http: WalRelayOptions["http"];
  if (values.http !== undefined) {
    const readyMaxLagSeconds = Number(values["http-ready-max-lag"]);
    if (!(readyMaxLagSeconds > 0)) {
      fail(`invalid --http-ready-max-lag "${values["http-ready-max-lag"]}"`);
    }
    http = {
      ...parseListen(values.http),
      readyMaxLagSeconds,
      ...(values["http-hba"] ? { hbaFile: values["http-hba"] } : {}),
      ...(values["http-token"] ? { tokenFile: values["http-token"] } : {}),
      ...(values["http-tls-cert"] ? { tlsCertFile: values["http-tls-cert"] } : {}),
      ...(values["http-tls-key"] ? { tlsKeyFile: values["http-tls-key"] } : {}),
    };
  } else if (
    values["http-hba"] || values["http-token"] || values["http-tls-cert"] ||
    values["http-tls-key"]
  ) {
    fail("--http-hba, --http-token, --http-tls-cert and --http-tls-key go with --http");
  }

  let upstream: WalRelayOptions["upstream"];
  if (values.upstream !== undefined) {
    let start: Lsn | undefined;
    if (values.start !== undefined) {
      start = parseLsn(values.start);
      if (start === undefined) {
        fail(`invalid --start "${values.start}": expected an LSN like 0/3000000`);
      }
    }
    let retainBytes: number | undefined;
    if (values.retain !== undefined) {
      try {
        retainBytes = parseSize(values.retain);
      } catch (e) {
        fail(`invalid --retain "${values.retain}": ${(e as Error).message}`);
      }
    }
    const compress = values.compress;
    if (compress !== undefined && !isCompressFormat(compress)) {
      fail(`invalid --compress "${compress}": expected gzip, lz4 or zstd`);
    }
    upstream = {
      conninfo: values.upstream,
      ...(values.slot !== undefined ? { slot: values.slot } : {}),
      ...(values["create-slot"] ? { createSlot: true } : {}),
      ...(start !== undefined ? { start } : {}),
      ...(retainBytes !== undefined ? { retainBytes } : {}),
      ...(compress !== undefined ? { compress } : {}),
    };
  } else if (
    values.slot || values["create-slot"] || values.start || values.retain || values.compress
  ) {
    fail("--slot, --create-slot, --start, --retain and --compress go with --upstream");
  }

  const baseBackups: NonNullable<WalRelayOptions["baseBackups"]> = {};
  for (
    const [flag, key] of [["base-backup-max-age", "maxAgeMs"], [
      "base-backup-interval",
      "intervalMs",
    ]] as const
  ) {
    const text = values[flag];
    if (text === undefined) continue;
    try {
      baseBackups[key] = parseDuration(text);
    } catch (e) {
      fail(`invalid --${flag} "${text}": ${(e as Error).message}`);
    }
  }
  if (values["base-backups-keep"] !== undefined) {
    const keep = Number(values["base-backups-keep"]);
    if (!Number.isInteger(keep) || keep < 1) {
      fail(`invalid --base-backups-keep "${values["base-backups-keep"]}"`);
    }
    baseBackups.keep = keep;
  }
  if (values["base-backup-max-rate"] !== undefined) {
    const rate = Number(values["base-backup-max-rate"]);
    if (!Number.isInteger(rate) || rate < 32 || rate > 1048576) {
      fail(
        `invalid --base-backup-max-rate "${values["base-backup-max-rate"]}": 32 to 1048576 kB/s`,
      );
    }
    baseBackups.maxRateKb = rate;
  }

  let cacheSize: number | undefined;
  if (values["cache-size"] !== undefined) {
    try {
      cacheSize = parseSize(values["cache-size"]);
    } catch (e) {
      fail(`invalid --cache-size "${values["cache-size"]}": ${(e as Error).message}`);
    }
  }

  let relay: WalRelay;
  try {
    relay = await WalRelay.start({
      walDir,
      hostname,
      port,
      maxSenders,
      ...(workers !== undefined ? { workers } : {}),
      logger,
      maxConnections,
      timeouts: { sender: senderTimeout * 1000, authentication: authTimeout * 1000 },
      ...(values.hba ? { hbaFile: values.hba } : {}),
      ...(values.passwords ? { passwordsFile: values.passwords } : {}),
      ...(values["tls-cert"] ? { tlsCertFile: values["tls-cert"] } : {}),
      ...(values["tls-key"] ? { tlsKeyFile: values["tls-key"] } : {}),
      ...(upstream ? { upstream } : {}),
      ...(http ? { http } : {}),
      ...(cacheSize !== undefined ? { cacheSize } : {}),
      baseBackups,
    });
  } catch (e) {
    fail((e as Error).message, 1);
  }
  if (values.examples) console.log(firstRunExamples(relay));

  let firstSignalAt: number | undefined;
  const onStop = (signal: Deno.Signal) => () => {
    const now = performance.now();
    if (firstSignalAt !== undefined) {
      if (now - firstSignalAt < SAME_REQUEST_MS) {
        logger.log("debug", `received ${signal} again at once: the same shutdown request`);
        return;
      }
      logger.log("info", `received ${signal} again: exiting immediately`);
      relay.close();
      Deno.exit(1);
    }
    firstSignalAt = now;
    logger.log("info", `received ${signal}: shutting down after sending all WAL`);
    relay.shutdown().then(() => {
      logger.log("info", "shut down");
      Deno.exit(0);
    });
  };
  Deno.addSignalListener("SIGTERM", onStop("SIGTERM"));
  Deno.addSignalListener("SIGINT", onStop("SIGINT"));
  Deno.addSignalListener("SIGHUP", () => {
    logger.log("info", "received SIGHUP, reloading configuration files");
    relay.reload();
  });
  // A failure the relay cannot go on from (say, the upstream's first answer shows the directory
  // belongs to another system) ends it as a failure at startup does.
  await relay.finished.catch((e) => fail((e as Error).message, 1));
}

/** Reads a line from the terminal without echo, or from stdin when it is not a terminal. */
async function readPassword(prompt: string): Promise<string> {
  const enc = new TextEncoder();
  const tty = Deno.stdin.isTerminal();
  if (tty) {
    Deno.stderr.writeSync(enc.encode(prompt));
    Deno.stdin.setRaw(true);
  }
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      const b = buf[0]!;
      if (b === 0x0a || b === 0x0d) break;
      if (tty && b === 0x03) throw new Error("cancelled");
      if (tty && (b === 0x7f || b === 0x08)) {
        bytes.pop();
        continue;
      }
      bytes.push(b);
    }
  } finally {
    if (tty) {
      Deno.stdin.setRaw(false);
      Deno.stderr.writeSync(enc.encode("\n"));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

async function passwd(args: string[]): Promise<void> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const user = positionals[0];
  if (!user || positionals.length !== 1) fail("usage: walrelay passwd USER");
  if (/[:\s]/.test(user)) fail(`invalid user name "${user}"`);
  const password = await readPassword("Enter password: ");
  if (Deno.stdin.isTerminal()) {
    const again = await readPassword("Enter it again: ");
    if (again !== password) fail("passwords didn't match", 1);
  }
  if (password === "") fail("empty password", 1);
  console.log(`${user}:${await buildScramVerifier(password)}`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return await serve(rest);
    case "passwd":
      return await passwd(rest);
    case "inspect":
      return Deno.exit(await runInspectCommand(rest));
    case "status":
      return Deno.exit(await runStatusCommand(rest));
    case "backup":
      return Deno.exit(await runBackupCommand(rest));
    case "--version":
    case "version":
      console.log(`walrelay ${WALRELAY_VERSION}`);
      return;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return;
    default:
      fail(`unknown command "${command}"\n\n${USAGE}`);
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (e) {
    fail((e as Error).message, 2);
  }
}
