/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server side, as PostgreSQL's `auth-scram.c` runs it:
 * the stored verifier format of `pg_authid.rolpassword`, the exchange with its exact error texts,
 * channel binding `tls-server-end-point`, and the mock exchange that hides whether a user exists.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import { concatBytes } from "../_io.ts";
import { decodeBase64, encodeBase64, hmacSha256, timingSafeEqual, utf8 } from "./_bytes.ts";
import { saslprep } from "./_saslprep.ts";

/** The mechanism name without channel binding. */
export const SCRAM_SHA_256 = "SCRAM-SHA-256";
/** The mechanism name with channel binding (`tls-server-end-point`). */
export const SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS";

/** PostgreSQL's defaults (`scram-common.h`): 4096 iterations, 16-byte salt, 18-byte nonce. */
const DEFAULT_ITERATIONS = 4096;
const DEFAULT_SALT_LEN = 16;
const RAW_NONCE_LEN = 18;
const KEY_LEN = 32;

/** A parsed `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier. */
export interface ScramVerifier {
  /** PBKDF2 iteration count. */
  iterations: number;
  /** The salt as stored (base64), echoed verbatim in server-first-message as PostgreSQL does. */
  saltBase64: string;
  /** The decoded salt. */
  salt: Uint8Array;
  /** SHA-256(ClientKey), 32 bytes. */
  storedKey: Uint8Array;
  /** HMAC(SaltedPassword, "Server Key"), 32 bytes. */
  serverKey: Uint8Array;
}

/** Options for {@linkcode buildScramVerifier}. */
export interface BuildScramVerifierOptions {
  /** PBKDF2 iterations; PostgreSQL 15's default is 4096. */
  iterations?: number;
  /** The salt; 16 random bytes when omitted. */
  salt?: Uint8Array;
}

/** Channel binding data of the TLS connection the exchange runs on. */
export interface ScramChannelBinding {
  /** The only type PostgreSQL supports. */
  type: "tls-server-end-point";
  /** The hash of the server certificate (RFC 5929 §4.1). */
  data: Uint8Array;
}

/** Options for {@linkcode ScramServer}. */
export interface ScramServerOptions {
  /**
   * The role's stored verifier. For a user without one (unknown, or with an md5 verifier), pass
   * {@linkcode mockVerifier}'s result: the exchange then runs with a stable fake salt and fails
   * at the end like a wrong password. `undefined` or an unparsable value also fails at the end,
   * but with a random salt per attempt, which lets a client tell that the user has no verifier.
   */
  verifier: string | undefined;
  /** The user name from the startup packet (SCRAM's `n=` is ignored, as in PostgreSQL). */
  user: string;
  /**
   * Present when the server can bind this (TLS) connection, i.e. when it advertised
   * `SCRAM-SHA-256-PLUS`. Then `y,,` is a downgrade and refused, and `p=` binding data is checked.
   */
  channelBinding?: ScramChannelBinding | undefined;
  /**
   * The mechanism named in SASLInitialResponse. When omitted, `-PLUS` is assumed exactly when the
   * client sends a `p=` gs2 header.
   */
  mechanism?: string | undefined;
  /** Forces the server nonce suffix (tests reproducing a capture); random otherwise. */
  serverNonce?: string | undefined;
}

type State = "init" | "salt-sent" | "finished";

/**
 * Parses a verifier as `pg_authid.rolpassword` stores it. Returns undefined for anything else
 * (md5 verifiers, plain text, damaged values).
 *
 * @example
 * ```ts
 * import { parseScramVerifier } from "./scram.ts";
 * import assert from "node:assert/strict";
 * const key = btoa(String.fromCharCode(...new Uint8Array(32)));
 * const v = parseScramVerifier(`SCRAM-SHA-256$4096:I9V1fsCbIuCWg+nyskNw1w==$${key}:${key}`);
 * assert.equal(v?.iterations, 4096);
 * assert.equal(v?.salt.length, 16);
 * assert.equal(parseScramVerifier("md5" + "0".repeat(32)), undefined);
 * ```
 */
export function parseScramVerifier(text: string): ScramVerifier | undefined {
  // Stricter than PostgreSQL (which skips whitespace inside base64): a stray space or newline in
  // a passwords file is a mistake worth reporting, not something to accept silently.
  const m = /^SCRAM-SHA-256\$([0-9]+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/
    .exec(text);
  if (!m) return undefined;
  const iterations = Number(m[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 0x7fffffff) {
    return undefined;
  }
  const salt = decodeBase64(m[2]!);
  const storedKey = decodeBase64(m[3]!);
  const serverKey = decodeBase64(m[4]!);
  if (!salt || storedKey?.length !== KEY_LEN || serverKey?.length !== KEY_LEN) return undefined;
  return { iterations, saltBase64: m[2]!, salt, storedKey, serverKey };
}

const hmac = hmacSha256;

async function sha256(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(data)));
}

async function saltedPassword(
  password: string,
  salt: Uint8Array,
  iterations: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const key = await crypto.subtle.importKey("raw", utf8(saslprep(password)), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(salt), iterations },
    key,
    KEY_LEN * 8,
  );
  return new Uint8Array(bits);
}

/**
 * Builds a verifier in PostgreSQL's stored form from a password, as `CREATE ROLE … PASSWORD`
 * does with `password_encryption = scram-sha-256`: same SASLprep (with PostgreSQL's fallback to
 * the raw password when SASLprep refuses it; see `_saslprep.ts` for the few approximations), same
 * layout, so with the same salt and iterations the result equals PostgreSQL's byte for byte.
 *
 * @example
 * ```ts
 * import { buildScramVerifier, parseScramVerifier } from "./scram.ts";
 * import assert from "node:assert/strict";
 * const v = await buildScramVerifier("replpw", {
 *   salt: Uint8Array.fromBase64("I9V1fsCbIuCWg+nyskNw1w=="),
 * });
 * assert.ok(v.startsWith("SCRAM-SHA-256$4096:I9V1fsCbIuCWg+nyskNw1w==$"));
 * assert.ok(parseScramVerifier(v));
 * ```
 */
export async function buildScramVerifier(
  password: string,
  options: BuildScramVerifierOptions = {},
): Promise<string> {
  const iterations = options.iterations ?? DEFAULT_ITERATIONS;
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 0x7fffffff) {
    throw new RangeError(`invalid SCRAM iteration count: ${iterations}`);
  }
  const salt = options.salt ?? crypto.getRandomValues(new Uint8Array(DEFAULT_SALT_LEN));
  if (salt.length === 0) throw new RangeError("SCRAM salt must not be empty");
  const salted = await saltedPassword(password, salt, iterations);
  const storedKey = await sha256(await hmac(salted, utf8("Client Key")));
  const serverKey = await hmac(salted, utf8("Server Key"));
  return `SCRAM-SHA-256$${iterations}:${encodeBase64(salt)}$${encodeBase64(storedKey)}:${
    encodeBase64(serverKey)
  }`;
}

/**
 * Checks a plain-text password (the `password` method) against a SCRAM verifier, comparing the
 * ServerKey as PostgreSQL's `scram_verify_plain_password` does. False for non-SCRAM values.
 *
 * @example
 * ```ts
 * import { buildScramVerifier, verifyScramPassword } from "./scram.ts";
 * import assert from "node:assert/strict";
 * const v = await buildScramVerifier("secret", { iterations: 16 });
 * assert.equal(await verifyScramPassword(v, "secret"), true);
 * assert.equal(await verifyScramPassword(v, "Secret"), false);
 * ```
 */
export async function verifyScramPassword(verifier: string, password: string): Promise<boolean> {
  const v = parseScramVerifier(verifier);
  if (!v) return false;
  const salted = await saltedPassword(password, v.salt, v.iterations);
  return timingSafeEqual(await hmac(salted, utf8("Server Key")), v.serverKey);
}

/**
 * A stand-in verifier for a user who has no SCRAM verifier, as PostgreSQL's
 * `mock_scram_secret`: salt = the first 16 bytes of SHA-256(user ‖ secret), so the same user
 * always gets the same salt (as a real user would) and nobody without `secret` can predict it;
 * zero keys, which {@linkcode ScramServer} always refuses. Keep one random `secret` per server
 * (PostgreSQL uses its cluster's mock authentication nonce).
 *
 * @param user The user name from the startup packet.
 * @param secret A server-wide random secret (PostgreSQL's is 32 bytes).
 * @param iterations The iteration count to advertise (PostgreSQL 15: 4096).
 *
 * @example
 * ```ts
 * import { mockVerifier, parseScramVerifier } from "./scram.ts";
 * import assert from "node:assert/strict";
 * const secret = crypto.getRandomValues(new Uint8Array(32));
 * const a = await mockVerifier("nobody", secret);
 * assert.equal(a, await mockVerifier("nobody", secret));
 * assert.equal(parseScramVerifier(a)?.salt.length, 16);
 * ```
 */
export async function mockVerifier(
  user: string,
  secret: Uint8Array,
  iterations: number = DEFAULT_ITERATIONS,
): Promise<string> {
  const salt = (await sha256(concatBytes(utf8(user), secret))).subarray(0, DEFAULT_SALT_LEN);
  const zero = encodeBase64(new Uint8Array(KEY_LEN));
  return `SCRAM-SHA-256$${iterations}:${encodeBase64(salt)}$${zero}:${zero}`;
}

/**
 * The SASL mechanisms to list in AuthenticationSASL, most preferred first, as PostgreSQL does:
 * `-PLUS` only over TLS and only when the server can compute the channel binding data
 * (pitfall 17: libpq aborts if `-PLUS` is offered on a plain connection).
 *
 * @example
 * ```ts
 * import { scramMechanisms } from "./scram.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(scramMechanisms(false, true), ["SCRAM-SHA-256"]);
 * assert.deepEqual(scramMechanisms(true, true), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
 * ```
 */
export function scramMechanisms(tls: boolean, canBind: boolean): string[] {
  return tls && canBind ? [SCRAM_SHA_256_PLUS, SCRAM_SHA_256] : [SCRAM_SHA_256];
}

function malformed(detail: string): PgError {
  return PgError.fatal(SqlState.PROTOCOL_VIOLATION, "malformed SCRAM message", { detail });
}

/** A character for an error message, as PostgreSQL's `sanitize_char`: printable or hex. */
function sanitizeChar(ch: string | undefined): string {
  if (ch === undefined || ch === "") return "0x00";
  const code = ch.charCodeAt(0);
  if (code >= 0x21 && code <= 0x7e) return `'${ch}'`;
  const byte = code < 0x80 ? code : utf8(ch)[0]!;
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

/** A client string for an error message, as PostgreSQL's `sanitize_str`. */
function sanitizeStr(s: string): string {
  let out = "";
  for (const ch of s.slice(0, 30)) {
    const code = ch.charCodeAt(0);
    out += code >= 0x21 && code <= 0x7e ? ch : "?";
  }
  return out.slice(0, 30);
}

function isPrintable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2c) return false;
  }
  return true;
}

/** A cursor over one SCRAM message, reading `x=value` attributes separated by commas. */
class Reader {
  pos = 0;
  constructor(readonly text: string) {}

  get rest(): string {
    return this.text.slice(this.pos);
  }

  peek(): string | undefined {
    return this.text[this.pos];
  }

  /** The value of the attribute `attr`, which must come next (`read_attr_value`). */
  attr(attr: string): string {
    const found = this.peek();
    if (found !== attr) {
      throw malformed(`Expected attribute "${attr}" but found "${sanitizeChar(found)}".`);
    }
    this.pos++;
    if (this.peek() !== "=") throw malformed(`Expected character "=" for attribute "${attr}".`);
    this.pos++;
    return this.value();
  }

  /** The next attribute of any name and its value (`read_any_attr`). */
  anyAttr(): [string, string] {
    const attr = this.peek();
    if (attr === undefined) throw malformed("Attribute expected, but found end of string.");
    if (!/^[A-Za-z]$/.test(attr)) {
      throw malformed(
        `Attribute expected, but found invalid character "${sanitizeChar(attr)}".`,
      );
    }
    this.pos++;
    if (this.peek() !== "=") throw malformed(`Expected character "=" for attribute "${attr}".`);
    this.pos++;
    return [attr, this.value()];
  }

  /** Reads up to the next comma, consuming the comma. */
  private value(): string {
    const end = this.text.indexOf(",", this.pos);
    if (end < 0) {
      const v = this.text.slice(this.pos);
      this.pos = this.text.length;
      return v;
    }
    const v = this.text.slice(this.pos, end);
    this.pos = end + 1;
    return v;
  }
}

/**
 * The server side of one SCRAM-SHA-256 exchange. Feed it the client's two messages in order;
 * every failure is a FATAL {@linkcode PgError} carrying PostgreSQL's SQLSTATE and wording, so the
 * caller only sends it as ErrorResponse and closes. After a successful `handleClientFinal`, send
 * AuthenticationSASLFinal with the returned text, then AuthenticationOk.
 *
 * @example
 * ```ts
 * import { buildScramVerifier, ScramServer } from "./scram.ts";
 * import assert from "node:assert/strict";
 * const verifier = await buildScramVerifier("pw", { iterations: 16 });
 * const server = new ScramServer({ verifier, user: "repl" });
 * const first = server.handleClientFirst("n,,n=,r=clientnonce");
 * assert.match(first, /^r=clientnonce.{24},s=.+,i=16$/);
 * ```
 */
export class ScramServer {
  readonly #user: string;
  readonly #verifier: ScramVerifier;
  readonly #doomed: boolean;
  readonly #binding: ScramChannelBinding | undefined;
  readonly #mechanism: string | undefined;
  readonly #forcedNonce: string | undefined;
  #state: State = "init";
  #bindingInUse = false;
  #cbindFlag = "";
  #clientFirstBare = "";
  #clientNonce = "";
  #serverNonce = "";
  #serverFirst = "";

  /**
   * Starts an exchange; nothing is sent until {@linkcode ScramServer.handleClientFirst}.
   *
   * @param options The stored verifier, the startup user, and the connection's channel binding.
   * @throws {PgError} FATAL 08P01 when `mechanism` is not one this connection offered.
   */
  constructor(options: ScramServerOptions) {
    this.#user = options.user;
    this.#binding = options.channelBinding;
    this.#forcedNonce = options.serverNonce;
    const mech = options.mechanism;
    if (
      mech !== undefined && mech !== SCRAM_SHA_256 &&
      !(mech === SCRAM_SHA_256_PLUS && this.#binding !== undefined)
    ) {
      throw PgError.fatal(
        SqlState.PROTOCOL_VIOLATION,
        "client selected an invalid SASL authentication mechanism",
      );
    }
    this.#mechanism = mech;
    const parsed = options.verifier === undefined
      ? undefined
      : parseScramVerifier(options.verifier);
    if (parsed) {
      this.#verifier = parsed;
      // A zero StoredKey is mockVerifier's mark; no password hashes to it.
      this.#doomed = parsed.storedKey.every((b) => b === 0);
    } else {
      const salt = crypto.getRandomValues(new Uint8Array(DEFAULT_SALT_LEN));
      this.#verifier = {
        iterations: DEFAULT_ITERATIONS,
        saltBase64: encodeBase64(salt),
        salt,
        storedKey: new Uint8Array(KEY_LEN),
        serverKey: new Uint8Array(KEY_LEN),
      };
      this.#doomed = true;
    }
  }

  /**
   * Reads client-first-message (the SASLInitialResponse data) and returns server-first-message
   * (`r=<client nonce><server nonce>,s=<salt>,i=<iterations>`) for AuthenticationSASLContinue.
   *
   * @throws {PgError} FATAL 08P01 for malformed input, 0A000 for an authzid or a mandatory
   *   extension, 28000 when a client that supports channel binding thinks this server does not.
   */
  handleClientFirst(msg: string): string {
    this.#enter("init");
    try {
      this.#checkInput(msg);
      this.#readClientFirst(msg);
      this.#serverNonce = this.#forcedNonce ??
        encodeBase64(crypto.getRandomValues(new Uint8Array(RAW_NONCE_LEN)));
      this.#serverFirst =
        `r=${this.#clientNonce}${this.#serverNonce},s=${this.#verifier.saltBase64},i=${this.#verifier.iterations}`;
      this.#state = "salt-sent";
      return this.#serverFirst;
    } catch (e) {
      this.#state = "finished";
      throw e;
    }
  }

  /**
   * Reads client-final-message (the SASLResponse data), checks binding, nonce and proof, and
   * returns server-final-message (`v=<ServerSignature>`) for AuthenticationSASLFinal.
   *
   * @throws {PgError} FATAL 28P01 `password authentication failed for user "…"` on a wrong proof
   *   or a mock exchange; FATAL 08P01 for malformed input or a nonce mismatch; FATAL 28000 when
   *   channel binding data does not match.
   */
  async handleClientFinal(msg: string): Promise<string> {
    this.#enter("salt-sent");
    this.#state = "finished";
    this.#checkInput(msg);
    const { withoutProof, proof, nonce } = this.#readClientFinal(msg);
    if (nonce !== this.#clientNonce + this.#serverNonce) {
      throw PgError.fatal(SqlState.PROTOCOL_VIOLATION, "invalid SCRAM response", {
        detail: "Nonce does not match.",
      });
    }
    const authMessage = utf8(`${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`);
    // The proof is checked even in a mock exchange, so timing does not reveal unknown users.
    const signature = await hmac(this.#verifier.storedKey, authMessage);
    const clientKey = proof.map((b, i) => b ^ signature[i]!);
    const ok = timingSafeEqual(await sha256(clientKey), this.#verifier.storedKey);
    if (!ok || this.#doomed) {
      throw PgError.fatal(
        SqlState.INVALID_PASSWORD,
        `password authentication failed for user "${this.#user}"`,
      );
    }
    return `v=${encodeBase64(await hmac(this.#verifier.serverKey, authMessage))}`;
  }

  #enter(expected: State): void {
    if (this.#state !== expected) {
      this.#state = "finished";
      throw PgError.fatal(SqlState.INTERNAL_ERROR, "invalid SCRAM exchange state");
    }
  }

  #checkInput(msg: string): void {
    if (msg.length === 0) throw malformed("The message is empty.");
    // PostgreSQL compares the length field with strlen(): an embedded NUL is a mismatch.
    if (msg.includes("\0")) throw malformed("Message length does not match input length.");
  }

  #readClientFirst(msg: string): void {
    const r = new Reader(msg);
    const flag = r.peek();
    const serverCanBind = this.#binding !== undefined;
    // Without an explicit mechanism, the client's flag tells which one it picked.
    this.#bindingInUse = this.#mechanism === undefined
      ? flag === "p" && serverCanBind
      : this.#mechanism === SCRAM_SHA_256_PLUS;
    const plusWithoutData = () =>
      malformed(
        "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.",
      );
    if (flag === "n" || flag === "y") {
      if (this.#bindingInUse) throw plusWithoutData();
      if (flag === "y" && serverCanBind) {
        throw PgError.fatal(
          SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
          "SCRAM channel binding negotiation error",
          {
            detail: "The client supports SCRAM channel binding but thinks the server does not.  " +
              "However, this server does support channel binding.",
          },
        );
      }
      r.pos++;
      if (r.peek() !== ",") {
        throw malformed(`Comma expected, but found character "${sanitizeChar(r.peek())}".`);
      }
      r.pos++;
    } else if (flag === "p") {
      if (!this.#bindingInUse) {
        throw malformed(
          "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.",
        );
      }
      const type = r.attr("p");
      if (type !== "tls-server-end-point") {
        throw PgError.fatal(
          SqlState.PROTOCOL_VIOLATION,
          `unsupported SCRAM channel-binding type "${sanitizeStr(type)}"`,
        );
      }
    } else {
      throw malformed(`Unexpected channel-binding flag "${sanitizeChar(flag)}".`);
    }
    this.#cbindFlag = flag;

    if (r.peek() === "a") {
      throw PgError.fatal(
        SqlState.FEATURE_NOT_SUPPORTED,
        "client uses authorization identity, but it is not supported",
      );
    }
    if (r.peek() !== ",") {
      throw malformed(
        `Unexpected attribute "${sanitizeChar(r.peek())}" in client-first-message.`,
      );
    }
    r.pos++;
    this.#clientFirstBare = r.rest;
    if (r.peek() === "m") {
      throw PgError.fatal(
        SqlState.FEATURE_NOT_SUPPORTED,
        "client requires an unsupported SCRAM extension",
      );
    }
    // n= is read and ignored: the user comes from the startup packet (libpq sends "n=").
    r.attr("n");
    this.#clientNonce = r.attr("r");
    if (!isPrintable(this.#clientNonce)) {
      throw PgError.fatal(SqlState.PROTOCOL_VIOLATION, "non-printable characters in SCRAM nonce");
    }
    // Optional extensions are allowed and ignored, but must be well formed.
    while (r.peek() !== undefined) r.anyAttr();
  }

  #readClientFinal(msg: string): { withoutProof: string; proof: Uint8Array; nonce: string } {
    const r = new Reader(msg);
    const binding = r.attr("c");
    if (this.#bindingInUse) {
      const data = this.#binding!.data;
      const expected = encodeBase64(concatBytes(utf8("p=tls-server-end-point,,"), data));
      if (binding !== expected) {
        throw PgError.fatal(
          SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
          "SCRAM channel binding check failed",
        );
      }
    } else if (
      !(binding === "biws" && this.#cbindFlag === "n") &&
      !(binding === "eSws" && this.#cbindFlag === "y")
    ) {
      throw PgError.fatal(
        SqlState.PROTOCOL_VIOLATION,
        "unexpected SCRAM channel-binding attribute in client-final-message",
      );
    }
    const nonce = r.attr("r");
    // Skip extensions up to p=; the text before its comma is client-final-without-proof.
    let proofStart: number;
    let value: string;
    for (;;) {
      proofStart = r.pos - 1;
      const [attr, v] = r.anyAttr();
      if (attr === "p") {
        value = v;
        break;
      }
    }
    const proof = decodeBase64(value);
    if (proof?.length !== KEY_LEN) throw malformed("Malformed proof in client-final-message.");
    if (r.peek() !== undefined) {
      throw malformed("Garbage found at the end of client-final-message.");
    }
    return { withoutProof: msg.slice(0, proofStart), proof, nonce };
  }
}
