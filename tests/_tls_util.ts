/**
 * A test CA and a server certificate for `localhost` / 127.0.0.1, made with openssl.
 *
 * @module
 */

import { runOk } from "./_pg.ts";
import { chownPostgres } from "./_relay_util.ts";

/**
 * Writes `ca.crt`, `ca.key`, `server.crt` and `server.key` (mode 0600) into `dir`, owned by
 * postgres so a PostgreSQL server can use them as well as the relay.
 */
export async function makeCertificates(dir: string): Promise<void> {
  const openssl = (args: string[]) => runOk(["openssl", ...args], { cwd: dir });
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=walrelay test CA",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
  ]);
  await openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
  ]);
  await Deno.writeTextFile(`${dir}/san.ext`, "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  await openssl([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-sha256",
    "-extfile",
    "san.ext",
    "-out",
    "server.crt",
  ]);
  await Deno.chmod(`${dir}/server.key`, 0o600);
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
  const openssl = (args: string[]) => runOk(["openssl", ...args], { cwd: dir });
  await openssl([
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
  await openssl([
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
    "-out",
    `${name}.crt`,
  ]);
  await Deno.chmod(`${dir}/${name}.key`, 0o600);
}
