// Chained relays over TLS: primary → relay 1 (serving TLS, hostssl only) → relay 2 following it
// with sslmode=verify-full → pg_receivewal. The WAL arrives byte-identical, the link between the
// relays is encrypted, and a relay given the wrong root certificate or host name refuses to
// follow, even when Deno's own trust store would accept the certificate.

import assert from "node:assert/strict";
import {
  assertSegmentsMatch,
  pgBin,
  REPO_ROOT,
  run,
  spawnBackground,
  startPrimary,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { spawnReceivewal, waitForFiles } from "./_relay_util.ts";
import { startRelayMode } from "./_relay_mode_util.ts";
import { makeCa, makeCertificates } from "./_tls_util.ts";

Deno.test("relay mode: relays chained over verify-full TLS deliver identical WAL", async () => {
  await using certs = await tempDir("walrelay-tlschain-certs-");
  await makeCertificates(certs.path);
  const c = certs.path;
  // A second CA that signed nothing here: the wrong root for relay 1's certificate.
  await makeCa(c, "other_ca", "another CA");
  // Relay 1 admits encrypted replication connections only.
  await Deno.writeTextFile(`${c}/hba.conf`, "hostssl replication all 127.0.0.1/32 trust\n");

  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.sql("CREATE TABLE t (x int)");
  await using dir1 = await tempDir("walrelay-tlschain1-");
  await using dir2 = await tempDir("walrelay-tlschain2-");
  await using out = await tempDir("walrelay-tlschain-out-");
  await using relay1 = await startRelayMode({
    walDir: dir1.path,
    upstream: pg.conninfo(),
    args: [
      "--tls-cert",
      `${c}/server.crt`,
      "--tls-key",
      `${c}/server.key`,
      "--hba",
      `${c}/hba.conf`,
    ],
  });
  await using relay2 = await startRelayMode({
    walDir: dir2.path,
    upstream: `host=127.0.0.1 port=${relay1.port} user=postgres sslmode=verify-full ` +
      `sslrootcert=${c}/ca.crt application_name=edge_tls`,
  });
  await using receivewal = await spawnReceivewal(relay2.port, ["-D", out.path]);
  await waitFor(() => /starting log streaming/.test(receivewal.stderr()), {
    timeoutMs: 30_000,
    message: "pg_receivewal did not start streaming from relay 2",
  });

  await pg.sql("INSERT INTO t SELECT generate_series(1, 50000)");
  const last = await pg.switchWal();
  await waitForFiles(out.path, [last], { proc: receivewal, sizes: 1 << 20 });
  const received = await assertSegmentsMatch(out.path, pg.walDir);
  assert.ok(received.includes(last), `${last} not among ${received.join(", ")}`);
  assert.ok((await assertSegmentsMatch(dir2.path, pg.walDir)).includes(last));

  // The link between the relays is TLS: relay 1 logged relay 2's session as encrypted, and it
  // refuses clear text outright.
  assert.match(
    relay1.stderr(),
    /replication connection authorized .*application_name=edge_tls ssl=on/,
  );
  const clear = await run([
    await pgBin("psql"),
    "-X",
    "-c",
    "IDENTIFY_SYSTEM",
    `host=127.0.0.1 port=${relay1.port} user=postgres replication=true sslmode=disable`,
  ], { timeoutMs: 30_000 });
  assert.notEqual(clear.code, 0);
  assert.match(clear.stderr, /no pg_hba.conf entry for replication connection .*no encryption/);

  // The wrong root certificate, and a name the certificate does not carry, are clear errors.
  // DENO_CERT puts the right CA into Deno's default trust store: sslrootcert must still be the
  // only anchor, as in libpq.
  const refused = async (upstream: string, want: RegExp): Promise<void> => {
    await using wal = await tempDir("walrelay-tlschain-bad-");
    await using relay = await spawnBackground([
      Deno.execPath(),
      "run",
      "-A",
      `${REPO_ROOT}/cli.ts`,
      "serve",
      "--wal-dir",
      wal.path,
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      upstream,
    ], { cwd: REPO_ROOT, env: { NO_COLOR: "1", DENO_CERT: `${c}/ca.crt` } });
    await waitFor(() => /upstream connection failed/.test(relay.stderr()) || relay.exited, {
      timeoutMs: 30_000,
      message: `no connection failure for ${upstream}`,
    });
    assert.match(relay.stderr(), want);
    assert.doesNotMatch(relay.stderr(), /connected to upstream/);
  };
  await refused(
    `host=127.0.0.1 port=${relay1.port} user=postgres sslmode=verify-ca ` +
      `sslrootcert=${c}/other_ca.crt`,
    /upstream connection failed: SSL error: .*(certificate|issuer)/i,
  );
  await refused(
    `host=wronghost hostaddr=127.0.0.1 port=${relay1.port} user=postgres sslmode=verify-full ` +
      `sslrootcert=${c}/ca.crt`,
    /upstream connection failed: SSL error: .*wronghost/,
  );
});
