// Relay mode against an upstream that comes and goes: a restarted primary is followed again, and
// a relay named in synchronous_standby_names holds commits exactly while it is away.

import assert from "node:assert/strict";
import {
  basebackup,
  freePort,
  pgBin,
  type PgCluster,
  type RelayProcess,
  spawnBackground,
  startPrimary,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { startRelayMode, waitSame } from "./_relay_mode_util.ts";

const DIGEST = "SELECT count(*), sum(x) FROM t";

Deno.test("relay mode: the relay reconnects after the upstream restarts", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.sql("CREATE TABLE t (x int)");
  await using dir = await tempDir("walrelay-restart-");
  await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo() });
  await using backup = await basebackup(pg);
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: relay.conninfo({ application_name: "restart_follower" }),
  });
  await pg.sql("INSERT INTO t SELECT generate_series(1, 1000)");
  await waitSame(standby, DIGEST, await pg.sql(DIGEST), relay.stderr);

  await pg.stop("fast");
  await pg.start();
  await pg.sql("INSERT INTO t SELECT generate_series(1001, 5000)");
  await waitSame(standby, DIGEST, await pg.sql(DIGEST), relay.stderr);
  const log = relay.stderr();
  // The fast shutdown ended the stream with COPY 0; the relay connected again afterwards.
  assert.match(log, /replication terminated by upstream server/);
  assert.equal(log.match(/connected to upstream/g)?.length, 2, log);
});

/**
 * Commits an INSERT and says whether the commit waited for synchronous replication: still running
 * after 1.5 s with its backend in wait event SyncRep. A waiting commit is then cancelled (it has
 * committed locally, as PostgreSQL warns).
 */
async function commitBlocks(pg: PgCluster, value: number): Promise<boolean> {
  await using psql = await spawnBackground([
    await pgBin("psql"),
    "-X",
    "-q",
    "-d",
    pg.conninfo({ application_name: "sync_probe" }),
    "-c",
    `INSERT INTO t VALUES (${value})`,
  ]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const done = await Promise.race([
    psql.status.then(() => true),
    new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 1500)),
  ]);
  clearTimeout(timer);
  if (done) {
    assert.equal((await psql.status).code, 0, psql.stderr());
    return false;
  }
  assert.equal(
    await pg.sql(
      "SELECT wait_event FROM pg_stat_activity WHERE application_name = 'sync_probe'",
    ),
    "SyncRep",
  );
  await pg.sql(
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'sync_probe'",
  );
  await psql.status;
  assert.match(psql.stderr(), /canceling wait for synchronous replication/);
  return true;
}

Deno.test("relay mode: synchronous_standby_names naming the relay holds commits while it is away", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { synchronous_standby_names: "walrelay" },
  });
  await using dir = await tempDir("walrelay-sync-");
  const port = await freePort();
  let relay: RelayProcess = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    port,
  });
  try {
    await waitFor(
      async () =>
        (await pg.sql(
          "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'walrelay'",
        )) === "sync",
      { timeoutMs: 20_000, message: "the relay is not the synchronous standby" },
    );
    // Without synchronous commit for the DDL, it would need the relay too (it is there).
    await pg.sql("CREATE TABLE t (x int)");
    assert.equal(await commitBlocks(pg, 1), false);

    await relay.stop("SIGKILL");
    assert.equal(await commitBlocks(pg, 2), true);

    relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo(), port });
    await waitFor(async () => !(await commitBlocks(pg, 3)), {
      timeoutMs: 20_000,
      message: "commits still wait after the relay came back",
    });
    // The flush position the relay reported is what it has on disk: at least the last commit.
    const [flush, current] = (await pg.sql(
      "SELECT flush_lsn, pg_current_wal_flush_lsn() FROM pg_stat_replication " +
        "WHERE application_name = 'walrelay'",
    )).split("|");
    assert.ok(flush && current, "no flush position reported");
  } finally {
    await relay[Symbol.asyncDispose]();
  }
});
