/**
 * What a parsed connection string comes to, as `fe-connect.c` works it out: the `PG*`
 * environment defaults, the host list (`host`, `hostaddr` and `port` matched entry by entry), a
 * password from the string, `PGPASSWORD` or the password file, the TLS files, and the values the
 * relay refuses rather than ignores.
 *
 * @module
 */

import type { ConninfoParams } from "./conninfo.ts";
import { type ConninfoEnvironment, processEnvironment } from "./conninfo_environment.ts";
import { findPassfilePassword, readPassfile } from "./passfile.ts";
import { loadClientCertificate, resolveSslFiles, SSL_MODES, type SslMode } from "./ssl_files.ts";

/** The `target_session_attrs` values libpq (14 and later) knows. */
export type TargetSessionAttrs =
  | "any"
  | "read-write"
  | "read-only"
  | "primary"
  | "standby"
  | "prefer-standby";

const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = [
  "any",
  "read-write",
  "read-only",
  "primary",
  "standby",
  "prefer-standby",
];

/** One entry of the host list: where to connect, and the password for it. */
export interface ConninfoHost {
  /**
   * Host name as given: what `verify-full` checks the server certificate against and what the
   * password file is searched for. It is the `hostaddr` entry when only that is given, and
   * `localhost` when neither is.
   */
  host: string;
  /** Numeric address to connect to instead of resolving `host` (`hostaddr`). */
  hostaddr: string | undefined;
  /** TCP port. */
  port: number;
  /** Password from the string, `PGPASSWORD` or the password file (searched for this host). */
  password: string | undefined;
}

/** A connection's settings after defaults, environment and password file. */
export interface ResolvedConninfo {
  /**
   * The hosts to try, in order: libpq's comma-separated `host`, `hostaddr` and `port` lists
   * matched entry by entry, empty entries given their defaults. Never empty.
   */
  hosts: ConninfoHost[];
  /** What kind of server a connection must reach to be kept (`target_session_attrs`). */
  targetSessionAttrs: TargetSessionAttrs;
  /** `load_balance_hosts`: `random` tries the hosts in a new random order on every attempt. */
  loadBalanceHosts: "disable" | "random";
  /** Role name. */
  user: string;
  /** Database name (for the password file; a physical walsender ignores it). */
  dbname: string;
  /** TLS policy. */
  sslmode: SslMode;
  /**
   * Root certificate file (PEM), when given or present at `~/.postgresql/root.crt`. Undefined
   * with `sslrootcert=system` (the system's trusted roots) or when nothing verifies.
   */
  sslrootcert: string | undefined;
  /**
   * Client certificate file (PEM) to present: `sslcert`, or `~/.postgresql/postgresql.crt` when
   * that exists. Undefined when none is sent (and always with `sslmode=disable`).
   */
  sslcert: string | undefined;
  /** The client certificate's private key file: `sslkey` or `~/.postgresql/postgresql.key`. */
  sslkey: string | undefined;
  /** Passphrase of an encrypted `sslkey`. */
  sslpassword: string | undefined;
  /** `application_name` (or the fallback). */
  applicationName: string;
  /** `connect_timeout` in seconds, per host (0 = none; 1 counts as 2, as in libpq). */
  connectTimeout: number;
  /** Every keyword as given, for what the fields above do not cover. */
  params: ConninfoParams;
}

/** Options of {@linkcode resolveConninfo}. */
export interface ResolveOptions {
  /** A replication connection: the password file is searched for database `replication`. */
  replication?: boolean;
  /** `fallback_application_name` when the string sets none. */
  fallbackApplicationName?: string;
  /** The outside world; default {@linkcode processEnvironment}. */
  environment?: ConninfoEnvironment;
}

/** libpq's `count_comma_separated_elems` and the split that goes with it: `a,,b` is three. */
function splitList(text: string): string[] {
  return text.split(",");
}

/**
 * Values the relay cannot honour. libpq would insist on them (fail rather than connect without
 * them), so accepting them silently would connect with less than was asked for.
 */
const REFUSED_VALUES: {
  keyword: string;
  env: string;
  values: string[];
  refuse: string;
  why: string;
}[] = [
  {
    keyword: "channel_binding",
    env: "PGCHANNELBINDING",
    values: ["disable", "prefer", "require"],
    refuse: "require",
    why: "the relay authenticates with SCRAM-SHA-256 without channel binding",
  },
  {
    keyword: "gssencmode",
    env: "PGGSSENCMODE",
    values: ["disable", "prefer", "require"],
    refuse: "require",
    why: "the relay has no GSSAPI support",
  },
  {
    keyword: "sslnegotiation",
    env: "PGSSLNEGOTIATION",
    values: ["postgres", "direct"],
    refuse: "direct",
    why: "the relay negotiates TLS with an SSLRequest, which every server version understands",
  },
];

/**
 * Applies libpq's defaults to parsed settings: `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`,
 * `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, `PGAPPNAME`,
 * `PGCONNECT_TIMEOUT`, `PGPASSFILE`, `PGTARGETSESSIONATTRS`, `PGLOADBALANCEHOSTS`; then, without
 * a password, the password file, searched per host.
 *
 * Host lists follow libpq's "Specifying Multiple Hosts": `host`, `hostaddr` and `port` are
 * comma-separated lists matched entry by entry (a single port serves every host), and an empty
 * entry takes its default. Unix-socket hosts (a path) are refused: the relay connects over TCP.
 *
 * TLS files are checked here, so that a mistake stops the relay at startup instead of failing
 * every reconnection: a client certificate is loaded with its key (see
 * {@linkcode loadClientCertificate}), and a missing root certificate under `verify-ca` or
 * `verify-full` is an error, as in libpq. What the relay cannot do is refused with an error naming
 * the option rather than ignored: certificate revocation lists (`sslcrl`, `sslcrldir`, or
 * `~/.postgresql/root.crl` next to a root certificate), `channel_binding=require`,
 * `gssencmode=require` and `sslnegotiation=direct`.
 *
 * @throws {Error} on a value libpq would reject or the relay cannot honour.
 *
 * @example
 * ```ts
 * import { parseConninfo } from "./conninfo.ts";
 * import { resolveConninfo } from "./conninfo_resolve.ts";
 * import assert from "node:assert/strict";
 * const environment = {
 *   env: (n: string) => ({ PGUSER: "repl", PGSSLMODE: "require" } as Record<string, string>)[n],
 *   home: () => "/home/x",
 *   readFile: (path: string) =>
 *     path === "/home/x/.pgpass"
 *       ? { text: "db2:*:replication:repl:secret\n", mode: 0o100600 }
 *       : undefined,
 *   warn: () => {},
 * };
 * const c = resolveConninfo(parseConninfo("host=db1,db2 port=5432,"), {
 *   replication: true,
 *   environment,
 * });
 * assert.equal(c.user, "repl");
 * assert.equal(c.sslmode, "require");
 * assert.deepEqual(c.hosts, [
 *   { host: "db1", hostaddr: undefined, port: 5432, password: undefined },
 *   { host: "db2", hostaddr: undefined, port: 5432, password: "secret" },
 * ]);
 * assert.throws(
 *   () => resolveConninfo(parseConninfo("host=a,b,c port=1,2"), { environment }),
 *   /could not match 2 port numbers to 3 hosts/,
 * );
 * ```
 */
export function resolveConninfo(
  params: ConninfoParams,
  options: ResolveOptions = {},
): ResolvedConninfo {
  const e = options.environment ?? processEnvironment;
  const pick = (key: string, envName?: string): string | undefined => {
    const v = params[key];
    if (v !== undefined && v !== "") return v;
    const ev = envName ? e.env(envName) : undefined;
    return ev !== undefined && ev !== "" ? ev : undefined;
  };

  // The number of hosts comes from hostaddr when given, else from host (fe-connect.c).
  const hostText = pick("host", "PGHOST");
  const hostaddrText = pick("hostaddr", "PGHOSTADDR");
  const hostaddrs = hostaddrText !== undefined ? splitList(hostaddrText) : undefined;
  const names = hostText !== undefined ? splitList(hostText) : undefined;
  const count = hostaddrs?.length ?? names?.length ?? 1;
  if (names !== undefined && names.length !== count) {
    throw new Error(`could not match ${names.length} host names to ${count} hostaddr values`);
  }
  const portText = pick("port", "PGPORT");
  const portList = portText !== undefined ? splitList(portText) : [""];
  if (portList.length !== 1 && portList.length !== count) {
    throw new Error(`could not match ${portList.length} port numbers to ${count} hosts`);
  }
  const hosts: (ConninfoHost & { portText: string })[] = [];
  for (let i = 0; i < count; i++) {
    const name = names?.[i] ?? "";
    const addr = hostaddrs?.[i] ?? "";
    if (name.startsWith("/") || name.startsWith("@")) {
      throw new Error(`Unix-domain socket host "${name}" is not supported; use a TCP host`);
    }
    // An empty port entry means the default port, not PGPORT: the variable fills the whole list.
    const text = (portList.length === 1 ? portList[0] : portList[i]) || "5432";
    const port = Number(text);
    if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
      throw new Error(`invalid port number: "${text}"`);
    }
    hosts.push({
      host: name || addr || "localhost",
      hostaddr: addr || undefined,
      port,
      password: undefined,
      portText: text,
    });
  }

  const user = pick("user", "PGUSER") ?? e.env("USER") ?? "postgres";
  const dbname = pick("dbname", "PGDATABASE") ?? user;
  const sslmodeText = pick("sslmode", "PGSSLMODE") ?? "prefer";
  if (!SSL_MODES.includes(sslmodeText as SslMode)) {
    throw new Error(`invalid sslmode value: "${sslmodeText}"`);
  }
  const sslmode = sslmodeText as SslMode;
  const targetSessionAttrs = pickEnum(
    "target_session_attrs",
    pick("target_session_attrs", "PGTARGETSESSIONATTRS") ?? "any",
    TARGET_SESSION_ATTRS,
  );
  const loadBalanceHosts = pickEnum(
    "load_balance_hosts",
    pick("load_balance_hosts", "PGLOADBALANCEHOSTS") ?? "disable",
    ["disable", "random"] as const,
  );
  for (const r of REFUSED_VALUES) {
    const v = pick(r.keyword, r.env);
    if (v === undefined) continue;
    pickEnum(r.keyword, v, r.values);
    if (v === r.refuse) throw new Error(`${r.keyword}=${v} is not supported: ${r.why}`);
  }

  const home = e.home();
  const tlsFiles = sslmode === "disable"
    ? { sslrootcert: undefined, sslcert: undefined, sslkey: undefined }
    : resolveSslFiles(pick, sslmode, home, e);
  const sslpassword = tlsFiles.sslcert !== undefined ? params.sslpassword : undefined;

  const timeoutText = pick("connect_timeout", "PGCONNECT_TIMEOUT") ?? "0";
  if (!/^\s*[-+]?\d+\s*$/.test(timeoutText)) {
    throw new Error(
      `invalid integer value "${timeoutText}" for connection option "connect_timeout"`,
    );
  }
  // libpq: no timeout at or below zero, and at least two seconds, so one second is not too few.
  const timeout = parseInt(timeoutText, 10);
  const connectTimeout = timeout <= 0 ? 0 : Math.max(2, timeout);

  const password = pick("password", "PGPASSWORD");
  let passfileText: string | null | undefined;
  for (const h of hosts) {
    h.password = password;
    if (password !== undefined) continue;
    if (passfileText === undefined) {
      const passfile = pick("passfile", "PGPASSFILE") ??
        (home !== undefined ? `${home}/.pgpass` : undefined);
      passfileText = passfile !== undefined ? readPassfile(passfile, e) : null;
    }
    if (passfileText === null) continue;
    // libpq searches with the host name, else the address, per host and with that host's port.
    h.password = findPassfilePassword(passfileText, {
      host: h.host,
      port: h.portText,
      dbname: options.replication ? "replication" : dbname,
      user,
    });
  }

  const resolved: ResolvedConninfo = {
    hosts: hosts.map(({ portText: _, ...h }) => h),
    targetSessionAttrs,
    loadBalanceHosts,
    user,
    dbname,
    sslmode,
    ...tlsFiles,
    sslpassword,
    applicationName: pick("application_name", "PGAPPNAME") ??
      params.fallback_application_name ?? options.fallbackApplicationName ?? "",
    connectTimeout,
    params,
  };
  // Load the certificate and key once now: a wrong file, permission or passphrase is reported at
  // startup. Each connection loads them again, so renewed files are picked up as libpq does.
  loadClientCertificate(resolved, e);
  return resolved;
}

function pickEnum<T extends string>(keyword: string, value: string, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) throw new Error(`invalid ${keyword} value: "${value}"`);
  return value as T;
}
