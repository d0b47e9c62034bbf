/**
 * The TLS files of a connection string: the `sslmode` values, where the root certificate, client
 * certificate and key are found (`sslrootcert`, `sslcert`, `sslkey`, or their defaults under
 * `~/.postgresql/`), and loading the client certificate with libpq's checks, as
 * `fe-secure-openssl.c` does.
 *
 * @module
 */

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { type ConninfoEnvironment, processEnvironment } from "./conninfo_environment.ts";

/** The `sslmode` values libpq knows. */
export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

/** Every {@linkcode SslMode}, for validating a value. */
export const SSL_MODES: readonly SslMode[] = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];

/**
 * Root certificate, client certificate and key, as `initialize_SSL` in libpq's
 * `fe-secure-openssl.c` finds them. `pick` looks a keyword up in the string, else in its
 * environment variable.
 *
 * @throws {Error} when a file that must exist does not, or when revocation lists are asked for.
 *
 * @example
 * ```ts
 * import { resolveSslFiles } from "./ssl_files.ts";
 * import assert from "node:assert/strict";
 * const environment = {
 *   env: () => undefined,
 *   home: () => "/home/x",
 *   readFile: (path: string) =>
 *     path === "/home/x/.postgresql/root.crt" ? { text: "", mode: 0o100644 } : undefined,
 *   warn: () => {},
 * };
 * assert.deepEqual(resolveSslFiles(() => undefined, "verify-full", "/home/x", environment), {
 *   sslrootcert: "/home/x/.postgresql/root.crt",
 *   sslcert: undefined,
 *   sslkey: undefined,
 * });
 * ```
 */
export function resolveSslFiles(
  pick: (key: string, envName?: string) => string | undefined,
  sslmode: SslMode,
  home: string | undefined,
  e: ConninfoEnvironment,
): { sslrootcert: string | undefined; sslcert: string | undefined; sslkey: string | undefined } {
  const verify = sslmode === "verify-ca" || sslmode === "verify-full";
  const given = pick("sslrootcert", "PGSSLROOTCERT");
  let sslrootcert: string | undefined;
  if (given === "system") {
    // PostgreSQL 16's spelling for the system's trusted roots; like libpq, only with verify-full,
    // since any publicly trusted certificate would pass a mere chain check.
    if (sslmode !== "verify-full") {
      throw new Error(
        `weak sslmode "${sslmode}" may not be used with sslrootcert=system (use "verify-full")`,
      );
    }
  } else {
    const path = given ?? (home !== undefined ? `${home}/.postgresql/root.crt` : undefined);
    if (path !== undefined && e.readFile(path) !== undefined) {
      sslrootcert = path;
    } else if (verify) {
      // Without it libpq refuses to verify rather than fall back to some other trust store.
      throw new Error(
        path === undefined
          ? "could not get home directory to locate root certificate file; " +
            "either provide the file, use the system's trusted roots with sslrootcert=system, " +
            "or change sslmode to disable server certificate verification"
          : `root certificate file "${path}" does not exist; either provide the file, ` +
            "use the system's trusted roots with sslrootcert=system, " +
            "or change sslmode to disable server certificate verification",
      );
    }
    // require/prefer without the file: encrypted but unverified, as libpq.
  }

  // Revocation lists. Deno's TLS client has no way to check them (node:tls takes a `crl` option
  // and ignores it), so refuse rather than connect to a server whose certificate was revoked.
  for (const [keyword, envName] of [["sslcrl", "PGSSLCRL"], ["sslcrldir", "PGSSLCRLDIR"]]) {
    if (pick(keyword!, envName) !== undefined) {
      throw new Error(
        `${keyword} is not supported: the relay's TLS client cannot check certificate ` +
          `revocation lists; remove ${keyword} from the connection string`,
      );
    }
  }
  if (sslrootcert !== undefined && home !== undefined) {
    // libpq applies ~/.postgresql/root.crl by default whenever it verifies with a root certificate.
    const crl = `${home}/.postgresql/root.crl`;
    if (e.readFile(crl) !== undefined) {
      throw new Error(
        `certificate revocation list "${crl}" exists, but the relay's TLS client cannot check ` +
          "revocation lists; remove the file to connect without revocation checks",
      );
    }
  }

  const certGiven = pick("sslcert", "PGSSLCERT");
  const keyGiven = pick("sslkey", "PGSSLKEY");
  const certPath = certGiven ??
    (home !== undefined ? `${home}/.postgresql/postgresql.crt` : undefined);
  let sslcert: string | undefined;
  let sslkey: string | undefined;
  if (certPath !== undefined && e.readFile(certPath) !== undefined) {
    sslcert = certPath;
    sslkey = keyGiven ?? (home !== undefined ? `${home}/.postgresql/postgresql.key` : undefined);
    if (sslkey === undefined) {
      throw new Error("could not get home directory to locate the client's private key file");
    }
  } else if (certGiven !== undefined) {
    // libpq goes on without a certificate when the file is missing; a misspelt path would then
    // surface only as the server's "connection requires a valid client certificate".
    throw new Error(`certificate file "${certGiven}" does not exist`);
  } else if (keyGiven !== undefined) {
    throw new Error(`sslkey "${keyGiven}" is set, but there is no client certificate (sslcert)`);
  }
  return { sslrootcert, sslcert, sslkey };
}

/** A client certificate and its key, both PEM, the key decrypted. */
export interface ClientCertificate {
  /** The certificate (chain) file's text. */
  cert: string;
  /** The private key, unencrypted PKCS #8. */
  key: string;
}

/**
 * Loads the client certificate and private key named by resolved settings, with libpq's checks:
 * the key file must exist and must not be readable by group or others (0640 is allowed for a
 * root-owned file); an encrypted key needs `sslpassword`; the key must belong to the certificate.
 * Returns `undefined` when no certificate is to be sent.
 *
 * @throws {Error} naming the file that is wrong.
 *
 * @example
 * ```ts
 * import { loadClientCertificate } from "./ssl_files.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   loadClientCertificate({ sslcert: undefined, sslkey: undefined, sslpassword: undefined }),
 *   undefined,
 * );
 * assert.throws(
 *   () =>
 *     loadClientCertificate({ sslcert: "/nonexistent.crt", sslkey: "k", sslpassword: undefined }),
 *   /could not open certificate file "\/nonexistent.crt"/,
 * );
 * ```
 */
export function loadClientCertificate(
  c: { sslcert: string | undefined; sslkey: string | undefined; sslpassword: string | undefined },
  environment: ConninfoEnvironment = processEnvironment,
): ClientCertificate | undefined {
  if (c.sslcert === undefined) return undefined;
  const certFile = environment.readFile(c.sslcert);
  if (!certFile) throw new Error(`could not open certificate file "${c.sslcert}"`);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certFile.text);
  } catch (e) {
    throw new Error(
      `could not load client certificate file "${c.sslcert}": ${(e as Error).message}`,
    );
  }
  const keyPath = c.sslkey ?? "";
  const keyFile = environment.readFile(keyPath);
  if (!keyFile) throw new Error(`certificate present, but not private key file "${keyPath}"`);
  if (keyFile.mode !== null) {
    // fe-secure-openssl.c: root-owned keys may be group-readable (for system-wide certificates
    // shared through a group), anybody else's must be private.
    const loose = keyFile.uid === 0 ? keyFile.mode & 0o037 : keyFile.mode & 0o077;
    if (loose !== 0) {
      throw new Error(
        `private key file "${keyPath}" has group or world access; file must have permissions ` +
          "u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or " +
          "less if owned by root",
      );
    }
  }
  // libpq would prompt on the terminal for the passphrase; a service has no terminal.
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/.test(
    keyFile.text,
  );
  if (encrypted && c.sslpassword === undefined) {
    throw new Error(
      `could not load private key file "${keyPath}": the key is encrypted and sslpassword is not set`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(
      encrypted ? { key: keyFile.text, passphrase: c.sslpassword ?? "" } : keyFile.text,
    );
  } catch (e) {
    // A wrong passphrase mostly fails the decryption's padding check ("bad decrypt"); about
    // once in 256 the garbage passes it and fails to decode instead. Either way, on an
    // encrypted key it is the passphrase that is wrong.
    throw new Error(
      `could not load private key file "${keyPath}": ${(e as Error).message}` +
        (encrypted ? " (wrong sslpassword?)" : ""),
    );
  }
  if (!certificate.checkPrivateKey(key)) {
    throw new Error(`certificate does not match private key file "${keyPath}"`);
  }
  // Handed to the TLS layer decrypted: Deno's node:tls, given a wrong passphrase, would quietly
  // send no certificate at all.
  return { cert: certFile.text, key: key.export({ type: "pkcs8", format: "pem" }) as string };
}
