/**
 * The client side of SCRAM-SHA-256 (RFC 5802/7677) as libpq speaks it: an empty `n=` user (the
 * server takes the startup packet's), `n,,` without channel binding.
 *
 * @module
 */

import { hmacSha256, timingSafeEqual } from "./_bytes.ts";

const enc = new TextEncoder();

const hmac = hmacSha256;

/**
 * Computes the client-final-message for a server-first-message, and the server signature the
 * client must then see in server-final.
 *
 * @param password The password (SASLprep is not applied: libpq sends ASCII passwords as they are).
 * @param clientFirstBare The client-first-message without its gs2 header.
 * @param serverFirst The server-first-message.
 * @param channelBinding The base64 `c=` value: `biws` for `n,,`.
 *
 * @example
 * ```ts
 * import { scramClientFinal } from "./scram_client.ts";
 * import assert from "node:assert/strict";
 * // The exchange captured from pg_receivewal 15 (PROTOCOL.md §3.4).
 * const out = await scramClientFinal(
 *   "replpw",
 *   "n=,r=6ogUOBGgk6QwfkzOZP+hkUdT",
 *   "r=6ogUOBGgk6QwfkzOZP+hkUdTr7Bei3v6nc3OZTfSegrivGxT,s=I9V1fsCbIuCWg+nyskNw1w==,i=4096",
 *   "biws",
 * );
 * assert.equal(out.serverSignature, "v=21Ygn0JCSGUe+p4jQGYygfqVwkNetuuQWPrvJmqcvq4=");
 * ```
 */
export async function scramClientFinal(
  password: string,
  clientFirstBare: string,
  serverFirst: string,
  channelBinding: string,
): Promise<{ message: string; serverSignature: string }> {
  const fields = Object.fromEntries(serverFirst.split(",").map((f) => [f[0], f.slice(2)]));
  const salt = Uint8Array.fromBase64(fields.s ?? "");
  const iterations = Number(fields.i);
  if (!fields.r || !(iterations >= 1)) throw new Error("malformed SCRAM server-first-message");
  const base = await crypto.subtle.importKey("raw", enc.encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const salted = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-256", salt, iterations },
      base,
      256,
    ),
  );
  const clientKey = await hmac(salted, "Client Key");
  const storedKey = new Uint8Array(await crypto.subtle.digest("SHA-256", clientKey));
  const withoutProof = `c=${channelBinding},r=${fields.r}`;
  const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
  const signature = await hmac(storedKey, authMessage);
  const proof = clientKey.map((b, i) => b ^ signature[i]!);
  const serverKey = await hmac(salted, "Server Key");
  return {
    message: `${withoutProof},p=${proof.toBase64()}`,
    serverSignature: `v=${(await hmac(serverKey, authMessage)).toBase64()}`,
  };
}

/**
 * One client-side SCRAM-SHA-256 exchange.
 *
 * @example
 * ```ts
 * import { ScramClient } from "./scram_client.ts";
 * import assert from "node:assert/strict";
 * const c = new ScramClient("secret");
 * assert.match(c.clientFirst(), /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
 * ```
 */
export class ScramClient {
  #password: string;
  #nonce: string;
  #bare = "";
  #expected = "";

  /**
   * @param password The password.
   * @param nonce The client nonce; random (18 bytes, base64) unless given, as libpq does.
   */
  constructor(password: string, nonce?: string) {
    this.#password = password;
    this.#nonce = nonce ?? crypto.getRandomValues(new Uint8Array(18)).toBase64();
  }

  /** The client-first-message, with the `n,,` gs2 header. */
  clientFirst(): string {
    this.#bare = `n=,r=${this.#nonce}`;
    return `n,,${this.#bare}`;
  }

  /** The client-final-message answering the server-first-message. */
  async clientFinal(serverFirst: string): Promise<string> {
    const r = /(?:^|,)r=([^,]*)/.exec(serverFirst)?.[1] ?? "";
    if (!r.startsWith(this.#nonce) || r.length <= this.#nonce.length) {
      throw new Error("invalid SCRAM response (nonce mismatch)");
    }
    const out = await scramClientFinal(this.#password, this.#bare, serverFirst, "biws");
    this.#expected = out.serverSignature;
    return out.message;
  }

  /** Checks the server-final-message, as libpq does ("incorrect server signature"). */
  verifyServerFinal(serverFinal: string): void {
    if (!timingSafeEqual(enc.encode(serverFinal), enc.encode(this.#expected))) {
      throw new Error("incorrect server signature");
    }
  }
}
