/**
 * Test certificates made with openssl: a CA, a server certificate for `localhost` / 127.0.0.1,
 * and client certificates.
 *
 * @module
 */

import { runOk } from "./_pg.ts";
import { chownPostgres } from "./_relay_util.ts";

function openssl(dir: string, args: string[]): Promise<unknown> {
  return runOk(["openssl", ...args], { cwd: dir });
}

/** Writes a self-signed CA, `NAME.crt` and `NAME.key`, into `dir`. */
export async function makeCa(dir: string, name = "ca", cn = "walrelay test CA"): Promise<void> {
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
  ]);
}

/**
 * Writes `NAME.key` and `NAME.crt` for the subject `cn` into `dir`, signed by the CA in `ca.crt`
 * and `ca.key` there, with `extensions` (an openssl extension file's text) when given; the key
 * is mode 0600.
 */
async function makeSigned(
  dir: string,
  name: string,
  cn: string,
  extensions?: string,
): Promise<void> {
  await openssl(dir, [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    `/CN=${cn}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
  ]);
  if (extensions !== undefined) await Deno.writeTextFile(`${dir}/${name}.ext`, extensions);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-sha256",
    ...(extensions !== undefined ? ["-extfile", `${name}.ext`] : []),
    "-out",
    `${name}.crt`,
  ]);
  await Deno.chmod(`${dir}/${name}.key`, 0o600);
}

/**
 * Writes `ca.crt`, `ca.key`, `server.crt` and `server.key` (mode 0600) into `dir`, owned by
 * postgres so a PostgreSQL server can use them as well as the relay.
 */
export async function makeCertificates(dir: string): Promise<void> {
  await makeCa(dir);
  await makeSigned(dir, "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  await chownPostgres(dir);
}

/**
 * Writes `NAME.crt` and `NAME.key` (mode 0600, owned by whoever runs the test) into `dir`: a
 * client certificate for the role `cn` (PostgreSQL's `cert` method matches the CN to the user
 * name), signed by the CA {@linkcode makeCertificates} wrote there.
 */
export async function makeClientCertificate(
  dir: string,
  cn: string,
  name = "client",
): Promise<void> {
  await makeSigned(dir, name, cn);
}
