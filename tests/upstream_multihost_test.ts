// Host lists in the upstream connection string, against real servers: libpq's failover rules
// (next host when one cannot be reached or times out, not after a failed authentication), the
// relay following the host that answers, and target_session_attrs with a primary and a standby.

import assert from "node:assert/strict";
import { PgServerError } from "../lib/pgwire/server_error.ts";
import { parseConninfo } from "../lib/upstream/conninfo.ts";
import { resolveConninfo } from "../lib/upstream/conninfo_resolve.ts";
import { connectUpstream, type UpstreamConnection } from "../lib/upstream/connect.ts";
import {
  assertSegmentsMatch,
  basebackup,
  freePort,
  startPrimary,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { waitForFiles } from "./_relay_util.ts";
import { startRelayMode } from "./_relay_mode_util.ts";

const PARAMS = { database: "replication", replication: "true" };

/** Resolves a conninfo without the caller's environment (no PG* variables, no ~/.pgpass). */
function resolve(text: string) {
  return resolveConninfo(parseConninfo(text), {
    replication: true,
    environment: {
      env: () => undefined,
      home: () => undefined,
      readFile: () => undefined,
      warn: () => {},
    },
  });
}

/** Connects through {@linkcode connectUpstream}, recording the hosts given up on. */
async function connect(
  text: string,
  random?: () => number,
): Promise<{ conn: UpstreamConnection; failed: string[] }> {
  const failed: string[] = [];
  const conn = await connectUpstream(resolve(text), {
    params: PARAMS,
    onHostFailed: (server, e) => failed.push(`${server}: ${e.message}`),
    ...(random ? { random } : {}),
  });
  return { conn, failed };
}

Deno.test("multi-host: the relay skips a refusing host and streams from the next", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.sql("CREATE TABLE t (x int)");
  await using dir = await tempDir("walrelay-multihost-");
  const closed = await freePort();
  const http = await freePort();
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: `host=127.0.0.1,127.0.0.1 port=${closed},${pg.port} user=postgres ` +
      `password=not_shown application_name=multihost`,
    args: ["--http", `127.0.0.1:${http}`],
  });
  await pg.sql("INSERT INTO t SELECT generate_series(1, 50000)");
  const last = await pg.switchWal();
  await waitForFiles(dir.path, [last], { proc: relay, sizes: 1 << 20 });
  const segs = await assertSegmentsMatch(dir.path, pg.walDir);
  assert.ok(segs.includes(last), `${last} not among ${segs.join(", ")}`);

  const log = relay.stderr();
  assert.match(
    log,
    new RegExp(
      `could not use upstream host 127\\.0\\.0\\.1:${closed}: connection to server at ` +
        `"127\\.0\\.0\\.1", port ${closed} failed: Connection refused`,
    ),
  );
  assert.match(log, new RegExp(`connected to upstream .*server=127\\.0\\.0\\.1:${pg.port}`));
  assert.doesNotMatch(log, /not_shown/);
  // The primary sees the relay under its application_name.
  assert.equal(
    await pg.sql("SELECT application_name FROM pg_stat_replication"),
    "multihost",
  );
  // /status names the host the link went to, and still hides the password.
  const status = await (await fetch(`http://127.0.0.1:${http}/status`)).json();
  assert.equal(status.upstream.server, `127.0.0.1:${pg.port}`);
  assert.equal(status.upstream.connected, true);
  assert.equal(
    status.upstream.conninfo,
    `host=127.0.0.1,127.0.0.1 port=${closed},${pg.port} user=postgres ` +
      `application_name=multihost`,
  );
});

Deno.test("multi-host: a failed authentication does not try the remaining hosts", async () => {
  await using a = await startPrimary({
    walSegSize: 1,
    hba: [
      "local all all trust",
      "host all all 127.0.0.1/32 trust",
      "host replication all 127.0.0.1/32 scram-sha-256",
    ],
  });
  await a.sql("ALTER ROLE postgres PASSWORD 'right'");
  await using b = await startPrimary({ walSegSize: 1, conf: { log_connections: "on" } });
  const list = `host=127.0.0.1,127.0.0.1 port=${a.port},${b.port} user=postgres`;

  const failed: string[] = [];
  const err = await connectUpstream(resolve(`${list} password=wrong`), {
    params: PARAMS,
    onHostFailed: (server) => failed.push(server),
  }).then(() => undefined, (e: Error) => e);
  assert.ok(err, "connecting with a wrong password succeeded");
  assert.match(
    err.message,
    new RegExp(
      `connection to server at "127\\.0\\.0\\.1", port ${a.port} failed: ` +
        `password authentication failed for user "postgres"`,
    ),
  );
  assert.ok(err.cause instanceof PgServerError && err.cause.code === "28P01");
  assert.deepEqual(failed, []);
  // b never saw a connection.
  assert.doesNotMatch(await b.log(), /connection received/);

  // With the right password the first host is used; b is still untouched.
  const { conn } = await connect(`${list} password=right`);
  assert.equal(conn.server, `127.0.0.1:${a.port}`);
  await conn.client.terminate();
  assert.doesNotMatch(await b.log(), /connection received/);
});

Deno.test("multi-host: connect_timeout moves on from a host that never answers", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  // Accepted by the kernel (listen backlog), never read: the startup exchange hangs.
  using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const silentPort = (silent.addr as Deno.NetAddr).port;
  for (const sslmode of ["disable", "prefer"]) {
    const started = Date.now();
    const { conn, failed } = await connect(
      `host=127.0.0.1,127.0.0.1 port=${silentPort},${pg.port} user=postgres ` +
        `connect_timeout=2 sslmode=${sslmode}`,
    );
    const took = Date.now() - started;
    assert.equal(conn.server, `127.0.0.1:${pg.port}`);
    assert.equal(failed.length, 1);
    assert.match(failed[0]!, new RegExp(`timeout expired connecting to 127.0.0.1:${silentPort}`));
    assert.ok(took >= 1900 && took < 10_000, `took ${took} ms`);
    const [r] = await conn.client.query("IDENTIFY_SYSTEM");
    assert.equal(r!.rows.length, 1);
    await conn.client.terminate();
  }
  // Without connect_timeout a single unreachable host is its own error, as before host lists.
  const closed = await freePort();
  await assert.rejects(
    connect(`host=127.0.0.1 port=${closed} user=postgres`),
    new RegExp(
      `connection to server at "127\\.0\\.0\\.1", port ${closed} failed: ` +
        "Connection refused",
    ),
  );
  // Several unreachable hosts: one error naming each.
  const closed2 = await freePort();
  await assert.rejects(
    connect(`host=127.0.0.1,localhost port=${closed},${closed2} user=postgres`),
    new RegExp(
      `could not connect to any upstream host: .*port ${closed} failed.*; ` +
        `.*"localhost", port ${closed2} failed`,
    ),
  );
  // load_balance_hosts=random shuffles the list: this draw puts the live host first.
  const { conn, failed } = await connect(
    `host=127.0.0.1,127.0.0.1 port=${closed},${pg.port} user=postgres load_balance_hosts=random`,
    () => 0,
  );
  assert.equal(conn.server, `127.0.0.1:${pg.port}`);
  assert.deepEqual(failed, []);
  await conn.client.terminate();
});

Deno.test("multi-host: target_session_attrs picks the primary or the standby", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await using backup = await basebackup(pg);
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: pg.conninfo({ application_name: "tsa_standby" }),
  });
  await waitFor(async () => (await standby.sql("SELECT pg_is_in_recovery()")) === "t", {
    message: "standby not in recovery",
  });
  const P = pg.port, S = standby.port;
  const pick = async (ports: number[], attrs: string): Promise<number> => {
    const { conn } = await connect(
      `host=${ports.map(() => "127.0.0.1").join(",")} port=${ports.join(",")} ` +
        `user=postgres target_session_attrs=${attrs}`,
    );
    await conn.client.terminate();
    return conn.host.port;
  };
  assert.equal(await pick([P, S], "any"), P);
  assert.equal(await pick([P, S], "standby"), S);
  assert.equal(await pick([S, P], "primary"), P);
  assert.equal(await pick([S, P], "read-write"), P);
  assert.equal(await pick([P, S], "read-only"), S);
  assert.equal(await pick([P, S], "prefer-standby"), S);
  // prefer-standby without a standby: libpq's second pass takes any server.
  assert.equal(await pick([P], "prefer-standby"), P);
  await assert.rejects(pick([P], "standby"), /server is not in hot standby mode/);
  await assert.rejects(
    pick([S, S], "primary"),
    /could not connect to any upstream host: .*server is in hot standby mode/,
  );
});
