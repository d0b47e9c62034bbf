/**
 * libpq connection strings: `key=value` lists and `postgres://` URLs, host lists, the `PG*`
 * environment defaults, the password file (`~/.pgpass`), and the TLS files (root certificate,
 * client certificate and key), as `fe-connect.c` and `fe-secure-openssl.c` read them.
 *
 * @module
 */

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";

/** The `sslmode` values libpq knows. */
export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

const SSL_MODES: readonly SslMode[] = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];

/** Keywords libpq accepts; anything else is an error, as in `PQconnectdb`. */
const KNOWN_KEYWORDS = new Set([
  "host",
  "hostaddr",
  "port",
  "dbname",
  "user",
  "password",
  "passfile",
  "channel_binding",
  "connect_timeout",
  "client_encoding",
  "options",
  "application_name",
  "fallback_application_name",
  "keepalives",
  "keepalives_idle",
  "keepalives_interval",
  "keepalives_count",
  "tcp_user_timeout",
  "replication",
  "gssencmode",
  "sslmode",
  "sslcompression",
  "sslcert",
  "sslkey",
  "sslpassword",
  "sslrootcert",
  "sslcrl",
  "sslcrldir",
  "sslsni",
  "requirepeer",
  "ssl_min_protocol_version",
  "ssl_max_protocol_version",
  "krbsrvname",
  "gsslib",
  "service",
  "target_session_attrs",
  "load_balance_hosts",
  "sslnegotiation",
]);

/** Keyword/value pairs as written in a connection string (URL parts mapped to keywords). */
export type ConninfoParams = Record<string, string>;

/**
 * Parses a connection string: a `postgres://` / `postgresql://` URL or a libpq `key=value` list
 * (values in single quotes may hold spaces; backslash escapes the next character).
 *
 * @throws {Error} on a syntax error or an unknown keyword, with libpq's wording.
 *
 * @example
 * ```ts
 * import { parseConninfo } from "./conninfo.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseConninfo("host=db port=5432 password='a b\\'c'"), {
 *   host: "db", port: "5432", password: "a b'c",
 * });
 * assert.deepEqual(parseConninfo("postgres://u:p%40ss@db:6543/app?sslmode=require"), {
 *   user: "u", password: "p@ss", host: "db", port: "6543", dbname: "app", sslmode: "require",
 * });
 * ```
 */
export function parseConninfo(text: string): ConninfoParams {
  const trimmed = text.trimStart();
  if (/^postgres(ql)?:\/\//.test(trimmed)) return parseUrl(trimmed);
  return parseKeyValue(text);
}

function parseKeyValue(text: string): ConninfoParams {
  const out: ConninfoParams = {};
  let i = 0;
  const isSpace = (c: string | undefined) => c !== undefined && /\s/.test(c);
  while (i < text.length) {
    while (isSpace(text[i])) i++;
    if (i >= text.length) break;
    let key = "";
    while (i < text.length && text[i] !== "=" && !isSpace(text[i])) key += text[i++];
    while (isSpace(text[i])) i++;
    if (text[i] !== "=") {
      throw new Error(`missing "=" after "${key}" in connection info string`);
    }
    i++;
    while (isSpace(text[i])) i++;
    let value = "";
    if (text[i] === "'") {
      i++;
      let closed = false;
      while (i < text.length) {
        const c = text[i]!;
        if (c === "\\") {
          i++;
          if (i < text.length) value += text[i++];
          continue;
        }
        if (c === "'") {
          i++;
          closed = true;
          break;
        }
        value += c;
        i++;
      }
      if (!closed) throw new Error("unterminated quoted string in connection info string");
    } else {
      while (i < text.length && !isSpace(text[i])) {
        if (text[i] === "\\") {
          i++;
          if (i < text.length) value += text[i++];
          continue;
        }
        value += text[i++];
      }
    }
    checkKeyword(key);
    out[key] = value;
  }
  return out;
}

function checkKeyword(key: string): void {
  if (!KNOWN_KEYWORDS.has(key)) throw new Error(`invalid connection option "${key}"`);
}

function decodeUrlPart(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new Error(`invalid percent-encoded token: "${s}"`);
  }
}

function parseUrl(text: string): ConninfoParams {
  const out: ConninfoParams = {};
  let rest = text.replace(/^postgres(ql)?:\/\//, "");
  const q = rest.indexOf("?");
  const query = q >= 0 ? rest.slice(q + 1) : "";
  if (q >= 0) rest = rest.slice(0, q);
  const slash = rest.indexOf("/");
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  if (slash >= 0 && rest.length > slash + 1) out.dbname = decodeUrlPart(rest.slice(slash + 1));
  const at = authority.lastIndexOf("@");
  const hostPart = at >= 0 ? authority.slice(at + 1) : authority;
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(":");
    const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    if (user !== "") out.user = decodeUrlPart(user);
    if (colon >= 0) out.password = decodeUrlPart(userinfo.slice(colon + 1));
  }
  // host[:port][,host[:port]]…: each host keeps its own port, as libpq's lists do.
  const hosts: string[] = [];
  const ports: string[] = [];
  if (hostPart !== "") {
    for (const h of hostPart.split(",")) {
      const m = /^(?:\[([^\]]*)\]|([^:]*))(?::(\d*))?$/.exec(h);
      if (!m) throw new Error(`invalid host in URI: "${h}"`);
      hosts.push(decodeUrlPart(m[1] ?? m[2] ?? ""));
      ports.push(m[3] ?? "");
    }
    if (hosts.some((h) => h !== "")) out.host = hosts.join(",");
    if (ports.some((p) => p !== "")) out.port = ports.join(",");
  }
  if (query !== "") {
    for (const pair of query.split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      if (eq < 0) {
        throw new Error(`missing key/value separator "=" in URI query parameter: "${pair}"`);
      }
      let key = decodeUrlPart(pair.slice(0, eq));
      const value = decodeUrlPart(pair.slice(eq + 1).replaceAll("+", " "));
      // libpq's one JDBC-compatibility alias.
      if (key === "ssl" && value === "true") {
        key = "sslmode";
        out[key] = "require";
        continue;
      }
      checkKeyword(key);
      out[key] = value;
    }
  }
  return out;
}

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

/** Where {@linkcode resolveConninfo} reads the outside world; tests replace it. */
export interface ConninfoEnvironment {
  /** Environment variable lookup. */
  env(name: string): string | undefined;
  /** The home directory (for `~/.pgpass` and `~/.postgresql/…`). */
  home(): string | undefined;
  /**
   * Reads a file with its mode bits (and owner, for the private key check), or `undefined` when
   * it does not exist.
   */
  readFile(path: string): { text: string; mode: number | null; uid?: number | null } | undefined;
  /** Receives warnings (a group/world readable password file). */
  warn(message: string): void;
}

/** The real environment: `Deno.env`, `$HOME`, files on disk, warnings on stderr. */
export const processEnvironment: ConninfoEnvironment = {
  env: (name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined; // no --allow-env
    }
  },
  home: () => {
    try {
      return Deno.env.get("HOME");
    } catch {
      return undefined;
    }
  },
  readFile: (path) => {
    try {
      const info = Deno.statSync(path);
      if (!info.isFile) return undefined;
      return { text: Deno.readTextFileSync(path), mode: info.mode, uid: info.uid };
    } catch {
      return undefined;
    }
  },
  warn: (message) => console.error(`WARNING: ${message}`),
};

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
 * import { parseConninfo, resolveConninfo } from "./conninfo.ts";
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
    : resolveTlsFiles(pick, sslmode, home, e);
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

/**
 * Root certificate, client certificate and key, as `initialize_SSL` in libpq's
 * `fe-secure-openssl.c` finds them.
 */
function resolveTlsFiles(
  pick: (key: string, envName?: string) => string | undefined,
  sslmode: SslMode,
  home: string | undefined,
  e: ConninfoEnvironment,
): { sslrootcert: string | undefined; sslcert: string | undefined; sslkey: string | undefined } {
  const verify = sslmode === "verify-ca" || sslmode === "verify-full";
  const given = pick("sslrootcert", "PGSSLROOTCERT");
  let sslrootcert: string | undefined;
  if (given === "system") {
    // PostgreSQL 16's spelling for the system's trusted roots; like libpq, only with verify-full,
    // since any publicly trusted certificate would pass a mere chain check.
    if (sslmode !== "verify-full") {
      throw new Error(
        `weak sslmode "${sslmode}" may not be used with sslrootcert=system (use "verify-full")`,
      );
    }
  } else {
    const path = given ?? (home !== undefined ? `${home}/.postgresql/root.crt` : undefined);
    if (path !== undefined && e.readFile(path) !== undefined) {
      sslrootcert = path;
    } else if (verify) {
      // Without it libpq refuses to verify rather than fall back to some other trust store.
      throw new Error(
        path === undefined
          ? "could not get home directory to locate root certificate file; " +
            "either provide the file, use the system's trusted roots with sslrootcert=system, " +
            "or change sslmode to disable server certificate verification"
          : `root certificate file "${path}" does not exist; either provide the file, ` +
            "use the system's trusted roots with sslrootcert=system, " +
            "or change sslmode to disable server certificate verification",
      );
    }
    // require/prefer without the file: encrypted but unverified, as libpq.
  }

  // Revocation lists. Deno's TLS client has no way to check them (node:tls takes a `crl` option
  // and ignores it), so refuse rather than connect to a server whose certificate was revoked.
  for (const [keyword, envName] of [["sslcrl", "PGSSLCRL"], ["sslcrldir", "PGSSLCRLDIR"]]) {
    if (pick(keyword!, envName) !== undefined) {
      throw new Error(
        `${keyword} is not supported: the relay's TLS client cannot check certificate ` +
          `revocation lists; remove ${keyword} from the connection string`,
      );
    }
  }
  if (sslrootcert !== undefined && home !== undefined) {
    // libpq applies ~/.postgresql/root.crl by default whenever it verifies with a root certificate.
    const crl = `${home}/.postgresql/root.crl`;
    if (e.readFile(crl) !== undefined) {
      throw new Error(
        `certificate revocation list "${crl}" exists, but the relay's TLS client cannot check ` +
          "revocation lists; remove the file to connect without revocation checks",
      );
    }
  }

  const certGiven = pick("sslcert", "PGSSLCERT");
  const keyGiven = pick("sslkey", "PGSSLKEY");
  const certPath = certGiven ??
    (home !== undefined ? `${home}/.postgresql/postgresql.crt` : undefined);
  let sslcert: string | undefined;
  let sslkey: string | undefined;
  if (certPath !== undefined && e.readFile(certPath) !== undefined) {
    sslcert = certPath;
    sslkey = keyGiven ?? (home !== undefined ? `${home}/.postgresql/postgresql.key` : undefined);
    if (sslkey === undefined) {
      throw new Error("could not get home directory to locate the client's private key file");
    }
  } else if (certGiven !== undefined) {
    // libpq goes on without a certificate when the file is missing; a misspelt path would then
    // surface only as the server's "connection requires a valid client certificate".
    throw new Error(`certificate file "${certGiven}" does not exist`);
  } else if (keyGiven !== undefined) {
    throw new Error(`sslkey "${keyGiven}" is set, but there is no client certificate (sslcert)`);
  }
  return { sslrootcert, sslcert, sslkey };
}

/** A client certificate and its key, both PEM, the key decrypted. */
export interface ClientCertificate {
  /** The certificate (chain) file's text. */
  cert: string;
  /** The private key, unencrypted PKCS #8. */
  key: string;
}

/**
 * Loads the client certificate and private key named by resolved settings, with libpq's checks:
 * the key file must exist and must not be readable by group or others (0640 is allowed for a
 * root-owned file); an encrypted key needs `sslpassword`; the key must belong to the certificate.
 * Returns `undefined` when no certificate is to be sent.
 *
 * @throws {Error} naming the file that is wrong.
 *
 * @example
 * ```ts
 * import { loadClientCertificate } from "./conninfo.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   loadClientCertificate({ sslcert: undefined, sslkey: undefined, sslpassword: undefined }),
 *   undefined,
 * );
 * assert.throws(
 *   () =>
 *     loadClientCertificate({ sslcert: "/nonexistent.crt", sslkey: "k", sslpassword: undefined }),
 *   /could not open certificate file "\/nonexistent.crt"/,
 * );
 * ```
 */
export function loadClientCertificate(
  c: Pick<ResolvedConninfo, "sslcert" | "sslkey" | "sslpassword">,
  environment: ConninfoEnvironment = processEnvironment,
): ClientCertificate | undefined {
  if (c.sslcert === undefined) return undefined;
  const certFile = environment.readFile(c.sslcert);
  if (!certFile) throw new Error(`could not open certificate file "${c.sslcert}"`);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certFile.text);
  } catch (e) {
    throw new Error(
      `could not load client certificate file "${c.sslcert}": ${(e as Error).message}`,
    );
  }
  const keyPath = c.sslkey ?? "";
  const keyFile = environment.readFile(keyPath);
  if (!keyFile) throw new Error(`certificate present, but not private key file "${keyPath}"`);
  if (keyFile.mode !== null) {
    // fe-secure-openssl.c: root-owned keys may be group-readable (for system-wide certificates
    // shared through a group), anybody else's must be private.
    const loose = keyFile.uid === 0 ? keyFile.mode & 0o037 : keyFile.mode & 0o077;
    if (loose !== 0) {
      throw new Error(
        `private key file "${keyPath}" has group or world access; file must have permissions ` +
          "u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or " +
          "less if owned by root",
      );
    }
  }
  // libpq would prompt on the terminal for the passphrase; a service has no terminal.
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/.test(
    keyFile.text,
  );
  if (encrypted && c.sslpassword === undefined) {
    throw new Error(
      `could not load private key file "${keyPath}": the key is encrypted and sslpassword is not set`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(
      encrypted ? { key: keyFile.text, passphrase: c.sslpassword ?? "" } : keyFile.text,
    );
  } catch (e) {
    const why = (e as Error).message;
    throw new Error(
      `could not load private key file "${keyPath}": ${why}` +
        (encrypted && /decrypt/i.test(why) ? " (wrong sslpassword?)" : ""),
    );
  }
  if (!certificate.checkPrivateKey(key)) {
    throw new Error(`certificate does not match private key file "${keyPath}"`);
  }
  // Handed to the TLS layer decrypted: Deno's node:tls, given a wrong passphrase, would quietly
  // send no certificate at all.
  return { cert: certFile.text, key: key.export({ type: "pkcs8", format: "pem" }) as string };
}

/** What a password-file line is matched against. */
export interface PassfileKey {
  /** Host name as given (`localhost` when none). */
  host: string;
  /** Port as text. */
  port: string;
  /** Database (`replication` for replication connections). */
  dbname: string;
  /** Role name. */
  user: string;
}

/** Splits a password-file line on unescaped colons, undoing `\:` and `\\`. */
function splitPassfileLine(line: string): string[] {
  const fields: string[] = [];
  let cur = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
    } else if (c === ":") {
      fields.push(cur);
      cur = "";
    } else {
      cur += c;
    }
  }
  fields.push(cur);
  return fields;
}

/**
 * Looks a password up in password-file text: the first line whose first four fields match (`*`
 * matches anything) wins; `#` lines are comments.
 *
 * @example
 * ```ts
 * import { findPassfilePassword } from "./conninfo.ts";
 * import assert from "node:assert/strict";
 * const text = "# comment\nother:*:*:*:no\ndb\\:1:5432:*:repl:pa\\:ss\n*:*:*:*:fallback\n";
 * assert.equal(
 *   findPassfilePassword(text, { host: "db:1", port: "5432", dbname: "x", user: "repl" }),
 *   "pa:ss",
 * );
 * assert.equal(
 *   findPassfilePassword(text, { host: "h", port: "1", dbname: "x", user: "u" }),
 *   "fallback",
 * );
 * ```
 */
export function findPassfilePassword(text: string, key: PassfileKey): string | undefined {
  const want = [key.host, key.port, key.dbname, key.user];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line === "" || line.startsWith("#")) continue;
    const fields = splitPassfileLine(line);
    if (fields.length < 5) continue;
    // A password may itself contain colons only escaped; extra fields are ignored like libpq.
    if (want.every((w, i) => fields[i] === "*" || fields[i] === w)) {
      return fields[4];
    }
  }
  return undefined;
}

/** The password file's text, or `null` when it is missing or too open (with a warning). */
function readPassfile(path: string, e: ConninfoEnvironment): string | null {
  const file = e.readFile(path);
  if (!file) return null;
  if (file.mode !== null && (file.mode & 0o077) !== 0) {
    e.warn(
      `password file "${path}" has group or world access; permissions should be u=rw (0600) or less`,
    );
    return null;
  }
  return file.text;
}

/**
 * A connection string for logs and status pages: every keyword but the password, and a URL's
 * password masked.
 *
 * @example
 * ```ts
 * import { redactConninfo } from "./conninfo.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   redactConninfo("host=db password='x y' user=repl"),
 *   "host=db user=repl",
 * );
 * assert.equal(redactConninfo("postgres://u:secret@db/x"), "host=db user=u dbname=x");
 * ```
 */
export function redactConninfo(text: string): string {
  let params: ConninfoParams;
  try {
    params = parseConninfo(text);
  } catch {
    return "(unparsable connection string)";
  }
  const order = ["host", "hostaddr", "port", "user", "dbname"];
  const keys = Object.keys(params).filter((k) => k !== "password" && k !== "sslpassword");
  keys.sort((a, b) => {
    const ia = order.indexOf(a), ib = order.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
  });
  return keys.map((k) => `${k}=${quoteValue(params[k]!)}`).join(" ");
}

function quoteValue(v: string): string {
  return v !== "" && /^[^\s'\\]+$/.test(v)
    ? v
    : `'${v.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}
