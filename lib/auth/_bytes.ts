/**
 * Byte helpers shared by the authentication modules. Not part of the public API.
 *
 * @module
 */

const encoder = new TextEncoder();

/** The UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

/**
 * Compares two byte strings in time that depends only on their lengths, so a client probing a
 * proof or a hash learns nothing from how long the answer took. Lengths are public here (fixed
 * by the hash), so returning early on a length mismatch leaks nothing.
 */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Decodes standard base64, or returns undefined when `text` is not base64. */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  try {
    return Uint8Array.fromBase64(text);
  } catch {
    return undefined;
  }
}

/** Standard base64 with padding, as PostgreSQL's `pg_b64_encode` writes it. */
export function encodeBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

/** HMAC-SHA-256 of `data` (bytes or UTF-8 text) under `key`, with WebCrypto. */
export async function hmacSha256(
  key: Uint8Array,
  data: Uint8Array | string,
): Promise<Uint8Array<ArrayBuffer>> {
  const k = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const bytes = typeof data === "string" ? encoder.encode(data) : new Uint8Array(data);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, bytes));
}
