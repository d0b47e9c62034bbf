// Archives made by the real archiving tools (Debian's pgbackrest and barman, installed by
// .ci/run), served by the relay as they lie: a pgBackRest repository whose segments were pushed
// with gz, lz4 and zst compression (each checked against the SHA-1 in its name), and a Barman
// server whose streamed WAL was archived compressed with gzip and bzip2, the newest WAL still in
// receive-wal's .partial in streaming/. A standby from a base backup reaches the primary's data
// through the relay, and a plain pg_receivewal pulling from it writes the primary's segments
// byte for byte.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  basebackup,
  type PgCluster,
  pgPrograms,
  run,
  runOk,
  runWalrelay,
  spawnBackground,
  startPrimary,
  startRelay,
  waitFor,
} from "./_pg.ts";
import { PGBENCH_DIGEST } from "./_relay_mode_util.ts";
import {
  primarySegments,
  pullMatchesPrimary,
  relayEnd,
  standbyReachesPrimary,
} from "./_archive_util.ts";
import { formatLsn, lsn } from "./_relay_util.ts";

/** Every file under `dir`, as paths relative to it. */
async function walk(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(dir, prefix))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await walk(dir, rel));
    else out.push(rel);
  }
  return out.sort();
}

/** `p` matched literally in a regular expression. */
const esc = (p: string) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** What `walrelay serve` says when it cannot start on `dir`. */
async function serveRefuses(dir: string): Promise<string> {
  const r = await runWalrelay(["serve", "--wal-dir", dir, "--listen", "127.0.0.1:0"]);
  assert.equal(r.code, 1, r.stderr);
  return r.stderr;
}

/** A pgBackRest configuration for stanza `demo` of `pg`, its repository at `repo`. */
function pgbackrestConf(pg: PgCluster, home: string, repo: string, settings: string[]): string {
  return [
    "[global]",
    `repo1-path=${repo}`,
    ...settings,
    `lock-path=${home}/lock`,
    `log-path=${home}/log`,
    "log-level-console=warn",
    "log-level-file=off",
    "[demo]",
    `pg1-path=${pg.dataDir}`,
    `pg1-port=${pg.port}`,
    `pg1-socket-path=${pg.runDir.path}`,
    "",
  ].join("\n");
}

/**
 * A primary archiving with `pgbackrest archive-push` into a repository in a temporary directory,
 * stanza `demo` created with `settings` (rewritten by `configure` before each push that should
 * use others): pgBackRest reads its configuration on every push.
 */
async function pgbackrestPrimary(
  prefix: string,
  settings: string[],
  pgConf: Record<string, string> = {},
) {
  const repoDir = await (await pgPrograms(15)).tempDir(prefix);
  const conf = join(repoDir.path, "pgbackrest.conf");
  const repo = join(repoDir.path, "repo");
  let pg: PgCluster;
  try {
    pg = await startPrimary({
      walSegSize: 1,
      conf: {
        fsync: "off",
        archive_mode: "on",
        archive_command: `pgbackrest --config=${conf} --stanza=demo archive-push %p`,
        ...pgConf,
      },
    });
  } catch (e) {
    await repoDir.remove();
    throw e;
  }
  const configure = (s: string[]) =>
    Deno.writeTextFile(conf, pgbackrestConf(pg, repoDir.path, repo, s));
  const setup = {
    pg,
    repo,
    configure,
    async [Symbol.asyncDispose]() {
      await pg[Symbol.asyncDispose]();
      await repoDir.remove();
    },
  };
  try {
    await configure(settings);
    await runOk(["chown", "-R", "postgres:postgres", repoDir.path]);
    await runOk(
      ["pgbackrest", `--config=${conf}`, "--stanza=demo", "stanza-create"],
      { asPostgres: true, timeoutMs: 60_000 },
    );
  } catch (e) {
    await setup[Symbol.asyncDispose]();
    throw e;
  }
  return setup;
}

/** Writes WAL after the backup: pgbench, a few segments' worth, ending in a switch. */
async function workload(pg: PgCluster): Promise<void> {
  await pg.pgbench(["-c", "2", "-t", "500", "-n"]);
  await pg.switchWal();
}

Deno.test("a pgBackRest repository (archive-push with gz, lz4 and zst) served by the relay", async () => {
  await using setup = await pgbackrestPrimary(
    "walrelay-pgbackrest-",
    ["compress-type=gz"],
    { wal_keep_size: "1GB" },
  );
  const { pg, repo } = setup;
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await using backup = await basebackup(pg);
  // Each compression in turn: pgBackRest reads its configuration on every push.
  for (const compress of ["gz", "lz4", "zst"]) {
    await setup.configure([`compress-type=${compress}`]);
    await workload(pg);
  }
  const want = await pg.sql(PGBENCH_DIGEST);
  const last = await pg.switchWal();
  await waitFor(
    async () => (await pg.sql("SELECT last_archived_wal FROM pg_stat_archiver")) >= last,
    { timeoutMs: 60_000, message: `${last} was not archived` },
  );
  const primary = await primarySegments(pg);

  const stanza = join(repo, "archive", "demo");
  const files = await walk(stanza);
  for (const ext of ["gz", "lz4", "zst"]) {
    assert.ok(files.some((f) => f.endsWith(`.${ext}`)), `no .${ext} in ${files.join(", ")}`);
  }
  const unnamed = files.filter((f) =>
    /^15-1\/[0-9A-F]{16}\//.test(f) && !f.endsWith(".backup") && !/-[0-9a-f]{40}\./.test(f)
  );
  assert.deepEqual(unnamed, [], "every segment named with its SHA-1");
  const first = files.map((f) => /\/([0-9A-F]{24})-/.exec(f)?.[1]).filter(Boolean).sort()[0]!;

  // Given the directories above the WAL, it says where the WAL is.
  assert.match(
    await serveRefuses(repo),
    new RegExp(`a pgBackRest repository, whose WAL is in a stanza's archive: "${esc(stanza)}"`),
  );
  assert.match(
    await serveRefuses(pg.dataDir),
    new RegExp(`a PostgreSQL data directory, whose WAL is in "${esc(join(pg.dataDir, "pg_wal"))}"`),
  );

  await using relay = await startRelay({ walDir: stanza });
  const compared = await pullMatchesPrimary(relay, first, primary, 15);
  assert.ok(compared >= 5, `${compared} segments compared`);
  await standbyReachesPrimary(backup, relay, want);
});

Deno.test("a Barman archive (streaming archiver, gzip and bzip2 compression) served by the relay", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { fsync: "off", wal_keep_size: "1GB", max_wal_senders: 10 },
  });
  await using home = await pg.programs.tempDir("walrelay-barman-");
  const conf = join(home.path, "barman.conf");
  // Barman insists on running as its configured user: whoever runs the test.
  const user = (await runOk(["id", "-un"])).trim();
  const writeConf = (compression: string) =>
    Deno.writeTextFile(
      conf,
      [
        "[barman]",
        `barman_home = ${home.path}/home`,
        `barman_user = ${user}`,
        `log_file = ${home.path}/barman.log`,
        `barman_lock_directory = ${home.path}`,
        `path_prefix = ${pg.binDir}`,
        "[pg]",
        `conninfo = host=127.0.0.1 port=${pg.port} user=postgres dbname=postgres`,
        `streaming_conninfo = host=127.0.0.1 port=${pg.port} user=postgres`,
        "backup_method = postgres",
        "streaming_archiver = on",
        "slot_name = barman",
        `compression = ${compression}`,
        "",
      ].join("\n"),
    );
  await writeConf("gzip");
  const barman = (args: string[]) => run(["barman", "-c", conf, ...args], { timeoutMs: 60_000 });
  const create = await barman(["receive-wal", "--create-slot", "pg"]);
  assert.equal(create.code, 0, create.stderr + create.stdout);
  await using receiver = await spawnBackground(["barman", "-c", conf, "receive-wal", "pg"]);
  await waitFor(
    async () => Number(await pg.sql("SELECT count(*) FROM pg_stat_replication")) === 1,
    { timeoutMs: 30_000, message: `barman receive-wal did not stream:\n${receiver.stderr()}` },
  );
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await using backup = await basebackup(pg);
  const wals = join(home.path, "home", "pg", "wals");
  /** Runs `barman archive-wal` until `name` is archived, writing a little more WAL meanwhile. */
  const archiveUpTo = async (name: string) => {
    await waitFor(async () => {
      const r = await barman(["archive-wal", "pg"]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      if ((await walk(wals)).some((f) => f.endsWith(`/${name}`))) return true;
      // Barman leaves the newest streamed segment for later: give it a newer one.
      await pg.sql("SELECT pg_logical_emit_message(false, 'walrelay', 'more')");
      await pg.switchWal();
      return false;
    }, { timeoutMs: 60_000, message: `barman did not archive ${name}` });
  };
  for (const compression of ["gzip", "bzip2"]) {
    await writeConf(compression);
    await workload(pg);
    await archiveUpTo(await pg.sql("SELECT pg_walfile_name(pg_current_wal_lsn() - 1)"));
  }
  // WAL that only receive-wal's .partial in streaming/ holds: archive-wal never moves it.
  await pg.pgbench(["-c", "1", "-t", "200", "-n"]);
  const target = await pg.currentLsn();
  await waitFor(
    async () =>
      (await pg.sql(
        `SELECT count(*) FROM pg_stat_replication WHERE write_lsn >= '${target}'::pg_lsn`,
      )) === "1",
    { timeoutMs: 30_000, message: `barman receive-wal did not write up to ${target}` },
  );
  const want = await pg.sql(PGBENCH_DIGEST);
  await receiver.stop();
  const primary = await primarySegments(pg);
  const tail = await pg.sql(`SELECT pg_walfile_name('${target}')`);
  const streamed = await walk(join(home.path, "home", "pg", "streaming"));
  assert.ok(streamed.includes(`${tail}.partial`), `streaming/ holds ${streamed.join(", ")}`);
  assert.ok(!(await walk(wals)).some((f) => f.endsWith(`/${tail}`)), `${tail} in wals/`);

  const files = (await walk(wals)).filter((f) => /\/[0-9A-F]{24}$/.test(f));
  const magics = new Set<string>();
  for (const f of files) {
    const head = (await Deno.readFile(join(wals, f))).subarray(0, 3);
    magics.add(head[0] === 0x1f ? "gzip" : head[0] === 0x42 ? "bzip2" : "plain");
  }
  assert.deepEqual([...magics].sort(), ["bzip2", "gzip"], files.join(", "));
  const first = files.map((f) => f.slice(-24)).sort()[0]!;

  // Barman's home names its servers' directories.
  assert.match(
    await serveRefuses(join(home.path, "home")),
    /it looks like Barman's home, whose WAL is in a server's directory: ".*\/home\/pg"/,
  );
  // The server directory, as an operator would point at it.
  await using relay = await startRelay({ walDir: join(home.path, "home", "pg") });
  const end = await relayEnd(relay);
  assert.ok(end >= lsn(target), `the relay ends at ${formatLsn(end)}, before ${target}`);
  const compared = await pullMatchesPrimary(relay, first, primary, 15);
  assert.ok(compared >= 5, `${compared} segments compared`);
  await standbyReachesPrimary(backup, relay, want);
});

Deno.test("an encrypted pgBackRest repository stops the relay and inspect at startup, naming a file", async () => {
  await using setup = await pgbackrestPrimary("walrelay-pgbackrest-cipher-", [
    "repo1-cipher-type=aes-256-cbc",
    "repo1-cipher-pass=walrelay-test-passphrase",
    "compress-type=lz4",
  ]);
  const { pg, repo } = setup;
  await pg.sql("CREATE TABLE t AS SELECT generate_series(1, 10000) i");
  const last = await pg.switchWal();
  await waitFor(
    async () => (await pg.sql("SELECT last_archived_wal FROM pg_stat_archiver")) >= last,
    { timeoutMs: 60_000, message: `${last} was not archived` },
  );
  const stanza = join(repo, "archive", "demo");
  const pushed = (await walk(stanza)).filter((f) => /\/[0-9A-F]{24}-[0-9a-f]{40}\.lz4$/.test(f));
  assert.ok(pushed.length > 0, "no segment pushed");
  const expected =
    /archived WAL file ".*\/[0-9A-F]{24}-[0-9a-f]{40}\.lz4": encrypted \(OpenSSL "Salted__" format, as pgBackRest's repo cipher writes it\); walrelay does not decrypt archives/;
  assert.match(await serveRefuses(stanza), expected);
  const inspect = await runWalrelay(["inspect", stanza]);
  assert.notEqual(inspect.code, 0, inspect.stdout);
  assert.match(inspect.stderr + inspect.stdout, expected);
});
