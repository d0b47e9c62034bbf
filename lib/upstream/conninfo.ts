/**
 * libpq connection strings as written: `key=value` lists and `postgres://` URLs, the keywords
 * libpq knows, and printing one without its passwords. What the settings come to after defaults,
 * environment and files is the business of `resolveConninfo` (`conninfo_resolve.ts`).
 *
 * @module
 */

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
