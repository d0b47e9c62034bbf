// Client certificates (sslcert, sslkey, sslpassword) against a real PostgreSQL 15 that
// authenticates replication connections with the `cert` method, and the TLS options the relay
// refuses at startup instead of ignoring.

import assert from "node:assert/strict";
import { parseConninfo } from "../lib/upstream/conninfo.ts";
import { resolveConninfo } from "../lib/upstream/conninfo_resolve.ts";
import { connectUpstream } from "../lib/upstream/connect.ts";
import {
  assertSegmentsMatch,
  freePort,
  type PgCluster,
  REPO_ROOT,
  run,
  runOk,
  startPrimary,
  tempDir,
} from "./_pg.ts";
import { waitForFiles } from "./_relay_util.ts";
import { startRelayMode } from "./_relay_mode_util.ts";
import { makeCertificates, makeClientCertificate } from "./_tls_util.ts";

/** A primary with ssl=on whose replication connections need a client certificate. */
async function certPrimary(certs: string): Promise<PgCluster> {
  return await startPrimary({
    walSegSize: 1,
    conf: {
      ssl: "on",
      ssl_cert_file: `${certs}/server.crt`,
      ssl_key_file: `${certs}/server.key`,
      ssl_ca_file: `${certs}/ca.crt`,
    },
    hba: [
      "local all all trust",
      "hostssl replication all 127.0.0.1/32 cert",
      "hostssl all all 127.0.0.1/32 trust",
    ],
  });
}

/** Which client certificate the primary's walsender sessions were authenticated with. */
function walsenderDn(pg: PgCluster): Promise<string> {
  return pg.sql(
    "SELECT s.ssl, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid)",
  );
}

Deno.test("client certificate: a relay authenticated by the cert method streams WAL", async () => {
  await using certs = await tempDir("walrelay-clientcert-");
  await makeCertificates(certs.path);
  await makeClientCertificate(certs.path, "postgres");
  await using pg = await certPrimary(certs.path);
  await pg.sql("CREATE TABLE t (x int)");
  await using dir = await tempDir("walrelay-clientcert-wal-");
  const c = certs.path;
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: `host=localhost hostaddr=127.0.0.1 port=${pg.port} user=postgres ` +
      `sslmode=verify-full sslrootcert=${c}/ca.crt sslcert=${c}/client.crt ` +
      `sslkey=${c}/client.key`,
  });
  await pg.sql("INSERT INTO t SELECT generate_series(1, 50000)");
  const last = await pg.switchWal();
  await waitForFiles(dir.path, [last], { proc: relay, sizes: 1 << 20 });
  assert.ok((await assertSegmentsMatch(dir.path, pg.walDir)).includes(last));
  assert.equal(await walsenderDn(pg), "t|/CN=postgres");
  assert.match(
    relay.stderr(),
    new RegExp(`connected to upstream .*server="localhost \\(127\\.0\\.0\\.1\\):${pg.port}"`),
  );
});

Deno.test("client certificate: libpq's defaults under ~/.postgresql, encrypted keys", async () => {
  await using certs = await tempDir("walrelay-clientcert-");
  await makeCertificates(certs.path);
  await makeClientCertificate(certs.path, "postgres");
  await makeClientCertificate(certs.path, "someone_else", "other");
  const c = certs.path;
  await runOk([
    "openssl",
    "pkcs8",
    "-topk8",
    "-in",
    `${c}/client.key`,
    "-out",
    `${c}/client.enc.key`,
    "-passout",
    "pass:open sesame",
  ]);
  await Deno.chmod(`${c}/client.enc.key`, 0o600);
  await using pg = await certPrimary(c);

  // A home directory holding postgresql.crt, postgresql.key and root.crt: no TLS keyword needed
  // but sslmode (verify-ca works because root.crt is found there too).
  await using home = await tempDir("walrelay-home-");
  await Deno.mkdir(`${home.path}/.postgresql`);
  await Deno.copyFile(`${c}/client.crt`, `${home.path}/.postgresql/postgresql.crt`);
  await Deno.copyFile(`${c}/client.key`, `${home.path}/.postgresql/postgresql.key`);
  await Deno.chmod(`${home.path}/.postgresql/postgresql.key`, 0o600);
  await Deno.copyFile(`${c}/ca.crt`, `${home.path}/.postgresql/root.crt`);
  const environment = (home: string | undefined) => ({
    env: () => undefined,
    home: () => home,
    readFile: (p: string) => {
      try {
        const info = Deno.statSync(p);
        return { text: Deno.readTextFileSync(p), mode: info.mode, uid: info.uid };
      } catch {
        return undefined;
      }
    },
    warn: () => {},
  });
  const identify = async (conninfo: string, home?: string): Promise<string> => {
    const env = environment(home);
    const resolved = resolveConninfo(parseConninfo(conninfo), {
      replication: true,
      environment: env,
    });
    const { client } = await connectUpstream(resolved, {
      params: { database: "replication", replication: "true" },
      environment: env,
    });
    try {
      const [r] = await client.query("IDENTIFY_SYSTEM");
      return r!.rows[0]![0]!;
    } finally {
      await client.terminate();
    }
  };
  const sysid = (await pg.controlData())["Database system identifier"];
  const base = `host=127.0.0.1 port=${pg.port} user=postgres`;
  assert.equal(await identify(`${base} sslmode=verify-ca`, home.path), sysid);
  // An encrypted key, opened with sslpassword; require checks nothing about the server.
  assert.equal(
    await identify(
      `${base} sslmode=require sslcert=${c}/client.crt sslkey=${c}/client.enc.key ` +
        `sslpassword='open sesame'`,
    ),
    sysid,
  );
  // Without a certificate, or with someone else's, the server refuses: the cert line really
  // authenticates, so the passes above are the certificates' doing.
  await assert.rejects(
    identify(`${base} sslmode=require`),
    /connection requires a valid client certificate/,
  );
  await assert.rejects(
    identify(`${base} sslmode=require sslcert=${c}/other.crt sslkey=${c}/other.key`),
    /certificate authentication failed for user "postgres"/,
  );
});

Deno.test("client certificate: unusable TLS settings stop the relay at startup", async () => {
  await using certs = await tempDir("walrelay-clientcert-");
  await makeCertificates(certs.path);
  await makeClientCertificate(certs.path, "postgres");
  const c = certs.path;
  await Deno.chmod(`${c}/client.key`, 0o644);
  await using dir = await tempDir("walrelay-clientcert-wal-");
  // Nothing listens there: each case must fail before any connection is tried.
  const base = "host=127.0.0.1 port=1 user=postgres";
  const cases: [string, RegExp][] = [
    [`${base} sslmode=require sslcrl=${c}/ca.crt`, /sslcrl is not supported/],
    [
      `${base} sslmode=verify-ca sslrootcert=${c}/ca.crt sslcrldir=${c}`,
      /sslcrldir is not supported/,
    ],
    [
      `${base} sslmode=require sslcert=${c}/missing.crt`,
      /certificate file ".*missing.crt" does not exist/,
    ],
    [
      `${base} sslmode=require sslcert=${c}/client.crt sslkey=${c}/client.key`,
      /has group or world access/,
    ],
    [
      `${base} sslmode=verify-full sslrootcert=${c}/missing.crt`,
      /root certificate file ".*missing.crt" does not exist/,
    ],
    [`${base} channel_binding=require`, /channel_binding=require is not supported/],
  ];
  for (const [upstream, want] of cases) {
    const r = await run([
      Deno.execPath(),
      "run",
      "-A",
      `${REPO_ROOT}/cli.ts`,
      "serve",
      "--wal-dir",
      dir.path,
      "--listen",
      `127.0.0.1:${await freePort()}`,
      "--upstream",
      upstream,
    ], { timeoutMs: 30_000, env: { HOME: dir.path } });
    assert.notEqual(r.code, 0, upstream);
    assert.match(r.stderr, want, upstream);
    assert.doesNotMatch(r.stderr, /upstream connection failed/, upstream);
  }
});
