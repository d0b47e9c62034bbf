// Authentication with real libpq clients (psql, pg_receivewal): pg_hba.conf rules, SCRAM, md5
// and password methods against verifiers as PostgreSQL stores them, and SIGHUP reloads.

import assert from "node:assert/strict";
import { buildScramVerifier } from "../lib/auth/scram.ts";
import { md5PasswordHash } from "../lib/auth/md5.ts";
import { copyTestdata, delay, pgBin, run, startRelay, tempDir } from "./_pg.ts";

async function psql(port: number, user: string, password: string | undefined, cmd: string) {
  return await run([
    await pgBin("psql"),
    "-X",
    "-A",
    "-t",
    "-c",
    cmd,
    `host=127.0.0.1 port=${port} user=${user} replication=true sslmode=disable`,
  ], { env: password === undefined ? { PGPASSWORD: "" } : { PGPASSWORD: password } });
}

Deno.test("auth: hba methods with real clients, wrong passwords, reload on SIGHUP", async () => {
  await using dir = await tempDir("walrelay_auth_");
  const walDir = `${dir.path}/wal`;
  await copyTestdata(walDir);
  const hba = `${dir.path}/hba.conf`;
  const passwords = `${dir.path}/passwords`;
  await Deno.writeTextFile(
    hba,
    [
      "# replication users of the relay",
      "host replication scramuser 127.0.0.1/32 scram-sha-256",
      "host replication md5user   127.0.0.1/32 md5",
      "host replication pwuser    127.0.0.1/32 password",
      "host replication trusted   127.0.0.1/32 trust",
      "host replication banned    127.0.0.1/32 reject",
      "host replication ghost     127.0.0.1/32 scram-sha-256",
      "host all         alluser   127.0.0.1/32 trust",
    ].join("\n") + "\n",
  );
  await Deno.writeTextFile(
    passwords,
    [
      `scramuser:${await buildScramVerifier("s3cret")}`,
      `md5user:${md5PasswordHash("md5pw", "md5user")}`,
      `pwuser:${await buildScramVerifier("plainpw")}`,
    ].join("\n") + "\n",
  );
  await using relay = await startRelay({
    walDir,
    args: ["--hba", hba, "--passwords", passwords],
  });

  const ok = async (user: string, password: string | undefined) => {
    const r = await psql(relay.port, user, password, "IDENTIFY_SYSTEM");
    assert.equal(r.code, 0, `${user}: ${r.stderr}`);
    assert.match(r.stdout, /^\d+\|2\|/);
  };
  const refused = async (user: string, password: string | undefined, message: RegExp) => {
    const r = await psql(relay.port, user, password, "IDENTIFY_SYSTEM");
    assert.notEqual(r.code, 0, `${user} must be refused`);
    assert.match(r.stderr, message);
  };

  await ok("scramuser", "s3cret");
  await ok("md5user", "md5pw");
  await ok("pwuser", "plainpw");
  await ok("trusted", undefined);
  await refused(
    "scramuser",
    "wrong",
    /FATAL: {2}password authentication failed for user "scramuser"/,
  );
  await refused("md5user", "wrong", /password authentication failed for user "md5user"/);
  await refused("pwuser", "wrong", /password authentication failed for user "pwuser"/);
  // A user without a verifier fails the same way, after the same exchange.
  await refused("ghost", "x", /password authentication failed for user "ghost"/);
  await refused(
    "banned",
    "x",
    /pg_hba.conf rejects replication connection for host "127.0.0.1", user "banned", no encryption/,
  );
  // `all` in the database column does not cover replication connections, as in PostgreSQL.
  await refused(
    "alluser",
    undefined,
    /no pg_hba.conf entry for replication connection from host "127.0.0.1", user "alluser", no encryption/,
  );

  // pg_receivewal authenticates with SCRAM the same way and streams.
  await using out = await tempDir("walrelay_auth_out_");
  await Deno.writeFile(`${out.path}/000000010000000000000006.partial`, new Uint8Array());
  const rw = await run([
    await pgBin("pg_receivewal"),
    "-h",
    "127.0.0.1",
    "-p",
    String(relay.port),
    "-U",
    "scramuser",
    "-D",
    out.path,
    "-n",
    "--endpos",
    "0/700000",
  ], { env: { PGPASSWORD: "s3cret" }, timeoutMs: 30_000 });
  assert.equal(rw.code, 0, rw.stderr);
  assert.deepEqual(
    await Deno.readFile(`${out.path}/000000010000000000000006`),
    await Deno.readFile(`${walDir}/000000010000000000000006`),
  );

  // SIGHUP: a new password takes effect; a broken file keeps the previous rules.
  await Deno.writeTextFile(passwords, `scramuser:${await buildScramVerifier("rotated")}\n`);
  await reload(relay, /authentication configuration reloaded/);
  await ok("scramuser", "rotated");
  await refused("scramuser", "s3cret", /password authentication failed/);

  await Deno.writeTextFile(hba, "host replication all 127.0.0.1/32 nonsense\n");
  await reload(relay, /previous configuration kept/);
  await ok("scramuser", "rotated");
  await ok("trusted", undefined);
});

/** Sends SIGHUP and waits for the relay to log the outcome. */
async function reload(
  relay: { kill(signal: Deno.Signal): void; stderr(): string },
  pattern: RegExp,
): Promise<void> {
  const count = () => relay.stderr().split("\n").filter((l) => pattern.test(l)).length;
  const before = count();
  relay.kill("SIGHUP");
  for (let i = 0; i < 100; i++) {
    if (count() > before) return;
    await delay(50);
  }
  throw new Error(`relay never logged ${pattern}:\n${relay.stderr()}`);
}
