// The replication client's TLS against a real PostgreSQL 15 with ssl=on: libpq's sslmode values,
// with and without a root certificate.

import assert from "node:assert/strict";
import { PgClient } from "../lib/pgwire/client.ts";
import { startPrimary, tempDir } from "./_pg.ts";
import { makeCertificates } from "./_tls_util.ts";

Deno.test("upstream client: sslmode against PostgreSQL with ssl=on", async () => {
  await using certs = await tempDir("walrelay-upstream-tls-");
  await makeCertificates(certs.path);
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: {
      ssl: "on",
      ssl_cert_file: `${certs.path}/server.crt`,
      ssl_key_file: `${certs.path}/server.key`,
    },
    hba: [
      "hostssl replication all 127.0.0.1/32 trust",
      "hostssl all all 127.0.0.1/32 trust",
      "local all all trust",
    ],
  });
  const rootCert = await Deno.readTextFile(`${certs.path}/ca.crt`);
  const identify = async (
    tls: {
      mode: "disable" | "prefer" | "require" | "verify-ca" | "verify-full";
      rootCert?: string;
    },
    hostname = "127.0.0.1",
  ): Promise<string> => {
    await using c = await PgClient.connect({
      hostname: "127.0.0.1",
      tlsHostname: hostname,
      port: pg.port,
      user: "postgres",
      tls,
      connectTimeoutMs: 10_000,
    });
    const [r] = await c.query("IDENTIFY_SYSTEM");
    return r!.rows[0]![0]!;
  };
  const sysid = await pg.replSql("IDENTIFY_SYSTEM").then((s) => s.split("|")[0]);
  // require and prefer without a root certificate: encrypted, certificate not checked (libpq).
  assert.equal(await identify({ mode: "require" }), sysid);
  assert.equal(await identify({ mode: "prefer" }), sysid);
  assert.equal(await identify({ mode: "verify-ca", rootCert }), sysid);
  assert.equal(await identify({ mode: "verify-full", rootCert }, "localhost"), sysid);
  // verify-full checks the name; verify-ca needs the right root.
  await assert.rejects(identify({ mode: "verify-full", rootCert }, "wronghost"));
  await assert.rejects(identify({ mode: "verify-ca" }));
  // hostssl only: a clear-text connection is refused by the server's rules.
  await assert.rejects(identify({ mode: "disable" }), /no pg_hba.conf entry/);
  // The server saw encrypted connections.
  assert.match(
    await pg.sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
    /t/,
  );
});
