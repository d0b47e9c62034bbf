/**
 * A throwaway PostgreSQL 15 cluster for tests that need real WAL, and a runner for its tools.
 * Private to `lib/wal/` tests; the full integration harness lives in `tests/`.
 *
 * @module
 */

const INSTALL_HINT = "PostgreSQL 15 binaries not found: apt-get install postgresql-15";

/** Output of a finished program. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The directory of PostgreSQL 15's programs. Throws (so the test fails, never skips) when they
 * are not installed.
 */
export function pgBinDir(): string {
  const env = Deno.env.get("PG_BINDIR");
  for (const dir of [env, "/usr/lib/postgresql/15/bin"]) {
    if (dir === undefined) continue;
    try {
      if (Deno.statSync(`${dir}/pg_waldump`).isFile) return dir;
    } catch {
      // try the next candidate
    }
  }
  throw new Error(INSTALL_HINT);
}

function asRoot(): boolean {
  return Deno.uid() === 0;
}

/**
 * Runs a PostgreSQL program from {@linkcode pgBinDir}; as root, server-side programs must run as
 * `postgres`, so `asPostgres` wraps them in `runuser`.
 */
export async function runPg(
  program: string,
  args: string[],
  opts: { asPostgres?: boolean; check?: boolean } = {},
): Promise<RunResult> {
  const path = `${pgBinDir()}/${program}`;
  const [cmd, cmdArgs] = opts.asPostgres && asRoot()
    ? ["runuser", ["-u", "postgres", "--", path, ...args]]
    : [path, args];
  const out = await new Deno.Command(cmd, { args: cmdArgs, stdin: "null" }).output();
  const result = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if ((opts.check ?? true) && out.code !== 0) {
    throw new Error(`${program} ${args.join(" ")} failed (${out.code}): ${result.stderr}`);
  }
  return result;
}

async function freePort(): Promise<number> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return await Promise.resolve(port);
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const id = async (flag: string): Promise<number> => {
    const out = await new Deno.Command("id", { args: [flag, "postgres"] }).output();
    if (out.code !== 0) throw new Error("user postgres not found: " + INSTALL_HINT);
    return Number(new TextDecoder().decode(out.stdout).trim());
  };
  return { uid: await id("-u"), gid: await id("-g") };
}

/** A running throwaway cluster. */
export interface TestCluster {
  /** The temporary directory holding everything (data, socket, log). */
  dir: string;
  /** The data directory; WAL is in `${dataDir}/pg_wal`. */
  dataDir: string;
  /** The loopback port the server listens on. */
  port: number;
  /** Runs SQL through psql as the superuser; returns unaligned, tuples-only output. */
  psql(sql: string): Promise<string>;
  /** Runs pgbench against the cluster's `postgres` database. */
  pgbench(args: string[]): Promise<string>;
  /** Stops the server (fast shutdown); safe to call twice. */
  stop(): Promise<void>;
  /** Stops the server and removes the directory. */
  destroy(): Promise<void>;
}

/**
 * Creates and starts a cluster in a fresh temp dir: `initdb --wal-segsize` (MB), a free loopback
 * port, the socket in the temp dir. On failure everything is torn down before the error is thrown.
 */
export async function startTestCluster(
  opts: { walSegSizeMb?: number; settings?: Record<string, string> } = {},
): Promise<TestCluster> {
  pgBinDir();
  const dir = await Deno.makeTempDir({ prefix: "walrelay_pg_" });
  const dataDir = `${dir}/data`;
  let running = false;
  const stop = async (): Promise<void> => {
    if (!running) return;
    running = false;
    await runPg("pg_ctl", ["-D", dataDir, "-m", "fast", "-w", "stop"], {
      asPostgres: true,
      check: false,
    });
  };
  const destroy = async (): Promise<void> => {
    await stop();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    if (asRoot()) {
      const { uid, gid } = await postgresIds();
      await Deno.chown(dir, uid, gid);
    }
    await runPg("initdb", [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "--auth=trust",
      "--no-sync",
      `--wal-segsize=${opts.walSegSizeMb ?? 1}`,
    ], { asPostgres: true });
    const port = await freePort();
    const settings = {
      listen_addresses: "127.0.0.1",
      unix_socket_directories: dir,
      fsync: "off",
      ...opts.settings,
    };
    const o = [`-p ${port}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)];
    await runPg("pg_ctl", [
      "-D",
      dataDir,
      "-l",
      `${dir}/server.log`,
      "-w",
      "-o",
      o.join(" "),
      "start",
    ], { asPostgres: true });
    running = true;
    const conn = ["-h", dir, "-p", String(port), "-U", "postgres"];
    return {
      dir,
      dataDir,
      port,
      stop,
      destroy,
      psql: async (sql: string): Promise<string> =>
        (await runPg("psql", [
          ...conn,
          "-d",
          "postgres",
          "-X",
          "-q",
          "-At",
          "-v",
          "ON_ERROR_STOP=1",
          "-c",
          sql,
        ]))
          .stdout,
      pgbench: async (args: string[]): Promise<string> =>
        (await runPg("pgbench", [...conn, ...args, "postgres"])).stdout,
    };
  } catch (e) {
    await destroy().catch(() => {});
    throw e;
  }
}

/**
 * Runs `fn` with a fresh cluster and always tears it down (server stopped, directory removed),
 * even when `fn` throws.
 */
export async function withTestCluster<T>(
  fn: (cluster: TestCluster) => Promise<T>,
  opts: { walSegSizeMb?: number; settings?: Record<string, string> } = {},
): Promise<T> {
  const cluster = await startTestCluster(opts);
  try {
    return await fn(cluster);
  } finally {
    await cluster.destroy();
  }
}

/** Copies the cluster's WAL segment files into `dest`; returns their names, sorted. */
export async function copyWal(cluster: TestCluster, dest: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${cluster.dataDir}/pg_wal`)) {
    if (e.isFile && /^[0-9A-F]{24}$/.test(e.name)) names.push(e.name);
  }
  names.sort();
  for (const name of names) {
    await Deno.copyFile(`${cluster.dataDir}/pg_wal/${name}`, `${dest}/${name}`);
  }
  return names;
}
