/**
 * `pg_hba.conf` rules for physical replication connections, parsed and matched as PostgreSQL 15's
 * `hba.c` does, with its error texts.
 *
 * Matching follows PostgreSQL exactly where it applies to a physical walsender:
 * - database: only the unquoted keyword `replication` matches. `all` does **not** (`check_db`
 *   lets a physical walsender match nothing else), and a quoted `"replication"` names a database.
 * - user: `all` (unquoted), a name (quoted names match exactly, keywords lose their meaning when
 *   quoted), comma lists; `+role` means "member of role" — walrelay has no role catalog, so it
 *   matches only the user of that name (a role is a member of itself).
 * - address: CIDR or address + netmask columns (IPv4 entries match only IPv4 clients, IPv6 only
 *   IPv6, as PostgreSQL documents), `all`, `samehost` (any address of this machine's interfaces,
 *   exactly) and `samenet` (any address in an interface's subnet). Interfaces come from the caller;
 *   without them, only loopback (`127.0.0.1/8`, `::1/128`) counts as this machine.
 * - type: `host`, `hostssl` (TLS only), `hostnossl` (plain only), `hostnogssenc` (any: walrelay
 *   never uses GSS encryption), `hostgssenc` and `local` (never: not TCP).
 * - first matching line wins; no match is a reject.
 *
 * Not supported (refused when parsing, with a clear error): host names, `@file` inclusion,
 * authentication methods other than `trust`, `reject`, `scram-sha-256`, `md5`, `password`, and
 * authentication options.
 *
 * @module
 */

import { cidrMask, inNetwork, parseIp } from "./_ip.ts";

/** Connection types of pg_hba.conf. */
export type HbaConnectionType =
  | "local"
  | "host"
  | "hostssl"
  | "hostnossl"
  | "hostgssenc"
  | "hostnogssenc";

/** Authentication methods walrelay implements. */
export type HbaMethod = "trust" | "reject" | "scram-sha-256" | "md5" | "password";

/** One database or user entry; `quoted` entries are names, never keywords. */
export interface HbaToken {
  /** The text, quotes removed. */
  text: string;
  /** Whether it started with a double quote. */
  quoted: boolean;
}

/** The address column of a rule. */
export type HbaAddress =
  | { kind: "all" }
  | { kind: "samehost" }
  | { kind: "samenet" }
  | { kind: "network"; address: Uint8Array; mask: Uint8Array };

/** One parsed line of pg_hba.conf. */
export interface HbaRule {
  /** The line number (first physical line of a continued line), for messages. */
  line: number;
  /** The line's text with continuations joined, as PostgreSQL reports it. */
  rawLine: string;
  /** The connection type. */
  type: HbaConnectionType;
  /** The database column. */
  databases: HbaToken[];
  /** The user column. */
  users: HbaToken[];
  /** The address; undefined for `local`. */
  address: HbaAddress | undefined;
  /** The authentication method. */
  method: HbaMethod;
}

/** A network interface address, for `samehost`/`samenet`. */
export interface HbaInterface {
  /** The interface address, e.g. `192.168.1.10`. */
  address: string;
  /** Its netmask, e.g. `255.255.255.0`. */
  netmask: string;
}

/** What is known about a connection when choosing its rule. */
export interface HbaConnection {
  /** The client's IP address as text (IPv4 or IPv6). */
  address: string;
  /** Whether the connection uses TLS. */
  ssl: boolean;
  /** The user name from the startup packet. */
  user: string;
  /**
   * This machine's addresses (e.g. from `Deno.networkInterfaces()`), for `samehost`/`samenet`;
   * loopback only when omitted.
   */
  interfaces?: readonly HbaInterface[] | undefined;
}

/** A pg_hba.conf syntax error, with PostgreSQL's message and the line it is on. */
export class HbaParseError extends Error {
  /** The line number, counting from 1. */
  readonly line: number;
  /** PostgreSQL's message, without the location. */
  readonly reason: string;
  /** PostgreSQL's hint, when it gives one. */
  readonly hint: string | undefined;

  /**
   * Builds the error; the message names the line and the file.
   *
   * @param reason PostgreSQL's message.
   * @param line The line number.
   * @param fileName The file name for the message.
   * @param hint PostgreSQL's hint.
   */
  constructor(reason: string, line: number, fileName: string, hint?: string) {
    super(
      `${reason} (line ${line} of configuration file "${fileName}")${hint ? `; ${hint}` : ""}`,
    );
    this.name = "HbaParseError";
    this.line = line;
    this.reason = reason;
    this.hint = hint;
  }
}

/** Rules used when no `--hba` file is given: replication from loopback only, trusted. */
export const DEFAULT_HBA_CONF: string = "host replication all 127.0.0.1/32 trust\n" +
  "host replication all ::1/128 trust\n";

const CONNECTION_TYPES: readonly string[] = [
  "local",
  "host",
  "hostssl",
  "hostnossl",
  "hostgssenc",
  "hostnogssenc",
];
const METHODS: readonly string[] = ["trust", "reject", "scram-sha-256", "md5", "password"];
const LOOPBACK: readonly HbaInterface[] = [
  { address: "127.0.0.1", netmask: "255.0.0.0" },
  { address: "::1", netmask: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" },
];

const isBlank = (c: string | undefined): boolean => c === " " || c === "\t" || c === "\r";

/**
 * Splits one logical line into fields of comma-separated tokens, as PostgreSQL's `next_token`:
 * blanks separate fields, an unquoted comma continues the field, `#` starts a comment, double
 * quotes protect blanks, commas and `#`, and `""` inside quotes is a literal quote.
 */
function tokenizeLine(text: string, lineNo: number, fileName: string): HbaToken[][] {
  const fields: HbaToken[][] = [];
  let pos = 0;
  const nextToken = (): { token: HbaToken; comma: boolean } | undefined => {
    while (pos < text.length && (isBlank(text[pos]) || text[pos] === ",")) pos++;
    let buf = "";
    let inQuote = false;
    let wasQuote = false;
    let sawQuote = false;
    let initialQuote = false;
    let comma = false;
    while (pos < text.length && (!isBlank(text[pos]) || inQuote)) {
      const c = text[pos]!;
      if (c === "#" && !inQuote) {
        pos = text.length;
        break;
      }
      if (c === "," && !inQuote) {
        comma = true;
        break;
      }
      if (c !== '"' || wasQuote) buf += c;
      wasQuote = inQuote && c === '"' ? !wasQuote : false;
      if (c === '"') {
        inQuote = !inQuote;
        sawQuote = true;
        if (buf.length === 0) initialQuote = true;
      }
      pos++;
    }
    if (!sawQuote && buf.length === 0) return undefined;
    return { token: { text: buf, quoted: initialQuote }, comma };
  };
  while (pos < text.length) {
    const field: HbaToken[] = [];
    for (;;) {
      const next = nextToken();
      if (!next) break;
      if (!next.token.quoted && next.token.text.length > 1 && next.token.text[0] === "@") {
        throw new HbaParseError(
          `file inclusion is not supported: "${next.token.text}"`,
          lineNo,
          fileName,
        );
      }
      field.push(next.token);
      if (!next.comma) break;
    }
    if (field.length > 0) fields.push(field);
  }
  return fields;
}

const isKeyword = (t: HbaToken, word: string): boolean => !t.quoted && t.text === word;

function parseLine(
  fields: HbaToken[][],
  rule: Pick<HbaRule, "line" | "rawLine">,
  fileName: string,
): HbaRule {
  const fail = (reason: string, hint?: string): never => {
    throw new HbaParseError(reason, rule.line, fileName, hint);
  };
  let i = 0;
  const typeField = fields[i++]!;
  if (typeField.length > 1) {
    fail(
      "multiple values specified for connection type",
      "Specify exactly one connection type per line.",
    );
  }
  const typeText = typeField[0]!.text;
  if (!CONNECTION_TYPES.includes(typeText)) fail(`invalid connection type "${typeText}"`);
  const type = typeText as HbaConnectionType;

  const databases = fields[i++] ?? fail("end-of-line before database specification");
  const users = fields[i++] ?? fail("end-of-line before role specification");

  let address: HbaAddress | undefined;
  let hostName: string | undefined;
  if (type !== "local") {
    const addrField = fields[i++] ?? fail("end-of-line before IP address specification");
    if (addrField.length > 1) {
      fail("multiple values specified for host address", "Specify one address range per line.");
    }
    const tok = addrField[0]!;
    if (isKeyword(tok, "all")) address = { kind: "all" };
    else if (isKeyword(tok, "samehost")) address = { kind: "samehost" };
    else if (isKeyword(tok, "samenet")) address = { kind: "samenet" };
    else {
      const slash = tok.text.indexOf("/");
      const addrText = slash >= 0 ? tok.text.slice(0, slash) : tok.text;
      const ip = parseIp(addrText);
      let mask: Uint8Array | undefined;
      if (!ip) {
        if (slash >= 0) fail(`specifying both host name and CIDR mask is invalid: "${tok.text}"`);
        // PostgreSQL reads a host name without a netmask column; keep going so the rest of the
        // line gets PostgreSQL's own diagnostics, and refuse the host name at the end.
        hostName = tok.text;
      } else if (slash >= 0) {
        // strtol semantics, as pg_sockaddr_cidr_mask: optional blanks and sign, then digits.
        const bitsText = tok.text.slice(slash + 1);
        const max = ip.length * 8;
        const bits = /^\s*[+-]?[0-9]+$/.test(bitsText) ? Number(bitsText) : NaN;
        if (!(bits >= 0 && bits <= max)) fail(`invalid CIDR mask in address "${tok.text}"`);
        mask = cidrMask(bits, ip.length);
      } else {
        const maskField = fields[i++] ??
          fail(
            "end-of-line before netmask specification",
            "Specify an address range in CIDR notation, or provide a separate netmask.",
          );
        if (maskField.length > 1) fail("multiple values specified for netmask");
        const maskText = maskField[0]!.text;
        mask = parseIp(maskText) ??
          fail(`invalid IP mask "${maskText}": Name or service not known`);
        if (mask.length !== ip.length) fail("IP address and mask do not match");
      }
      if (ip && mask) address = { kind: "network", address: ip, mask };
    }
  }

  const methodField = fields[i++] ?? fail("end-of-line before authentication method");
  if (methodField.length > 1) {
    fail(
      "multiple values specified for authentication type",
      "Specify exactly one authentication type per line.",
    );
  }
  const methodText = methodField[0]!.text;
  if (!METHODS.includes(methodText)) fail(`invalid authentication method "${methodText}"`);

  for (; i < fields.length; i++) {
    for (const opt of fields[i]!) {
      if (!opt.text.includes("=")) {
        fail(`authentication option not in name=value format: ${opt.text}`);
      }
      fail(
        `unrecognized authentication option name: "${opt.text.slice(0, opt.text.indexOf("="))}"`,
      );
    }
  }
  if (hostName !== undefined) {
    fail(`host names are not supported: "${hostName}"`, "Use an IP address range.");
  }
  return { ...rule, type, databases, users, address, method: methodText as HbaMethod };
}

/**
 * Parses pg_hba.conf text. Lines ending in a backslash continue on the next line; `#` starts a
 * comment; blank lines are skipped.
 *
 * @param text The file's contents.
 * @param fileName The name used in error messages.
 * @returns The rules in file order.
 * @throws {HbaParseError} On the first bad line, with PostgreSQL's message and the line number.
 *
 * @example
 * ```ts
 * import { parseHba } from "./hba.ts";
 * import assert from "node:assert/strict";
 * const rules = parseHba("# comment\nhost replication repl 10.0.0.0/8 scram-sha-256\n");
 * assert.equal(rules.length, 1);
 * assert.equal(rules[0]?.line, 2);
 * assert.equal(rules[0]?.method, "scram-sha-256");
 * assert.throws(() => parseHba("host replication all all ident"), /invalid authentication method "ident" \(line 1/);
 * ```
 */
export function parseHba(text: string, fileName: string = "pg_hba.conf"): HbaRule[] {
  const physical = text.split("\n");
  if (physical.at(-1) === "") physical.pop();
  const rules: HbaRule[] = [];
  for (let n = 0; n < physical.length;) {
    const line = n + 1;
    let joined = "";
    // Strip the line break (and a Windows CR), then join backslash continuations.
    for (;;) {
      const part = (physical[n++] ?? "").replace(/\r+$/, "");
      if (part.endsWith("\\") && n < physical.length) {
        joined += part.slice(0, -1);
        continue;
      }
      joined += part.endsWith("\\") ? part.slice(0, -1) : part;
      break;
    }
    const fields = tokenizeLine(joined, line, fileName);
    if (fields.length > 0) rules.push(parseLine(fields, { line, rawLine: joined }, fileName));
  }
  return rules;
}

function matchesAddress(
  address: HbaAddress,
  client: Uint8Array | undefined,
  interfaces: readonly HbaInterface[],
): boolean {
  if (address.kind === "all") return true;
  if (!client) return false;
  if (address.kind === "network") return inNetwork(client, address.address, address.mask);
  for (const itf of interfaces) {
    const ip = parseIp(itf.address);
    if (!ip) continue;
    const mask = address.kind === "samehost"
      ? cidrMask(ip.length * 8, ip.length)
      : parseIp(itf.netmask);
    if (mask && inNetwork(client, ip, mask)) return true;
  }
  return false;
}

/**
 * The rule that governs a physical replication connection: the first whose type, database,
 * user and address all match, or undefined (an implicit reject).
 *
 * @example
 * ```ts
 * import { matchHba, parseHba } from "./hba.ts";
 * import assert from "node:assert/strict";
 * const rules = parseHba(
 *   "host all all 0.0.0.0/0 trust\n" + // `all` never matches replication
 *     "hostssl replication repl 10.0.0.0/8 scram-sha-256\n",
 * );
 * assert.equal(matchHba(rules, { address: "10.1.2.3", ssl: true, user: "repl" })?.line, 2);
 * assert.equal(matchHba(rules, { address: "10.1.2.3", ssl: false, user: "repl" }), undefined);
 * ```
 */
export function matchHba(rules: readonly HbaRule[], conn: HbaConnection): HbaRule | undefined {
  const client = parseIp(conn.address);
  const interfaces = conn.interfaces ?? LOOPBACK;
  for (const rule of rules) {
    switch (rule.type) {
      case "local":
      case "hostgssenc":
        continue;
      case "hostssl":
        if (!conn.ssl) continue;
        break;
      case "hostnossl":
        if (conn.ssl) continue;
        break;
    }
    if (!rule.databases.some((t) => isKeyword(t, "replication"))) continue;
    const userMatches = rule.users.some((t) =>
      !t.quoted && t.text.startsWith("+")
        ? t.text.slice(1) === conn.user
        : t.text === conn.user || isKeyword(t, "all")
    );
    if (!userMatches) continue;
    if (rule.address && matchesAddress(rule.address, client, interfaces)) return rule;
  }
  return undefined;
}

/**
 * PostgreSQL 15's FATAL message (SQLSTATE 28000) when pg_hba.conf refuses a replication
 * connection: no matching line, or (`explicit`) a matching `reject` line.
 *
 * @param address The client address as text.
 * @param user The user from the startup packet.
 * @param ssl Whether the connection uses TLS.
 * @param explicit True when a `reject` rule matched.
 *
 * @example
 * ```ts
 * import { hbaRejectMessage } from "./hba.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   hbaRejectMessage("127.0.0.1", "repl", false),
 *   'no pg_hba.conf entry for replication connection from host "127.0.0.1", user "repl", no encryption',
 * );
 * ```
 */
export function hbaRejectMessage(
  address: string,
  user: string,
  ssl: boolean,
  explicit: boolean = false,
): string {
  const encryption = ssl ? "SSL encryption" : "no encryption";
  return explicit
    ? `pg_hba.conf rejects replication connection for host "${address}", user "${user}", ${encryption}`
    : `no pg_hba.conf entry for replication connection from host "${address}", user "${user}", ${encryption}`;
}
