/**
 * A throwaway PostgreSQL 15 cluster for tests: initdb in a temporary directory (as `postgres`
 * when running as root), listening on a free loopback port and a socket in that directory.
 *
 * @module
 */

const BIN = "/usr/lib/postgresql/15/bin";

async function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const asRoot = Deno.uid() === 0;
  const out = await new Deno.Command(asRoot ? "runuser" : cmd, {
    args: asRoot ? ["-u", "postgres", "--", cmd, ...args] : args,
    env: { PGCLIENTENCODING: "UTF8", LC_ALL: "C.UTF-8", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A running cluster; call `stop()` in a finally block. */
export interface TestCluster {
  /** The data directory. */
  dataDir: string;
  /** Runs one SQL statement through psql (unaligned, tuples only) and returns its output. */
  sql(query: string): Promise<string>;
  /** Stops the server and deletes the directory. */
  stop(): Promise<void>;
}

/**
 * Whether this test run may start a cluster (`deno test -A`). Without run/read/write/net/env
 * permissions (e.g. a bare `deno test --doc`), the cluster tests are reported as ignored.
 */
export function clusterPermitted(): boolean {
  const names = ["run", "read", "write", "net", "env", "sys"] as const;
  return names.every((name) => Deno.permissions.querySync({ name }).state === "granted");
}

/** Starts a cluster, or throws telling how to install PostgreSQL 15. */
export async function startCluster(): Promise<TestCluster> {
  try {
    await Deno.stat(`${BIN}/initdb`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Error(
      `PostgreSQL 15 binaries not found in ${BIN}: apt-get install -y postgresql-15`,
    );
  }
  const root = await Deno.makeTempDir({ prefix: "walrelay-auth-" });
  const dataDir = `${root}/data`;
  if (Deno.uid() === 0) {
    const uid = Number((await new Deno.Command("id", { args: ["-u", "postgres"] }).output()).stdout
      .reduce((s, b) => s + String.fromCharCode(b), ""));
    const gid = Number((await new Deno.Command("id", { args: ["-g", "postgres"] }).output()).stdout
      .reduce((s, b) => s + String.fromCharCode(b), ""));
    await Deno.chown(root, uid, gid);
  }
  const port = freePort();
  let started = false;
  const stop = async (): Promise<void> => {
    if (started) {
      await run(`${BIN}/pg_ctl`, ["-D", dataDir, "-m", "immediate", "-w", "stop"]).catch(() => {});
    }
    await Deno.remove(root, { recursive: true }).catch(() => {});
  };
  try {
    await run(`${BIN}/initdb`, [
      "-D",
      dataDir,
      "-E",
      "UTF8",
      "--locale=C",
      "--auth=trust",
      "-U",
      "postgres",
    ]);
    await Deno.writeTextFile(
      `${dataDir}/postgresql.conf`,
      `listen_addresses = '127.0.0.1'\nport = ${port}\nunix_socket_directories = '${root}'\n` +
        `password_encryption = 'scram-sha-256'\n`,
      { append: true },
    );
    started = true;
    await run(`${BIN}/pg_ctl`, ["-D", dataDir, "-l", `${root}/log`, "-w", "start"]);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    dataDir,
    sql: (query) =>
      run(`${BIN}/psql`, [
        "-X",
        "-h",
        root,
        "-p",
        String(port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-Atc",
        query,
      ]),
    stop,
  };
}
