// TLS with real libpq clients: a CA and server certificate made by the test, sslmode=require and
// verify-full, hostssl/hostnossl rules, and SCRAM over TLS (libpq's `y,,` header).

import assert from "node:assert/strict";
import { buildScramVerifier } from "../lib/auth/scram.ts";
import { MessageBuilder } from "../lib/pgwire/messages.ts";
import { copyTestdata, pgBin, run, startRelay, tempDir } from "./_pg.ts";
import { makeCertificates } from "./_tls_util.ts";

Deno.test("tls: sslmode=require and verify-full, hostssl rules, SCRAM over TLS", async () => {
  await using dir = await tempDir("walrelay_tls_");
  await makeCertificates(dir.path);
  const walDir = `${dir.path}/wal`;
  await copyTestdata(walDir);
  await Deno.writeTextFile(
    `${dir.path}/hba.conf`,
    [
      "hostssl   replication repl  127.0.0.1/32 scram-sha-256",
      "hostnossl replication plain 127.0.0.1/32 trust",
      "hostssl   replication direct 127.0.0.1/32 trust",
    ].join("\n") + "\n",
  );
  await Deno.writeTextFile(`${dir.path}/passwords`, `repl:${await buildScramVerifier("pw")}\n`);
  await using relay = await startRelay({
    walDir,
    args: [
      "--tls-cert",
      `${dir.path}/server.crt`,
      "--tls-key",
      `${dir.path}/server.key`,
      "--hba",
      `${dir.path}/hba.conf`,
      "--passwords",
      `${dir.path}/passwords`,
    ],
  });
  const psql = async (conninfo: string) =>
    await run([
      await pgBin("psql"),
      "-X",
      "-A",
      "-t",
      "-c",
      "IDENTIFY_SYSTEM",
      `port=${relay.port} replication=true ${conninfo}`,
    ], { env: { PGPASSWORD: "pw" } });

  // Encrypted: accepted through the hostssl line, with SCRAM.
  const req = await psql("host=127.0.0.1 user=repl sslmode=require");
  assert.equal(req.code, 0, req.stderr);
  assert.match(req.stdout, /\|2\|/);
  const full = await psql(
    `host=localhost hostaddr=127.0.0.1 user=repl sslmode=verify-full sslrootcert=${dir.path}/ca.crt`,
  );
  assert.equal(full.code, 0, full.stderr);
  // Channel binding: SCRAM-SHA-256-PLUS with tls-server-end-point, as libpq's
  // channel_binding=require insists.
  const bound = await psql("host=127.0.0.1 user=repl sslmode=require channel_binding=require");
  assert.equal(bound.code, 0, bound.stderr);

  // verify-full checks the name: one the certificate does not carry is refused by the client.
  const wrongName = await psql(
    `host=wronghost hostaddr=127.0.0.1 user=repl sslmode=verify-full sslrootcert=${dir.path}/ca.crt`,
  );
  assert.notEqual(wrongName.code, 0);
  assert.match(wrongName.stderr, /does not match host name "wronghost"/);

  // The same user in clear text: no hostssl match.
  const clear = await psql("host=127.0.0.1 user=repl sslmode=disable");
  assert.notEqual(clear.code, 0);
  assert.match(
    clear.stderr,
    /no pg_hba.conf entry for replication connection from host "127.0.0.1", user "repl", no encryption/,
  );
  // hostnossl: clear text is fine, TLS is not.
  assert.equal((await psql("host=127.0.0.1 user=plain sslmode=disable")).code, 0);
  const plainTls = await psql("host=127.0.0.1 user=plain sslmode=require");
  assert.notEqual(plainTls.code, 0);
  assert.match(plainTls.stderr, /user "plain", SSL encryption/);

  // PostgreSQL 17's direct TLS: the handshake first, ALPN "postgresql", no SSLRequest.
  const caCerts = [await Deno.readTextFile(`${dir.path}/ca.crt`)];
  const startup = new MessageBuilder(null).int32(196608).cstring("user").cstring("direct")
    .cstring("replication").cstring("true").byte(0).finish();
  const direct = await Deno.connectTls({
    hostname: "localhost",
    port: relay.port,
    caCerts,
    alpnProtocols: ["postgresql"],
  });
  await direct.write(startup);
  const answer = new Uint8Array(9);
  assert.equal(await direct.read(answer), 9);
  assert.deepEqual([...answer], [0x52, 0, 0, 0, 8, 0, 0, 0, 0], "AuthenticationOk over direct TLS");
  direct.close();
  // Without ALPN, PostgreSQL 17 refuses direct TLS; so do we.
  const noAlpn = await Deno.connectTls({ hostname: "localhost", port: relay.port, caCerts });
  await noAlpn.write(startup);
  const refusal = new Uint8Array(512);
  const n = await noAlpn.read(refusal);
  assert.match(
    new TextDecoder().decode(refusal.subarray(0, n ?? 0)),
    /direct SSL connection request without ALPN protocol negotiation extension/,
  );
  noAlpn.close();

  // pg_receivewal streams over TLS, verifying the relay's certificate and name.
  await using out = await tempDir("walrelay_tls_out_");
  await Deno.writeFile(`${out.path}/000000010000000000000006.partial`, new Uint8Array());
  const rw = await run([
    await pgBin("pg_receivewal"),
    "-d",
    `host=localhost hostaddr=127.0.0.1 port=${relay.port} user=repl sslmode=verify-full ` +
    `sslrootcert=${dir.path}/ca.crt`,
    "-D",
    out.path,
    "-n",
    "--endpos",
    "0/800000",
  ], { env: { PGPASSWORD: "pw" }, timeoutMs: 30_000 });
  assert.equal(rw.code, 0, rw.stderr);
  for (const name of ["000000010000000000000006", "000000010000000000000007"]) {
    assert.deepEqual(
      await Deno.readFile(`${out.path}/${name}`),
      await Deno.readFile(`${walDir}/${name}`),
      name,
    );
  }
});
