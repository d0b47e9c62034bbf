// Exercises the integration-test harness itself against real PostgreSQL 15, and 17 and 18 from
// their chroots: if these fail, every integration test would fail for reasons unrelated to walrelay.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSegmentsMatch,
  basebackup,
  compareDirs,
  isRoot,
  pgBin,
  pgBinDir,
  pgPrograms,
  REPO_ROOT,
  run,
  runOk,
  spawnBackground,
  startPrimary,
  startRelay,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";

Deno.test("run reports exit codes, output and timeouts", async () => {
  const r = await run(["sh", "-c", "echo out; echo err >&2; exit 3"]);
  assert.deepEqual(r, { code: 3, success: false, stdout: "out\n", stderr: "err\n" });
  await assert.rejects(runOk(["sh", "-c", "echo boom >&2; exit 1"]), /exit code 1[\s\S]*boom/);
  await assert.rejects(run(["sleep", "10"], { timeoutMs: 200 }), /timed out after 200 ms/);
  assert.equal(await runOk(["cat"], { stdin: "piped in" }), "piped in");
  if (isRoot()) assert.equal(await runOk(["id", "-un"], { asPostgres: true }), "postgres\n");
});

Deno.test("pgBinDir finds PostgreSQL 15", async () => {
  const dir = await pgBinDir();
  const version = await runOk([join(dir, "postgres"), "--version"]);
  assert.match(version, /\(PostgreSQL\) 15\./);
  assert.equal(await pgBin("psql"), join(dir, "psql"));
});

Deno.test("tempDir is usable by postgres and removed on dispose", async () => {
  let path: string;
  {
    await using dir = await tempDir("walrelay-harness-");
    path = dir.path;
    await runOk(["touch", join(path, "f")], { asPostgres: true });
    assert.ok((await Deno.stat(join(path, "f"))).isFile);
  }
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
});

Deno.test("spawnBackground collects output and stops the process", async () => {
  const proc = await spawnBackground(["sh", "-c", "echo ready; exec sleep 30"], {
    asPostgres: true,
  });
  try {
    await waitFor(() => proc.stdout() === "ready\n", { timeoutMs: 5000 });
    assert.equal(proc.exited, false);
    const status = await proc.stop("SIGTERM");
    assert.equal(status.signal, "SIGTERM");
    assert.equal(proc.exited, true);
  } finally {
    await proc[Symbol.asyncDispose]();
  }
});

Deno.test("primary: SQL, IDENTIFY_SYSTEM, and pg_receivewal gets byte-identical segments", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  assert.equal(await pg.sql("SELECT 1 + 1"), "2");
  assert.equal(await pg.sql("SHOW wal_segment_size"), "1MB");
  assert.match(await pg.log(), /database system is ready to accept connections/);

  const sysid = await pg.sql("SELECT system_identifier FROM pg_control_system()");
  assert.equal((await pg.controlData())["Database system identifier"], sysid);
  const [id, timeline, xlogpos, dbname, ...rest] = (await pg.replSql("IDENTIFY_SYSTEM")).split("|");
  assert.equal(id, sysid);
  assert.equal(timeline, "1");
  assert.match(xlogpos ?? "", /^[0-9A-F]+\/[0-9A-F]+$/);
  assert.equal(dbname, "");
  assert.deepEqual(rest, []);
  await assert.rejects(pg.sql("SELECT * FROM no_such_table"), /no_such_table/);

  await using target = await tempDir("walrelay-recv-");
  await using recv = await spawnBackground([
    await pgBin("pg_receivewal"),
    "-h",
    pg.host,
    "-p",
    String(pg.port),
    "-U",
    pg.user,
    "-D",
    target.path,
    "--no-loop",
    "--verbose",
  ]);
  // pg_receivewal starts at the beginning of the current segment once it is streaming.
  await waitFor(
    async () => {
      for await (const e of Deno.readDir(target.path)) if (e.name.endsWith(".partial")) return true;
      return recv.exited ? Promise.reject(new Error(recv.stderr())) : false;
    },
    { timeoutMs: 20_000, message: "pg_receivewal did not start streaming" },
  );

  await pg.sql("CREATE TABLE t (id int, v text)");
  const completed: string[] = [];
  for (let i = 0; i < 3; i++) {
    await pg.sql(`INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g`);
    completed.push(await pg.switchWal());
  }
  await waitFor(
    async () => {
      const names = new Set<string>();
      for await (const e of Deno.readDir(target.path)) names.add(e.name);
      return completed.every((n) => names.has(n));
    },
    { timeoutMs: 20_000, message: `pg_receivewal did not write ${completed.join(", ")}` },
  );

  const status = await recv.stop("SIGINT");
  assert.equal(status.code, 0, recv.stderr());
  const same = await assertSegmentsMatch(target.path, pg.walDir);
  for (const name of completed) assert.ok(same.includes(name), `${name} compared`);

  // The comparison must be able to fail: corrupt one byte of a received segment.
  const victim = join(target.path, completed[1]!);
  const bytes = await Deno.readFile(victim);
  bytes[5000] = bytes[5000]! ^ 0xff;
  await Deno.writeFile(victim, bytes);
  const c = await compareDirs(target.path, pg.walDir);
  assert.deepEqual(c.differ.map((d) => [d.name, d.offset]), [[completed[1], 5000]]);
  await assert.rejects(assertSegmentsMatch(target.path, pg.walDir), /differs at offset 5000/);

  await pg.stop();
  assert.equal(pg.running, false);
});

Deno.test("standby from a base backup replays what the primary writes", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
  await using backup = await basebackup(pg);
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: pg.conninfo({ application_name: "harness_standby" }),
  });
  await pg.sql("INSERT INTO t SELECT generate_series(1001, 2500)");
  await standby.waitForReplay(await pg.currentLsn());
  assert.equal(await standby.sql("SELECT count(*) FROM t"), "2500");
  assert.equal(await standby.sql("SELECT pg_is_in_recovery()"), "t");
  assert.equal(
    await pg.sql("SELECT application_name, state FROM pg_stat_replication"),
    "harness_standby|streaming",
  );
});

Deno.test("startRelay fails with the relay's stderr when it cannot listen", async () => {
  // Another program holds the port: the relay must not be taken for ready.
  using blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (blocker.addr as Deno.NetAddr).port;
  const err = await startRelay({
    walDir: join(REPO_ROOT, "testdata", "wal"),
    port,
    timeoutMs: 15_000,
  }).then(
    async (relay) => {
      await relay[Symbol.asyncDispose]();
      return new Error("startRelay succeeded on a port held by another listener");
    },
    (e: Error) => e,
  );
  assert.match(err.message, /walrelay (exited|did not accept)[\s\S]*--- stderr ---/);
});

Deno.test("startRelay waits for the relay to answer and kills it on dispose", async () => {
  await using dir = await tempDir("walrelay-fake-relay-");
  // A stand-in for cli.ts that answers every SSLRequest with 'N', as a server without TLS does.
  const cli = join(dir.path, "fake_cli.ts");
  await Deno.writeTextFile(
    cli,
    `const i = Deno.args.indexOf("--listen");
const [hostname, port] = Deno.args[i + 1]!.split(":");
console.error("fake relay", Deno.args.join(" "));
await new Promise((r) => setTimeout(r, 300));
for await (const conn of Deno.listen({ hostname, port: Number(port) })) {
  conn.write(new TextEncoder().encode("N")).finally(() => conn.close());
}
`,
  );
  let pid: number;
  {
    await using relay = await startRelay({ walDir: dir.path, cli, args: ["--max-senders", "3"] });
    pid = relay.pid;
    assert.match(
      relay.stderr(),
      /fake relay serve --wal-dir \S+ --listen 127\.0\.0\.1:\d+ --max-senders 3/,
    );
    assert.match(
      relay.conninfo({ replication: "true" }),
      /^host=127\.0\.0\.1 port=\d+ user=postgres replication=true$/,
    );
    assert.equal(relay.exited, false);
  }
  // The process is gone once disposed.
  assert.equal((await run(["kill", "-0", String(pid)])).success, false);
});

for (const major of [17, 18]) {
  Deno.test(`PostgreSQL ${major}: primary, its psql, and its pg_receivewal into a host-readable directory`, async () => {
    await using pg = await startPrimary({ major, walSegSize: 1 });
    assert.equal(pg.major, major);
    assert.ok(pg.programs.root !== undefined, "a chroot major");
    assert.ok(pg.dataDir.startsWith(`${pg.programs.root}/`), pg.dataDir);
    assert.equal(pg.programs.hostPath(pg.pgDataDir), pg.dataDir);
    assert.equal(await Deno.readTextFile(join(pg.dataDir, "PG_VERSION")), `${major}\n`);

    // That major's psql, not the host's, against that major's server.
    const psql = await pg.programs.runOk("psql", ["--version"]);
    assert.match(psql, new RegExp(`^psql \\(PostgreSQL\\) ${major}\\.`));
    assert.match(await pg.sql("SHOW server_version_num"), new RegExp(`^${major}\\d{4}$`));
    assert.equal(await pg.sql("SHOW wal_segment_size"), "1MB");

    await using target = await tempDir("walrelay-recv-", { major });
    assert.ok(target.path.startsWith(`${pg.programs.root}/tmp/`), target.path);
    assert.equal(target.pgPath, target.path.slice(pg.programs.root!.length));
    await using recv = await pg.programs.spawn("pg_receivewal", [
      "-h",
      pg.host,
      "-p",
      String(pg.port),
      "-U",
      pg.user,
      "-D",
      target.pgPath,
      "--no-loop",
      "--verbose",
    ]);
    await waitFor(
      async () => {
        for await (const e of Deno.readDir(target.path)) {
          if (e.name.endsWith(".partial")) return true;
        }
        return recv.exited ? Promise.reject(new Error(recv.stderr())) : false;
      },
      { timeoutMs: 20_000, message: `pg_receivewal ${major} did not start streaming` },
    );
    await pg.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g");
    const completed = await pg.switchWal();
    await waitFor(
      async () => (await Deno.stat(join(target.path, completed)).catch(() => undefined))?.isFile,
      { timeoutMs: 20_000, message: `pg_receivewal ${major} did not write ${completed}` },
    );
    const status = await recv.stop("SIGINT");
    assert.equal(status.code, 0, recv.stderr());
    const same = await assertSegmentsMatch(target.path, pg.walDir);
    assert.ok(same.includes(completed), `${completed} compared`);
  });

  Deno.test(`PostgreSQL ${major}: pgbench, pg_basebackup and a standby of that major`, async () => {
    await using pg = await startPrimary({ major, walSegSize: 1 });
    await pg.pgbench(["-i", "-s", "1", "-q"]);
    await using backup = await basebackup(pg);
    assert.equal(backup.major, major);
    await using standby = await startStandby({
      dataDir: backup.dataDir,
      primaryConninfo: pg.conninfo({ application_name: `harness_${major}` }),
    });
    assert.equal(standby.major, major);
    await pg.pgbench(["-t", "50", "-c", "1"]);
    await standby.waitForReplay(await pg.currentLsn());
    assert.equal(await standby.sql("SELECT count(*) FROM pgbench_history"), "50");
    assert.equal((await standby.controlData())["Database cluster state"], "in archive recovery");
  });
}

Deno.test("a major that is not set up fails, naming the command that installs it", async () => {
  await assert.rejects(startPrimary({ major: 9 }), /bash \.\.\/shared\/tools\/pg-versions\.sh 9/);
  const prev = Deno.env.get("WALRELAY_PG_ROOTS");
  Deno.env.set("WALRELAY_PG_ROOTS", "/nonexistent/walrelay-pg");
  try {
    await assert.rejects(
      pgPrograms(17),
      /not set up[\s\S]*bash \.\.\/shared\/tools\/pg-versions\.sh 17/,
    );
  } finally {
    if (prev === undefined) Deno.env.delete("WALRELAY_PG_ROOTS");
    else Deno.env.set("WALRELAY_PG_ROOTS", prev);
  }
});
