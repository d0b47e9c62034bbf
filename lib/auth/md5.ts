/**
 * MD5 (RFC 1321) and PostgreSQL's `md5` password scheme.
 *
 * WebCrypto has no MD5, so the digest is written out here. It is used only for PostgreSQL's legacy
 * `md5` authentication, whose security rests on the salt exchange, not on MD5's strength.
 *
 * @module
 */

import { timingSafeEqual, utf8 } from "./_bytes.ts";

// Per-round left-rotation amounts (RFC 1321 §3.4), four per round.
const SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

// T[i] = floor(abs(sin(i + 1)) * 2^32): computed, not transcribed, so a typo cannot creep in.
const SINES = Uint32Array.from(
  { length: 64 },
  (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32),
);

/**
 * The MD5 digest of `data` (a string is hashed as its UTF-8 bytes).
 *
 * @param data The message.
 * @returns The 16-byte digest.
 *
 * @example
 * ```ts
 * import { md5 } from "./md5.ts";
 * import assert from "node:assert/strict";
 * assert.equal(md5("abc").toHex(), "900150983cd24fb0d6963f7d28e17f72");
 * ```
 */
export function md5(data: string | Uint8Array): Uint8Array<ArrayBuffer> {
  const message = typeof data === "string" ? utf8(data) : data;
  // Pad: a 1 bit, zeros up to 56 mod 64, then the bit length as a little-endian uint64.
  const padded = new Uint8Array((((message.length + 8) >>> 6) + 1) << 6);
  padded.set(message);
  padded[message.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setBigUint64(padded.length - 8, BigInt(message.length) * 8n, true);

  let a0 = 0x67452301;
  let b0 = 0xefcdab89;
  let c0 = 0x98badcfe;
  let d0 = 0x10325476;
  const x = new Uint32Array(16);
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) x[i] = view.getUint32(block + i * 4, true);
    let a = a0, b = b0, c = c0, d = d0;
    for (let i = 0; i < 64; i++) {
      const round = i >>> 4;
      let f: number;
      let k: number;
      if (round === 0) {
        f = (b & c) | (~b & d);
        k = i;
      } else if (round === 1) {
        f = (d & b) | (~d & c);
        k = (5 * i + 1) & 15;
      } else if (round === 2) {
        f = b ^ c ^ d;
        k = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        k = (7 * i) & 15;
      }
      const sum = (a + f + SINES[i]! + x[k]!) | 0;
      const s = SHIFTS[(round << 2) | (i & 3)]!;
      a = d;
      d = c;
      c = b;
      b = (b + ((sum << s) | (sum >>> (32 - s)))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  const out = new Uint8Array(16);
  const outView = new DataView(out.buffer);
  outView.setUint32(0, a0, true);
  outView.setUint32(4, b0, true);
  outView.setUint32(8, c0, true);
  outView.setUint32(12, d0, true);
  return out;
}

/**
 * The MD5 digest of `data` as 32 lower-case hex digits, PostgreSQL's `pg_md5_hash` form.
 *
 * @example
 * ```ts
 * import { md5Hex } from "./md5.ts";
 * import assert from "node:assert/strict";
 * assert.equal(md5Hex(""), "d41d8cd98f00b204e9800998ecf8427e");
 * ```
 */
export function md5Hex(data: string | Uint8Array): string {
  return md5(data).toHex();
}

/**
 * The md5 verifier PostgreSQL stores in `pg_authid.rolpassword`: `"md5" + md5hex(password + user)`.
 * The user name salts the hash, so renaming a role invalidates it.
 *
 * @example
 * ```ts
 * import { md5PasswordHash } from "./md5.ts";
 * import assert from "node:assert/strict";
 * assert.equal(md5PasswordHash("md5pw", "md5user").length, 35);
 * ```
 */
export function md5PasswordHash(password: string, user: string): string {
  return "md5" + md5Hex(password + user);
}

/**
 * What a client sends in answer to AuthenticationMD5Password:
 * `"md5" + md5hex(md5hex(password + user) + salt)`. Takes the stored verifier, since that is
 * all the server has; a client computes it with `md5PasswordHash` first.
 *
 * @param stored The `md5…` verifier (35 characters).
 * @param salt The 4 salt bytes sent in AuthenticationMD5Password.
 *
 * @example
 * ```ts
 * import { md5PasswordHash, md5SaltedResponse } from "./md5.ts";
 * import assert from "node:assert/strict";
 * const stored = md5PasswordHash("md5pw", "md5user");
 * const salt = Uint8Array.fromHex("5c3fbc8a");
 * assert.equal(md5SaltedResponse(stored, salt), "md5cc3c1e8d1734d15bfa493c7c82c977f5");
 * ```
 */
export function md5SaltedResponse(stored: string, salt: Uint8Array): string {
  const inner = utf8(stored.slice(3));
  const buf = new Uint8Array(inner.length + salt.length);
  buf.set(inner);
  buf.set(salt, inner.length);
  return "md5" + md5Hex(buf);
}

const MD5_VERIFIER = /^md5[0-9a-f]{32}$/;

/**
 * Checks a client's md5 password response against the stored verifier, in constant time.
 * Returns false (never throws) when the stored value is not an md5 verifier, so a SCRAM-only
 * role simply fails md5 authentication as in PostgreSQL.
 *
 * @param stored The `md5…` verifier from the passwords file.
 * @param salt The 4 salt bytes this server sent.
 * @param response The client's password message (without the trailing NUL).
 *
 * @example
 * ```ts
 * import { verifyMd5Response } from "./md5.ts";
 * import assert from "node:assert/strict";
 * const stored = "md5" + "0".repeat(32);
 * assert.equal(verifyMd5Response(stored, new Uint8Array(4), "md5" + "f".repeat(32)), false);
 * ```
 */
export function verifyMd5Response(stored: string, salt: Uint8Array, response: string): boolean {
  if (!MD5_VERIFIER.test(stored)) return false;
  const expected = utf8(md5SaltedResponse(stored, salt));
  return timingSafeEqual(expected, utf8(response));
}

/**
 * Checks a plain-text password (the `password` method) against an md5 verifier, as PostgreSQL's
 * `plain_crypt_verify` does, in constant time. False when `stored` is not an md5 verifier.
 *
 * @example
 * ```ts
 * import { md5PasswordHash, verifyMd5Password } from "./md5.ts";
 * import assert from "node:assert/strict";
 * const stored = md5PasswordHash("md5pw", "md5user");
 * assert.equal(verifyMd5Password(stored, "md5user", "md5pw"), true);
 * assert.equal(verifyMd5Password(stored, "other", "md5pw"), false);
 * ```
 */
export function verifyMd5Password(stored: string, user: string, password: string): boolean {
  if (!MD5_VERIFIER.test(stored)) return false;
  return timingSafeEqual(utf8(md5PasswordHash(password, user)), utf8(stored));
}
