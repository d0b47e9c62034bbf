// Relay mode through planned switchovers in a row: two servers change roles back and forth (the
// new primary promoted, the old one rewound with pg_rewind and restarted as its standby) while a
// relay follows whichever is the primary by a multi-host conninfo. After each switchover a
// standby behind the relay converges, and a pg_receivewal behind the relay holds every
// timeline's segments and history files byte-identical to the servers'.

import assert from "node:assert/strict";
import {
  basebackup,
  compareDirs,
  type PgCluster,
  startPrimary,
  startStandby,
  tempDir,
} from "./_pg.ts";
import { listDir, spawnReceivewal, waitForFiles } from "./_relay_util.ts";
import { PGBENCH_DIGEST, startRelayMode, waitSame } from "./_relay_mode_util.ts";

const SWITCHOVERS = 5;
const SEG = 1 << 20;
const FAST = { fsync: "off", wal_log_hints: "on" };

/** Stops `from` (the primary), promotes `to`, rewinds `from` and restarts it as `to`'s standby. */
async function switchover(from: PgCluster, to: PgCluster): Promise<void> {
  await to.waitForReplay(await from.currentLsn());
  await from.stop("fast");
  await to.promote();
  // pg_rewind reads the source's timeline from its control file: a checkpoint brings it up to date.
  await to.sql("CHECKPOINT");
  await from.programs.runOk(
    "pg_rewind",
    ["-D", from.pgDataDir, `--source-server=${to.conninfo()}`, "-R", "--no-sync"],
    { asPostgres: true, timeoutMs: 120_000 },
  );
  // pg_rewind copied the source's configuration: this server keeps its own port and socket.
  await Deno.writeTextFile(
    `${from.dataDir}/postgresql.conf`,
    `\n# switchover: back to this server's own address\nport = ${from.port}\n` +
      `unix_socket_directories = '${from.runDir.pgPath}'\n`,
    { append: true },
  );
  await from.start();
}

/**
 * Every complete segment `out` holds is byte-identical to the file of that name on one of the
 * servers, and every history file to the primary's.
 */
async function assertReceived(out: string, primary: PgCluster, standby: PgCluster): Promise<void> {
  const problems: string[] = [];
  const [a, b] = await Promise.all([
    compareDirs(out, primary.walDir),
    compareDirs(out, standby.walDir),
  ]);
  const same = new Set([...a.same, ...b.same]);
  for (const name of [...a.differ.map((d) => d.name), ...a.onlyInA]) {
    if (!same.has(name)) problems.push(`${name}: not on either server with these bytes`);
  }
  const history = await compareDirs(out, primary.walDir, (n) => n.endsWith(".history"));
  for (const d of history.differ) problems.push(`${d.name}: differs at ${d.offset}`);
  for (const n of history.onlyInA) problems.push(`${n}: not on the primary`);
  if (problems.length > 0) throw new Error(`${out}:\n${problems.join("\n")}`);
}

Deno.test("relay mode: five switchovers in a row are followed", async () => {
  const started = Date.now();
  await using a = await startPrimary({ walSegSize: 1, conf: FAST });
  await a.pgbench(["-i", "-s", "1", "-q"]);
  await using bBackup = await basebackup(a);
  await using b = await startStandby({
    dataDir: bBackup.dataDir,
    primaryConninfo: a.conninfo({ application_name: "b" }),
  });
  await using dir = await tempDir("walrelay-so-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: `host=127.0.0.1,127.0.0.1 port=${a.port},${b.port} user=postgres ` +
      `target_session_attrs=read-write application_name=relay`,
  });
  await using dBackup = await basebackup(a);
  await using d = await startStandby({
    dataDir: dBackup.dataDir,
    primaryConninfo: relay.conninfo({ application_name: "d" }),
    conf: { fsync: "off" },
  });
  await using out = await tempDir("walrelay-so-rw-");
  await using rw = await spawnReceivewal(relay.port, ["-D", out.path]);
  const logs = async () =>
    `--- relay ---\n${relay.stderr()}\n--- pg_receivewal ---\n${rw.stderr()}\n` +
    `--- d ---\n${await d.log()}`;

  let [primary, standby] = [a, b];
  const took: number[] = [];
  for (let i = 1; i <= SWITCHOVERS; i++) {
    const t0 = Date.now();
    await primary.pgbench(["-n", "-t", "200", "-c", "2"]);
    await switchover(primary, standby);
    [primary, standby] = [standby, primary];
    const tli = i + 1;
    await primary.pgbench(["-n", "-t", "100"]);
    const last = await primary.switchWal();
    assert.ok(last.startsWith(tli.toString(16).toUpperCase().padStart(8, "0")), last);
    await waitForFiles(out.path, [last], { proc: rw, sizes: SEG, timeoutMs: 60_000 }).catch(
      async (e) => {
        throw new Error(`switchover ${i}: ${(e as Error).message}\n${await logs()}`);
      },
    );
    await waitSame(d, PGBENCH_DIGEST, await primary.sql(PGBENCH_DIGEST), relay.stderr);
    await assertReceived(out.path, primary, standby);
    const names = await listDir(out.path);
    for (let t = 1; t <= tli; t++) {
      const hex = t.toString(16).toUpperCase().padStart(8, "0");
      assert.ok(names.some((n) => n.startsWith(hex) && n.length >= 24), `timeline ${t}`);
      if (t > 1) assert.ok(names.includes(`${hex}.history`), `${hex}.history`);
    }
    took.push(Date.now() - t0);
  }
  assert.match(relay.stderr(), new RegExp(`switched to timeline ${SWITCHOVERS + 1}`));
  assert.doesNotMatch(relay.stderr(), /set aside WAL/);
  console.log(
    `${SWITCHOVERS} switchovers: ${took.map((t) => `${(t / 1000).toFixed(1)} s`).join(", ")}; ` +
      `${((Date.now() - started) / 1000).toFixed(1)} s in all`,
  );
});
