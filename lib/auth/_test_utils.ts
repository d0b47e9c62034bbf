/**
 * A minimal SCRAM-SHA-256 client for tests (what libpq computes), written from RFC 5802 so the
 * server can be exercised beyond the one captured exchange.
 *
 * @module
 */

import { parseScramVerifier } from "./scram.ts";

const enc = new TextEncoder();

async function hmac(key: Uint8Array, data: string): Promise<Uint8Array<ArrayBuffer>> {
  const k = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(data)));
}

/** The client-final-message for `serverFirst`, from the client's keys. */
export async function clientFinal(
  password: string,
  clientFirstBare: string,
  serverFirst: string,
  channelBinding: string,
): Promise<{ message: string; serverSignature: string }> {
  const fields = Object.fromEntries(serverFirst.split(",").map((f) => [f[0], f.slice(2)]));
  const salt = Uint8Array.fromBase64(fields.s!);
  const iterations = Number(fields.i);
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

/** Sanity helper: the verifier parses (tests fail loudly otherwise). */
export function mustParse(verifier: string): NonNullable<ReturnType<typeof parseScramVerifier>> {
  const v = parseScramVerifier(verifier);
  if (!v) throw new Error(`not a SCRAM verifier: ${verifier}`);
  return v;
}
