/**
 * The `tls-server-end-point` channel binding data (RFC 5929 §4.1): the server certificate hashed
 * with the digest of its signature algorithm, SHA-256 in place of MD5 and SHA-1.
 *
 * @module
 */

// Signature algorithm OIDs (DER content bytes, hex) and the digest RFC 5929 prescribes.
const DIGEST_OF: Record<string, "SHA-256" | "SHA-384" | "SHA-512"> = {
  "2a864886f70d010104": "SHA-256", // md5WithRSAEncryption
  "2a864886f70d010105": "SHA-256", // sha1WithRSAEncryption
  "2a864886f70d01010b": "SHA-256", // sha256WithRSAEncryption
  "2a864886f70d01010c": "SHA-384", // sha384WithRSAEncryption
  "2a864886f70d01010d": "SHA-512", // sha512WithRSAEncryption
  "2a8648ce3d040301": "SHA-256", // ecdsa-with-SHA1
  "2a8648ce3d040302": "SHA-256", // ecdsa-with-SHA256
  "2a8648ce3d040303": "SHA-384", // ecdsa-with-SHA384
  "2a8648ce3d040304": "SHA-512", // ecdsa-with-SHA512
};

/** One DER element: tag, and where its content lies. */
interface Der {
  tag: number;
  start: number;
  end: number;
}

function readDer(bytes: Uint8Array, pos: number): Der {
  const tag = bytes[pos];
  let len = bytes[pos + 1];
  if (tag === undefined || len === undefined) throw new Error("truncated certificate");
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error("unsupported DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (bytes[start + i] ?? 0);
    start += n;
  }
  if (start + len > bytes.length) throw new Error("truncated certificate");
  return { tag, start, end: start + len };
}

/**
 * The digest of a certificate's signature algorithm, or `undefined` when it has none that RFC
 * 5929 names (RSASSA-PSS, Ed25519): PostgreSQL then cannot bind, and neither do we.
 *
 * @example
 * ```ts ignore
 * signatureDigest(der); // "SHA-256"
 * ```
 */
export function signatureDigest(der: Uint8Array): "SHA-256" | "SHA-384" | "SHA-512" | undefined {
  const cert = readDer(der, 0); // Certificate ::= SEQUENCE
  const tbs = readDer(der, cert.start); // tbsCertificate
  const alg = readDer(der, tbs.end); // signatureAlgorithm ::= SEQUENCE { OID, params }
  const oid = readDer(der, alg.start);
  if (cert.tag !== 0x30 || alg.tag !== 0x30 || oid.tag !== 0x06) return undefined;
  return DIGEST_OF[der.subarray(oid.start, oid.end).toHex()];
}

/**
 * The `tls-server-end-point` binding data of a certificate, or `undefined` when its signature
 * algorithm leaves the hash undefined.
 *
 * @example
 * ```ts ignore
 * const data = await certificateHash(der); // 32 bytes for an SHA-256-signed certificate
 * ```
 */
export async function certificateHash(der: Uint8Array): Promise<Uint8Array | undefined> {
  let digest;
  try {
    digest = signatureDigest(der);
  } catch {
    return undefined;
  }
  if (!digest) return undefined;
  return new Uint8Array(await crypto.subtle.digest(digest, new Uint8Array(der)));
}
