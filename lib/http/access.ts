/**
 * Who may use the HTTP server: `--http-hba FILE` (lines of path prefix, client address and
 * method, first match wins) and `--http-token FILE` (a bearer token). `/wal/` hands out the
 * cluster's WAL, which is the whole database, so it needs the same care as a replication
 * connection: without either option only loopback clients are admitted, and the server refuses
 * to listen anywhere but on loopback.
 *
 * The file, one rule a line, `#` starts a comment:
 *
 * ```text
 * # PATH    ADDRESS        METHOD
 * /healthz  all            trust
 * /metrics  10.0.0.0/8     trust
 * /wal/     10.1.2.0/24    token
 * all       127.0.0.1/32   trust
 * ```
 *
 * PATH is `all` or a path prefix (`/wal/` matches every file under it, `/metrics` matches
 * `/metrics` itself); ADDRESS is `all`, an IP address or a CIDR network; METHOD is `trust`
 * (admit), `token` (admit with `Authorization: Bearer <token>`) or `reject`. A request no line
 * matches is refused.
 *
 * @module
 */

import { cidrMask, inNetwork, parseIp } from "../auth/_ip.ts";
import { timingSafeEqual, utf8 } from "../auth/_bytes.ts";

/** What a rule does with a request it matches. */
export type HttpAccessMethod = "trust" | "token" | "reject";

/** One line of an HTTP access file. */
export interface HttpAccessRule {
  /** `undefined` for `all`, otherwise the path prefix. */
  path: string | undefined;
  /** `undefined` for `all`, otherwise the network. */
  network: { address: Uint8Array; mask: Uint8Array } | undefined;
  /** What to do. */
  method: HttpAccessMethod;
  /** Line number in the file, for messages. */
  line: number;
}

/** The verdict on one request. */
export type HttpAccessVerdict =
  | { allowed: true; rule: HttpAccessRule | undefined }
  | { allowed: false; status: 401 | 403; reason: string };

/** A line of an HTTP access file that cannot be understood. */
export class HttpAccessParseError extends Error {
  /**
   * An error naming the file and the line.
   *
   * @param fileName The file.
   * @param line The line number.
   * @param message What is wrong.
   * @param hint What was expected.
   */
  constructor(fileName: string, line: number, message: string, hint?: string) {
    super(`${message} in line ${line} of file "${fileName}"${hint ? `: ${hint}` : ""}`);
    this.name = "HttpAccessParseError";
  }
}

/**
 * Parses an HTTP access file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHttpHba } from "./access.ts";
 * const rules = parseHttpHba("/wal/ 10.0.0.0/8 token # archive readers\nall all reject\n");
 * assert.equal(rules.length, 2);
 * assert.equal(rules[0]!.path, "/wal/");
 * assert.equal(rules[0]!.method, "token");
 * ```
 */
export function parseHttpHba(text: string, fileName: string = "http_hba.conf"): HttpAccessRule[] {
  const rules: HttpAccessRule[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const content = lines[i]!.replace(/#.*$/, "").trim();
    if (content === "") continue;
    const fields = content.split(/\s+/);
    if (fields.length !== 3) {
      throw new HttpAccessParseError(
        fileName,
        line,
        `expected PATH ADDRESS METHOD, found ${fields.length} field${
          fields.length === 1 ? "" : "s"
        }`,
      );
    }
    const [path, address, method] = fields as [string, string, string];
    if (path !== "all" && !path.startsWith("/")) {
      throw new HttpAccessParseError(
        fileName,
        line,
        `invalid path "${path}"`,
        "expected all or /…",
      );
    }
    if (method !== "trust" && method !== "token" && method !== "reject") {
      throw new HttpAccessParseError(
        fileName,
        line,
        `invalid method "${method}"`,
        "expected trust, token or reject",
      );
    }
    rules.push({
      path: path === "all" ? undefined : path,
      network: address === "all" ? undefined : parseNetwork(address, fileName, line),
      method,
      line,
    });
  }
  return rules;
}

function parseNetwork(
  text: string,
  fileName: string,
  line: number,
): { address: Uint8Array; mask: Uint8Array } {
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  const bitsText = slash < 0 ? undefined : text.slice(slash + 1);
  const bits = bitsText === undefined ? undefined : Number(bitsText);
  if (
    !ip ||
    (bits !== undefined &&
      (!/^[0-9]{1,3}$/.test(bitsText!) || bits > ip.length * 8))
  ) {
    throw new HttpAccessParseError(
      fileName,
      line,
      `invalid address "${text}"`,
      "expected all, an IP address or a CIDR network",
    );
  }
  return { address: ip, mask: cidrMask(bits ?? ip.length * 8, ip.length) };
}

/** Whether `path` lies under the prefix: `/wal/` covers `/wal/x`, `/metrics` covers itself. */
function underPrefix(path: string, prefix: string): boolean {
  if (prefix.endsWith("/")) return path.startsWith(prefix) || path === prefix.slice(0, -1);
  return path === prefix || path.startsWith(prefix + "/");
}

/** Whether a listen address is on loopback, where only local users can reach it. */
export function isLoopbackHost(hostname: string): boolean {
  if (hostname === "localhost") return true;
  const ip = parseIp(hostname.replace(/^\[(.*)\]$/, "$1"));
  if (!ip) return false;
  if (ip.length === 4) return ip[0] === 127;
  return ip.every((b, i) => b === (i === 15 ? 1 : 0));
}

/**
 * The access rules of the HTTP server: the rules file when one is given, otherwise `all all
 * token` when a token is, otherwise loopback clients only.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpAccess } from "./access.ts";
 * const access = new HttpAccess({ token: "s3cret-s3cret-s3cret" });
 * const v = await access.check("/wal/000000010000000000000001", "10.0.0.5", undefined);
 * assert.equal(v.allowed, false);
 * const ok = await access.check("/status", "10.0.0.5", "Bearer s3cret-s3cret-s3cret");
 * assert.equal(ok.allowed, true);
 * ```
 */
export class HttpAccess {
  /** The rules in force, first match wins. */
  readonly rules: readonly HttpAccessRule[];
  /** Whether the default (loopback only) is in force, i.e. nothing admits other clients. */
  readonly loopbackOnly: boolean;
  readonly #tokenHash: Promise<Uint8Array> | undefined;

  /**
   * Rules in force from now on.
   *
   * @param options `rules` from an access file, `token` the bearer token; neither means loopback
   *   clients only.
   * @throws {Error} when a rule says `token` and no token is given.
   */
  constructor(options: { rules?: readonly HttpAccessRule[]; token?: string } = {}) {
    const { rules, token } = options;
    if (token !== undefined && token === "") throw new Error("the HTTP bearer token is empty");
    const needsToken = rules?.find((r) => r.method === "token");
    if (needsToken && token === undefined) {
      throw new Error(
        `HTTP access rule in line ${needsToken.line} says token, but no --http-token is given`,
      );
    }
    this.loopbackOnly = rules === undefined && token === undefined;
    this.rules = rules ??
      (token !== undefined
        ? [{ path: undefined, network: undefined, method: "token", line: 0 }]
        : LOOPBACK_RULES);
    this.#tokenHash = token === undefined ? undefined : sha256(utf8(token));
  }

  /**
   * Judges one request: its path, the client's address and its `Authorization` header.
   * 401 asks for the token (missing or wrong), 403 refuses outright.
   */
  async check(
    path: string,
    address: string,
    authorization: string | null | undefined,
  ): Promise<HttpAccessVerdict> {
    const client = unmapped(parseIp(address));
    const rule = this.rules.find((r) =>
      (r.path === undefined || underPrefix(path, r.path)) &&
      (r.network === undefined ||
        (client !== undefined && inNetwork(client, r.network.address, r.network.mask)))
    );
    if (!rule) {
      return { allowed: false, status: 403, reason: `no HTTP access rule admits ${address}` };
    }
    if (rule.method === "trust") return { allowed: true, rule };
    if (rule.method === "reject") {
      return {
        allowed: false,
        status: 403,
        reason: rule.line > 0
          ? `HTTP access rule in line ${rule.line} rejects ${address}`
          : `only loopback clients are admitted`,
      };
    }
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
    if (!m) return { allowed: false, status: 401, reason: "a bearer token is required" };
    // Hashes of equal length compared in constant time: neither the token's length nor how
    // much of a guess matches shows in the time the answer takes.
    const given = await sha256(utf8(m[1]!));
    if (!timingSafeEqual(given, await this.#tokenHash!)) {
      return { allowed: false, status: 401, reason: "the bearer token is wrong" };
    }
    return { allowed: true, rule };
  }
}

const LOOPBACK_RULES: readonly HttpAccessRule[] = [
  ...["127.0.0.0/8", "::1/128"].map((n) => ({
    path: undefined,
    network: parseNetwork(n, "", 0),
    method: "trust" as const,
    line: 0,
  })),
  { path: undefined, network: undefined, method: "reject", line: 0 },
];

/**
 * An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`: match it as the IPv4
 * address it is, so IPv4 rules cover it.
 */
function unmapped(ip: Uint8Array | undefined): Uint8Array | undefined {
  if (ip?.length !== 16) return ip;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return ip;
  return ip[10] === 0xff && ip[11] === 0xff ? ip.subarray(12) : ip;
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/**
 * Reads a bearer token file, as `--http-token` and `walrelay status --token` take it: the first
 * line, trimmed; it must be at least 16 characters, so that it cannot be guessed by trying.
 *
 * @throws {Error} naming the file when it cannot be read or holds no usable token.
 *
 * @example
 * ```ts
 * import { readHttpTokenFile } from "./access.ts";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "s3cret-s3cret-s3cret\n");
 * assert.equal(await readHttpTokenFile(path), "s3cret-s3cret-s3cret");
 * await Deno.remove(path);
 * ```
 */
export async function readHttpTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`could not load HTTP token file "${path}": ${(e as Error).message}`);
  }
  const token = text.split("\n")[0]!.trim();
  if (token.length < 16) {
    throw new Error(
      `HTTP token file "${path}" holds ${
        token === "" ? "no token" : "a token shorter than 16 characters"
      }`,
    );
  }
  return token;
}

/**
 * Reads `--http-hba` and `--http-token` into the access rules; the token as
 * {@linkcode readHttpTokenFile} reads it.
 *
 * @example
 * ```ts ignore
 * import { loadHttpAccess } from "./access.ts";
 * const access = await loadHttpAccess({ hbaFile: "/etc/walrelay/http_hba.conf", tokenFile: "/etc/walrelay/http_token" });
 * ```
 */
export async function loadHttpAccess(
  files: { hbaFile?: string | undefined; tokenFile?: string | undefined },
): Promise<HttpAccess> {
  const read = async (what: string, path: string): Promise<string> => {
    try {
      return await Deno.readTextFile(path);
    } catch (e) {
      throw new Error(`could not load ${what} "${path}": ${(e as Error).message}`);
    }
  };
  const token = files.tokenFile === undefined
    ? undefined
    : await readHttpTokenFile(files.tokenFile);
  const rules = files.hbaFile === undefined
    ? undefined
    : parseHttpHba(await read("HTTP access file", files.hbaFile), files.hbaFile);
  return new HttpAccess({
    ...(rules ? { rules } : {}),
    ...(token !== undefined ? { token } : {}),
  });
}
