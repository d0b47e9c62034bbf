/**
 * libpq connection strings: `key=value` lists and `postgres://` URLs, the `PG*` environment
 * defaults, and the password file (`~/.pgpass`), as `fe-connect.c` reads them.
 *
 * @module
 */

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

/** A connection's settings after defaults, environment and password file. */
export interface ResolvedConninfo {
  /** Host name (or address) to connect to; the first of a list. */
  host: string;
  /** Address to connect to instead of resolving `host` (`hostaddr`). */
  hostaddr: string | undefined;
  /** TCP port. */
  port: number;
  /** Role name. */
  user: string;
  /** Password from the string, `PGPASSWORD` or the password file. */
  password: string | undefined;
  /** Database name (for the password file; a physical walsender ignores it). */
  dbname: string;
  /** TLS policy. */
  sslmode: SslMode;
  /** Root certificate file (PEM), when given or present at `~/.postgresql/root.crt`. */
  sslrootcert: string | undefined;
  /** `application_name` (or the fallback). */
  applicationName: string;
  /** `connect_timeout` in seconds (0 = none). */
  connectTimeout: number;
  /** Every keyword as given, for what the fields above do not cover. */
  params: ConninfoParams;
}

/** Where {@linkcode resolveConninfo} reads the outside world; tests replace it. */
export interface ConninfoEnvironment {
  /** Environment variable lookup. */
  env(name: string): string | undefined;
  /** The home directory (for `~/.pgpass` and `~/.postgresql/root.crt`). */
  home(): string | undefined;
  /** Reads a file with its mode bits, or `undefined` when it does not exist. */
  readFile(path: string): { text: string; mode: number | null } | undefined;
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
      return { text: Deno.readTextFileSync(path), mode: info.mode };
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

/**
 * Applies libpq's defaults to parsed settings: `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`,
 * `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`,
 * `PGPASSFILE`; then, without a password, the password file. A list of hosts is cut to its first
 * entry. Unix-socket hosts (a path) are refused: the relay connects over TCP.
 *
 * @example
 * ```ts
 * import { parseConninfo, resolveConninfo } from "./conninfo.ts";
 * import assert from "node:assert/strict";
 * const environment = {
 *   env: (n: string) => ({ PGUSER: "repl", PGSSLMODE: "require" } as Record<string, string>)[n],
 *   home: () => "/home/x",
 *   readFile: () => ({ text: "db:*:replication:repl:secret\n", mode: 0o100600 }),
 *   warn: () => {},
 * };
 * const c = resolveConninfo(parseConninfo("host=db"), { replication: true, environment });
 * assert.equal(c.user, "repl");
 * assert.equal(c.password, "secret");
 * assert.equal(c.sslmode, "require");
 * assert.equal(c.port, 5432);
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
  const host = (pick("host", "PGHOST") ?? "").split(",")[0] ?? "";
  const hostaddr = pick("hostaddr", "PGHOSTADDR")?.split(",")[0];
  if (host.startsWith("/") || host.startsWith("@")) {
    throw new Error(`Unix-domain socket host "${host}" is not supported; use a TCP host`);
  }
  const portText = (pick("port", "PGPORT") ?? "5432").split(",")[0] || "5432";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`invalid port number: "${portText}"`);
  }
  const user = pick("user", "PGUSER") ?? e.env("USER") ?? "postgres";
  const dbname = pick("dbname", "PGDATABASE") ?? user;
  const sslmodeText = pick("sslmode", "PGSSLMODE") ?? "prefer";
  if (!SSL_MODES.includes(sslmodeText as SslMode)) {
    throw new Error(`invalid sslmode value: "${sslmodeText}"`);
  }
  const home = e.home();
  let sslrootcert = pick("sslrootcert", "PGSSLROOTCERT");
  if (sslrootcert === undefined && home !== undefined) {
    // libpq's default root store: when present, require behaves like verify-ca.
    const def = `${home}/.postgresql/root.crt`;
    if (e.readFile(def)) sslrootcert = def;
  }
  const timeoutText = pick("connect_timeout", "PGCONNECT_TIMEOUT") ?? "0";
  const connectTimeout = Math.max(0, parseInt(timeoutText, 10) || 0);
  const resolvedHost = host || (hostaddr ?? "localhost");
  let password = pick("password", "PGPASSWORD");
  if (password === undefined) {
    const passfile = pick("passfile", "PGPASSFILE") ??
      (home !== undefined ? `${home}/.pgpass` : undefined);
    if (passfile !== undefined) {
      password = passwordFromFile(passfile, {
        host: host || "localhost",
        port: String(port),
        dbname: options.replication ? "replication" : dbname,
        user,
      }, e);
    }
  }
  return {
    host: resolvedHost,
    hostaddr,
    port,
    user,
    password,
    dbname,
    sslmode: sslmodeText as SslMode,
    sslrootcert,
    applicationName: pick("application_name", "PGAPPNAME") ??
      params.fallback_application_name ?? options.fallbackApplicationName ?? "",
    connectTimeout,
    params,
  };
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

function passwordFromFile(
  path: string,
  key: PassfileKey,
  e: ConninfoEnvironment,
): string | undefined {
  const file = e.readFile(path);
  if (!file) return undefined;
  if (file.mode !== null && (file.mode & 0o077) !== 0) {
    e.warn(
      `password file "${path}" has group or world access; permissions should be u=rw (0600) or less`,
    );
    return undefined;
  }
  return findPassfilePassword(file.text, key);
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
