/**
 * Integration-test harness: real PostgreSQL 15 servers, standbys, client programs and the
 * walrelay CLI, each in its own temporary directory on loopback ports chosen at run time.
 *
 * Everything returned here is `AsyncDisposable`, so a test written with `await using` stops its
 * servers, kills its processes and removes its directories even when an assertion fails:
 *
 * ```ts
 * await using pg = await startPrimary({ walSegSize: 1 });
 * await pg.sql("CREATE TABLE t (x int)");
 * await using relay = await startRelay({ walDir: pg.walDir });
 * ```
 *
 * When the tests run as root, servers (and `initdb`, `pg_ctl`, `pg_basebackup` into their data
 * directories) run as the `postgres` user, which PostgreSQL requires; client programs run as the
 * current user. Missing PostgreSQL binaries make tests fail with the command that installs them.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const decoder = new TextDecoder();

/** The repository root (this file lives in `tests/`). */
export const REPO_ROOT: string = dirname(dirname(fileURLToPath(import.meta.url)));

// ---------------------------------------------------------------------------------------------
// Processes

/** Options for {@linkcode run} and {@linkcode spawnBackground}. */
export interface RunOptions {
  /** Run as the `postgres` user when the tests run as root (no effect otherwise). */
  asPostgres?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Kill the process (SIGKILL) after this many milliseconds; {@linkcode run} then throws. */
  timeoutMs?: number;
  /** Text written to the process's standard input (closed afterwards). */
  stdin?: string;
}

/** What a finished command produced. */
export interface RunResult {
  /** Exit code (128 + signal number when killed by a signal, as a shell reports it). */
  code: number;
  /** Whether the exit code was 0. */
  success: boolean;
  /** Standard output, decoded as UTF-8. */
  stdout: string;
  /** Standard error, decoded as UTF-8. */
  stderr: string;
}

/** Whether this process runs as root, so servers must run as `postgres`. */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

interface PostgresUser {
  uid: number;
  gid: number;
  home: string;
}

let postgresUser: Promise<PostgresUser> | undefined;

/** The `postgres` account from the password database (looked up once). */
function lookupPostgresUser(): Promise<PostgresUser> {
  postgresUser ??= (async () => {
    const out = await new Deno.Command("getent", { args: ["passwd", "postgres"] }).output();
    const fields = decoder.decode(out.stdout).trim().split(":");
    if (!out.success || fields.length < 6) {
      throw new Error(
        "no `postgres` user: install PostgreSQL with `apt-get install -y postgresql-15`",
      );
    }
    return { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? "/" };
  })();
  return postgresUser;
}

/**
 * Runs a command to completion and returns its exit code and output; never throws for a non-zero
 * exit (see {@linkcode runOk}), only when the program cannot be started or times out.
 */
export async function run(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
  const asPostgres = opts.asPostgres === true && isRoot();
  const argv = asPostgres ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd;
  const [program, ...args] = argv;
  if (program === undefined) throw new Error("run: empty command");
  // postgres may not be allowed into the test's working directory (a clone under /root).
  const cwd = opts.cwd ?? (asPostgres ? "/" : undefined);
  const command = new Deno.Command(program, {
    args,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(cwd === undefined ? {} : { cwd }),
    ...(opts.env === undefined ? {} : { env: opts.env }),
  });
  const child = command.spawn();
  let timedOut = false;
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs);
  try {
    if (opts.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(opts.stdin));
      await writer.close();
    }
    const out = await child.output();
    const result = {
      code: out.code,
      success: out.success,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
    if (timedOut) {
      throw new Error(
        `timed out after ${opts.timeoutMs} ms: ${cmd.join(" ")}\n${result.stdout}${result.stderr}`,
      );
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** Like {@linkcode run}, but throws (with the command's output) unless it exits with 0. */
export async function runOk(cmd: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, opts);
  if (!r.success) {
    throw new Error(
      `command failed with exit code ${r.code}: ${cmd.join(" ")}\n${r.stdout}${r.stderr}`,
    );
  }
  return r.stdout;
}

/** A process running in the background; output is collected as it arrives. */
export interface BackgroundProcess extends AsyncDisposable {
  /** Process id (of the program itself, also when run as `postgres`). */
  readonly pid: number;
  /** Resolves when the process exits. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Whether the process has exited. */
  readonly exited: boolean;
  /** Standard output so far. */
  stdout(): string;
  /** Standard error so far. */
  stderr(): string;
  /** Sends a signal; does nothing if the process has already exited. */
  kill(signal?: Deno.Signal): void;
  /**
   * Sends `signal` (default SIGTERM), waits up to `graceMs` (default 5000) for the exit, then
   * SIGKILLs. Returns the exit status.
   */
  stop(signal?: Deno.Signal, graceMs?: number): Promise<Deno.CommandStatus>;
}

/**
 * Starts a program in the background (for `pg_receivewal`, the relay, a `psql` that must stay
 * connected). Disposing it stops it: SIGTERM, then SIGKILL after 5 s.
 */
export async function spawnBackground(
  cmd: string[],
  opts: Omit<RunOptions, "timeoutMs"> = {},
): Promise<BackgroundProcess> {
  const [program, ...args] = cmd;
  if (program === undefined) throw new Error("spawnBackground: empty command");
  const options: Deno.CommandOptions = {
    args,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  };
  if (opts.cwd !== undefined) options.cwd = opts.cwd;
  let env = opts.env;
  if (opts.asPostgres && isRoot()) {
    options.cwd ??= "/";
    // setuid in the child rather than runuser: signals then reach the program itself.
    const pgUser = await lookupPostgresUser();
    options.uid = pgUser.uid;
    options.gid = pgUser.gid;
    env = { HOME: pgUser.home, USER: "postgres", LOGNAME: "postgres", ...env };
  }
  if (env !== undefined) options.env = env;
  const child = new Deno.Command(program, options).spawn();

  let out = "";
  let err = "";
  const collect = async (
    stream: ReadableStream<Uint8Array>,
    append: (s: string) => void,
  ): Promise<void> => {
    const textDecoder = new TextDecoder();
    for await (const chunk of stream) append(textDecoder.decode(chunk, { stream: true }));
    append(textDecoder.decode());
  };
  const readers = Promise.all([
    collect(child.stdout, (s) => out += s),
    collect(child.stderr, (s) => err += s),
  ]);
  if (opts.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(opts.stdin));
    await writer.close();
  }

  let exited = false;
  const status = child.status.then(async (s) => {
    exited = true;
    // A grandchild may hold the pipes open; do not wait for it forever.
    await settleWithin(readers, 2000);
    return s;
  });

  const kill = (signal: Deno.Signal = "SIGTERM"): void => {
    if (exited) return;
    try {
      child.kill(signal);
    } catch { /* exited in the meantime */ }
  };
  const stop = async (signal: Deno.Signal = "SIGTERM", graceMs = 5000) => {
    kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        kill("SIGKILL");
        resolve();
      }, graceMs);
    });
    try {
      await Promise.race([status, killed]);
      return await status;
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    pid: child.pid,
    status,
    get exited() {
      return exited;
    },
    stdout: () => out,
    stderr: () => err,
    kill,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
      await settleWithin(readers, 2000);
    },
  };
}

/** Waits for `p` to settle, but at most `ms` milliseconds; never rejects. */
async function settleWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([p.catch(() => {}), new Promise((r) => timer = setTimeout(r, ms))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` until it returns a value other than `undefined`/`false`, and returns that value;
 * throws `message` (plus the last error `check` threw, if any) after `timeoutMs`.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastError: unknown;
  while (true) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const why = lastError === undefined ? "" : `: ${String(lastError)}`;
      throw new Error(
        `${opts.message ?? "condition not met"} within ${opts.timeoutMs ?? 30_000} ms${why}`,
      );
    }
    await delay(opts.intervalMs ?? 100);
  }
}

// ---------------------------------------------------------------------------------------------
// Binaries, ports, directories

let binDir: Promise<string> | undefined;

async function isExecutable(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && ((info.mode ?? 0o755) & 0o111) !== 0;
  } catch {
    return false;
  }
}

async function majorVersion(dir: string): Promise<number | undefined> {
  try {
    const r = await run([join(dir, "postgres"), "--version"]);
    const m = /\(PostgreSQL\)\s+(\d+)/.exec(r.stdout);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The directory holding PostgreSQL's programs: `$PG_BINDIR` if set, else `pg_config --bindir` when
 * it is PostgreSQL 15, else `/usr/lib/postgresql/15/bin`, else the newest
 * `/usr/lib/postgresql/N/bin`. Throws, saying how to install PostgreSQL 15, when none exists.
 */
export function pgBinDir(): Promise<string> {
  binDir ??= (async () => {
    const env = Deno.env.get("PG_BINDIR");
    if (env) {
      if (await isExecutable(join(env, "postgres"))) return env;
      throw new Error(
        `PG_BINDIR=${env} holds no postgres executable; unset it, or install PostgreSQL 15 ` +
          "with: apt-get install -y postgresql-15",
      );
    }
    let fromConfig: string | undefined;
    try {
      const r = await run(["pg_config", "--bindir"]);
      if (r.success) fromConfig = r.stdout.trim();
    } catch { /* no pg_config on PATH */ }
    if (fromConfig && await majorVersion(fromConfig) === 15) return fromConfig;
    const candidates = ["/usr/lib/postgresql/15/bin"];
    if (fromConfig) candidates.push(fromConfig);
    try {
      const majors: number[] = [];
      for await (const e of Deno.readDir("/usr/lib/postgresql")) {
        if (/^\d+$/.test(e.name)) majors.push(Number(e.name));
      }
      majors.sort((a, b) => b - a);
      candidates.push(...majors.map((m) => `/usr/lib/postgresql/${m}/bin`));
    } catch { /* no Debian layout */ }
    for (const dir of candidates) {
      if (await isExecutable(join(dir, "postgres")) && await isExecutable(join(dir, "initdb"))) {
        return dir;
      }
    }
    throw new Error(
      "PostgreSQL server binaries not found (tried pg_config --bindir, " +
        "/usr/lib/postgresql/15/bin, /usr/lib/postgresql/*/bin). " +
        "Install them with: apt-get install -y postgresql-15",
    );
  })();
  // A failed lookup is retried by the next caller rather than cached.
  binDir.catch(() => binDir = undefined);
  return binDir;
}

/** Full path of a PostgreSQL program (`psql`, `pg_receivewal`, …). */
export async function pgBin(name: string): Promise<string> {
  return join(await pgBinDir(), name);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return Promise.resolve(port);
}

/** A temporary directory; disposing it removes it with everything inside. */
export interface TempDir extends AsyncDisposable {
  /** Absolute path. */
  readonly path: string;
  /** Removes the directory (again harmless). */
  remove(): Promise<void>;
}

/**
 * Creates a temporary directory, owned by `postgres` when running as root so servers can create
 * data directories and sockets in it.
 */
export async function tempDir(prefix = "walrelay-test-"): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix });
  if (isRoot()) {
    const u = await lookupPostgresUser();
    await Deno.chown(path, u.uid, u.gid);
  }
  const remove = async (): Promise<void> => {
    await Deno.remove(path, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  };
  return { path, remove, [Symbol.asyncDispose]: remove };
}

// ---------------------------------------------------------------------------------------------
// Servers

/** A PostgreSQL server (primary or standby) started by this harness. */
export class PgCluster implements AsyncDisposable {
  /** Always 127.0.0.1: servers listen on loopback only. */
  readonly host = "127.0.0.1";
  /** Superuser; authentication is `trust` unless `hba` says otherwise. */
  readonly user = "postgres";
  #running = true;

  /** @internal Use {@linkcode startPrimary} or {@linkcode startStandby}. */
  constructor(
    /** TCP port on 127.0.0.1. */
    readonly port: number,
    /** The data directory (owned by `postgres`). */
    readonly dataDir: string,
    /** Directory of the Unix socket and the server log; removed on dispose. */
    readonly runDir: TempDir,
    /** Where `archive_command` copies segments, when archiving was asked for. */
    readonly archiveDir: string | undefined,
    /** PostgreSQL's program directory. */
    readonly binDir: string,
  ) {}

  /** `pg_wal` of the data directory. */
  get walDir(): string {
    return join(this.dataDir, "pg_wal");
  }

  /** The server log file. */
  get logFile(): string {
    return join(this.runDir.path, "server.log");
  }

  /** Whether the server is (believed to be) running. */
  get running(): boolean {
    return this.#running;
  }

  /** A libpq key/value connection string for this server, with optional extra keywords. */
  conninfo(extra: Record<string, string | number> = {}): string {
    const kv: Record<string, string | number> = {
      host: this.host,
      port: this.port,
      user: this.user,
      dbname: "postgres",
      ...extra,
    };
    return Object.entries(kv).map(([k, v]) => `${k}=${quoteConninfo(String(v))}`).join(" ");
  }

  /**
   * Runs SQL with `psql -X -A -t` over TCP and returns its output without the trailing newline
   * (one row per line, columns separated by `|`). Throws on any error.
   */
  sql(query: string, opts: { dbname?: string; user?: string } = {}): Promise<string> {
    return this.#psql(
      this.conninfo({ dbname: opts.dbname ?? "postgres", user: opts.user ?? this.user }),
      query,
    );
  }

  /** Runs a replication command (`IDENTIFY_SYSTEM`, …) through `psql "replication=true"`. */
  replSql(command: string, opts: { user?: string } = {}): Promise<string> {
    return this.#psql(
      this.conninfo({ replication: "true", user: opts.user ?? this.user }),
      command,
    );
  }

  async #psql(conninfo: string, query: string): Promise<string> {
    const out = await runOk(
      [
        join(this.binDir, "psql"),
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
        "-c",
        query,
      ],
      { timeoutMs: 120_000 },
    );
    return out.replace(/\n$/, "");
  }

  /** The current WAL insert position (primary) as `X/X` text. */
  currentLsn(): Promise<string> {
    return this.sql("SELECT pg_current_wal_lsn()");
  }

  /** Forces a switch to a new segment; returns the name of the segment it completed. */
  switchWal(): Promise<string> {
    return this.sql("SELECT pg_walfile_name(pg_switch_wal())");
  }

  /** Runs `pgbench` against the `postgres` database (e.g. `["-i", "-s", "1"]`); returns stdout. */
  pgbench(args: string[]): Promise<string> {
    return runOk(
      [
        join(this.binDir, "pgbench"),
        "-h",
        this.host,
        "-p",
        String(this.port),
        "-U",
        this.user,
        ...args,
        "postgres",
      ],
      { timeoutMs: 300_000 },
    );
  }

  /** `pg_controldata` as a map of its labels to values. */
  async controlData(): Promise<Record<string, string>> {
    const out = await runOk([join(this.binDir, "pg_controldata"), "-D", this.dataDir], {
      asPostgres: true,
    });
    const map: Record<string, string> = {};
    for (const line of out.split("\n")) {
      const i = line.indexOf(":");
      if (i > 0) map[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    return map;
  }

  /** The server log so far. */
  async log(): Promise<string> {
    try {
      return await Deno.readTextFile(this.logFile);
    } catch {
      return "";
    }
  }

  /** Promotes a standby and waits until it accepts writes. */
  async promote(): Promise<void> {
    await runOk([join(this.binDir, "pg_ctl"), "-D", this.dataDir, "-w", "-t", "60", "promote"], {
      asPostgres: true,
      timeoutMs: 90_000,
    });
  }

  /** Waits until a standby has replayed WAL up to `lsn` (`X/X`); throws after `timeoutMs`. */
  async waitForReplay(lsn: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      async () => (await this.sql(`SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn`)) === "t",
      {
        timeoutMs,
        message: `standby on port ${this.port} did not replay up to ${lsn}`,
      },
    ).catch(async (e) => {
      throw new Error(`${(e as Error).message}\n--- standby log ---\n${await this.log()}`);
    });
  }

  /** Stops the server with `pg_ctl stop -m mode` (default `fast`); harmless when stopped. */
  async stop(mode: "smart" | "fast" | "immediate" = "fast"): Promise<void> {
    if (!this.#running) return;
    const r = await run(
      [join(this.binDir, "pg_ctl"), "-D", this.dataDir, "-m", mode, "-w", "-t", "60", "stop"],
      { asPostgres: true, timeoutMs: 90_000 },
    );
    if (!r.success && await exists(join(this.dataDir, "postmaster.pid"))) {
      throw new Error(`pg_ctl stop failed:\n${r.stdout}${r.stderr}`);
    }
    this.#running = false;
  }

  /** Starts a stopped server again (same port and settings). */
  async start(): Promise<void> {
    if (this.#running) return;
    await pgCtlStart(this.binDir, this.dataDir, this.logFile, 60);
    this.#running = true;
  }

  /**
   * Stops the server at once and removes its run directory (a primary's data directory lives
   * there; a standby's belongs to its {@linkcode BaseBackup}).
   */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.stop("immediate");
    } catch { /* removing the directory matters more */ }
    await this.runDir.remove();
  }
}

/** Quotes a conninfo value when needed (libpq's single-quote syntax). */
function quoteConninfo(v: string): string {
  return /^[^\s'\\]+$/.test(v) ? v : `'${v.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A postgresql.conf value: numbers bare, everything else single-quoted. */
function confValue(v: string | number): string {
  return typeof v === "number" ? String(v) : `'${v.replaceAll("'", "''")}'`;
}

function confLines(conf: Record<string, string | number>): string {
  return Object.entries(conf).map(([k, v]) => `${k} = ${confValue(v)}\n`).join("");
}

async function appendAsPostgres(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { append: true });
  if (isRoot()) {
    const u = await lookupPostgresUser();
    await Deno.chown(path, u.uid, u.gid);
  }
}

async function pgCtlStart(
  bin: string,
  dataDir: string,
  logFile: string,
  timeoutSec: number,
  wait = true,
): Promise<void> {
  const r = await run(
    [
      join(bin, "pg_ctl"),
      "-D",
      dataDir,
      "-l",
      logFile,
      wait ? "-w" : "-W",
      "-t",
      String(timeoutSec),
      "start",
    ],
    { asPostgres: true, timeoutMs: (timeoutSec + 30) * 1000 },
  );
  if (!r.success) {
    let log = "";
    try {
      log = await Deno.readTextFile(logFile);
    } catch { /* no log yet */ }
    throw new Error(`pg_ctl start failed:\n${r.stdout}${r.stderr}\n--- server log ---\n${log}`);
  }
}

/** Options for {@linkcode startPrimary}. */
export interface PrimaryOptions {
  /** `initdb --wal-segsize` in MB (default 16; tests usually want 1). */
  walSegSize?: number;
  /** Extra `postgresql.conf` settings (they override the harness's defaults). */
  conf?: Record<string, string | number>;
  /** `pg_hba.conf` lines replacing the default (trust for everything from loopback). */
  hba?: string[];
  /** `archive_mode = on` with an `archive_command` copying into {@linkcode PgCluster.archiveDir}. */
  archive?: boolean;
  /** Extra `initdb` arguments. */
  initdbArgs?: string[];
  /** `pg_resetwal` arguments run on the new cluster before it starts (`-e 7`: XID epoch 7). */
  resetwalArgs?: string[];
}

const DEFAULT_HBA = [
  "local all all trust",
  "local replication all trust",
  "host all all 127.0.0.1/32 trust",
  "host replication all 127.0.0.1/32 trust",
];

/**
 * initdb's and starts a primary on a free loopback port, `wal_level = replica`, trust
 * authentication, its log in its run directory. Dispose it to stop it and remove everything.
 */
export async function startPrimary(opts: PrimaryOptions = {}): Promise<PgCluster> {
  const bin = await pgBinDir();
  const dir = await tempDir("walrelay-pg-");
  try {
    const dataDir = join(dir.path, "data");
    const archiveDir = opts.archive ? join(dir.path, "archive") : undefined;
    await runOk(
      [
        join(bin, "initdb"),
        "-D",
        dataDir,
        "--auth=trust",
        "--username=postgres",
        "--locale=C",
        "--encoding=UTF8",
        "--no-sync",
        "--no-instructions",
        `--wal-segsize=${opts.walSegSize ?? 16}`,
        ...(opts.initdbArgs ?? []),
      ],
      { asPostgres: true, timeoutMs: 120_000 },
    );
    if (opts.resetwalArgs) {
      await runOk([join(bin, "pg_resetwal"), ...opts.resetwalArgs, dataDir], { asPostgres: true });
    }
    if (archiveDir) await runOk(["mkdir", archiveDir], { asPostgres: true });
    const port = await freePort();
    const conf: Record<string, string | number> = {
      listen_addresses: "127.0.0.1",
      port,
      unix_socket_directories: dir.path,
      wal_level: "replica",
      max_wal_senders: 10,
      max_replication_slots: 10,
      max_connections: 40,
      shared_buffers: "32MB",
      // Tests compare pg_wal with what clients received: keep recent segments around.
      wal_keep_size: "128MB",
      log_replication_commands: "on",
      log_line_prefix: "%m [%p] %q%a ",
      ...(archiveDir
        ? {
          archive_mode: "on",
          archive_command: `test ! -f ${archiveDir}/%f && cp %p ${archiveDir}/%f`,
        }
        : {}),
      ...opts.conf,
    };
    await appendAsPostgres(
      join(dataDir, "postgresql.conf"),
      `\n# walrelay test harness\n${confLines(conf)}`,
    );
    await Deno.writeTextFile(
      join(dataDir, "pg_hba.conf"),
      (opts.hba ?? DEFAULT_HBA).join("\n") + "\n",
    );
    const logFile = join(dir.path, "server.log");
    await pgCtlStart(bin, dataDir, logFile, 60);
    return new PgCluster(Number(conf.port), dataDir, dir, archiveDir, bin);
  } catch (e) {
    // A half-started server must not outlive the failed test.
    await run([join(bin, "pg_ctl"), "-D", join(dir.path, "data"), "-m", "immediate", "stop"], {
      asPostgres: true,
      timeoutMs: 30_000,
    }).catch(() => {});
    await dir.remove();
    throw e;
  }
}

/** A base backup's data directory; disposing it removes it. */
export interface BaseBackup extends AsyncDisposable {
  /** The data directory, owned by `postgres`, ready for {@linkcode startStandby}. */
  readonly dataDir: string;
}

/**
 * Takes a base backup of `from` with `pg_basebackup -X stream -c fast` (as `postgres`), into a new
 * temporary directory. Pass `host`/`port` to take it through something else (a relay cannot serve
 * BASE_BACKUP, so usually not).
 */
export async function basebackup(
  from: PgCluster,
  opts: { args?: string[] } = {},
): Promise<BaseBackup> {
  const dir = await tempDir("walrelay-bb-");
  const dataDir = join(dir.path, "data");
  try {
    await runOk(
      [
        join(from.binDir, "pg_basebackup"),
        "-d",
        from.conninfo(),
        "-D",
        dataDir,
        "-X",
        "stream",
        "-c",
        "fast",
        "--no-sync",
        ...(opts.args ?? []),
      ],
      { asPostgres: true, timeoutMs: 180_000 },
    );
  } catch (e) {
    await dir.remove();
    throw e;
  }
  return { dataDir, [Symbol.asyncDispose]: dir.remove };
}

/** Options for {@linkcode startStandby}. */
export interface StandbyOptions {
  /** A data directory from {@linkcode basebackup} (not removed by the standby). */
  dataDir: string;
  /** Where to stream from: a libpq conninfo (the primary's or a relay's). */
  primaryConninfo: string;
  /** Extra `postgresql.conf` settings. */
  conf?: Record<string, string | number>;
  /**
   * Wait until the standby accepts read-only connections (default true). That needs WAL up to
   * the backup's end, so a standby fed by a broken relay fails here after `timeoutSec`.
   */
  wait?: boolean;
  /** `pg_ctl -t` for the start (default 60). */
  timeoutSec?: number;
}

/**
 * Starts a hot standby on `dataDir` (`standby.signal`, `primary_conninfo`, `hot_standby = on`) on a
 * free loopback port. Disposing it stops it and removes its run directory; the data directory
 * belongs to the {@linkcode BaseBackup}.
 */
export async function startStandby(opts: StandbyOptions): Promise<PgCluster> {
  const bin = await pgBinDir();
  const dir = await tempDir("walrelay-standby-");
  try {
    const port = await freePort();
    const conf: Record<string, string | number> = {
      port,
      listen_addresses: "127.0.0.1",
      unix_socket_directories: dir.path,
      hot_standby: "on",
      primary_conninfo: opts.primaryConninfo,
      // The primary's archive belongs to the primary.
      archive_mode: "off",
      wal_receiver_status_interval: "1s",
      ...opts.conf,
    };
    await appendAsPostgres(
      join(opts.dataDir, "postgresql.conf"),
      `\n# walrelay test harness: standby\n${confLines(conf)}`,
    );
    await appendAsPostgres(join(opts.dataDir, "standby.signal"), "");
    const logFile = join(dir.path, "server.log");
    await pgCtlStart(bin, opts.dataDir, logFile, opts.timeoutSec ?? 60, opts.wait ?? true);
    return new PgCluster(port, opts.dataDir, dir, undefined, bin);
  } catch (e) {
    await run([join(bin, "pg_ctl"), "-D", opts.dataDir, "-m", "immediate", "stop"], {
      asPostgres: true,
      timeoutMs: 30_000,
    }).catch(() => {});
    await dir.remove();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// The relay

/** Options for {@linkcode startRelay}. */
export interface RelayOptions {
  /** `--wal-dir`. */
  walDir: string;
  /** More CLI arguments after `serve --wal-dir DIR --listen 127.0.0.1:PORT`. */
  args?: string[];
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** How long to wait for the relay to accept connections (default 20000 ms). */
  timeoutMs?: number;
  /** The entry point to run (default: this repository's `cli.ts`). */
  cli?: string;
}

/** A running `walrelay serve`. Disposing it sends SIGTERM, then SIGKILL after 5 s. */
export interface RelayProcess extends BackgroundProcess {
  /** The port it listens on (127.0.0.1). */
  readonly port: number;
  /** A conninfo for clients of the relay (`replication=true` is up to the caller). */
  conninfo(extra?: Record<string, string | number>): string;
}

/** SSLRequest: every PostgreSQL server answers it with one byte before anything else. */
const SSL_REQUEST = new Uint8Array([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/**
 * Whether something answering like a PostgreSQL server listens on the port: it must accept the
 * connection and reply to an SSLRequest (any byte, or a close). A bare TCP accept is not enough,
 * since another program could hold the port.
 */
async function answersSslRequest(port: number, timeoutMs: number): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return false;
  }
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    await conn.write(SSL_REQUEST);
    const buf = new Uint8Array(1);
    const n = await conn.read(buf);
    return n === 1 || n === null;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/**
 * Starts `deno run -A cli.ts serve --wal-dir DIR --listen 127.0.0.1:PORT …args` from this
 * repository and waits until it answers on the port. Throws with the relay's stderr if it exits
 * first or does not answer within the timeout.
 */
export async function startRelay(opts: RelayOptions): Promise<RelayProcess> {
  const port = opts.port ?? await freePort();
  const proc = await spawnBackground(
    [
      Deno.execPath(),
      "run",
      "-A",
      opts.cli ?? join(REPO_ROOT, "cli.ts"),
      "serve",
      "--wal-dir",
      opts.walDir,
      "--listen",
      `127.0.0.1:${port}`,
      ...(opts.args ?? []),
    ],
    { cwd: REPO_ROOT, env: { NO_COLOR: "1", ...opts.env } },
  );
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  try {
    while (true) {
      if (proc.exited) {
        const s = await proc.status;
        throw new Error(
          `walrelay exited with code ${s.code} before accepting connections on port ${port}\n` +
            `--- stderr ---\n${proc.stderr()}\n--- stdout ---\n${proc.stdout()}`,
        );
      }
      if (await answersSslRequest(port, 1000) && !proc.exited) break;
      if (Date.now() >= deadline) {
        throw new Error(
          `walrelay did not accept connections on port ${port} within ${timeoutMs} ms\n` +
            `--- stderr ---\n${proc.stderr()}\n--- stdout ---\n${proc.stdout()}`,
        );
      }
      await delay(100);
    }
  } catch (e) {
    await proc[Symbol.asyncDispose]();
    throw e;
  }
  return Object.assign(proc, {
    port,
    conninfo(extra: Record<string, string | number> = {}): string {
      const kv = { host: "127.0.0.1", port, user: "postgres", ...extra };
      return Object.entries(kv).map(([k, v]) => `${k}=${quoteConninfo(String(v))}`).join(" ");
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Comparing WAL

/** Whether a file name is a complete WAL segment's (24 upper-case hex digits). */
export function isSegmentName(name: string): boolean {
  return /^[0-9A-F]{24}$/.test(name);
}

/** Offset of the first byte where `a` and `b` differ, or -1 when they are identical. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** Whether two files hold the same bytes. */
export async function filesEqual(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return firstDifference(x, y) === -1;
}

/** How two directories differ, file name by file name. */
export interface DirComparison {
  /** Names in both with identical bytes. */
  same: string[];
  /** Names in both whose bytes differ, with where. */
  differ: { name: string; offset: number; sizeA: number; sizeB: number }[];
  /** Names only in the first directory. */
  onlyInA: string[];
  /** Names only in the second directory. */
  onlyInB: string[];
}

/**
 * Compares the regular files of two directories byte for byte (by default only complete segment
 * names; pass `filter` to choose others, e.g. `() => true`).
 */
export async function compareDirs(
  a: string,
  b: string,
  filter: (name: string) => boolean = isSegmentName,
): Promise<DirComparison> {
  const list = async (dir: string): Promise<Set<string>> => {
    const names = new Set<string>();
    for await (const e of Deno.readDir(dir)) if (e.isFile && filter(e.name)) names.add(e.name);
    return names;
  };
  const [na, nb] = await Promise.all([list(a), list(b)]);
  const result: DirComparison = { same: [], differ: [], onlyInA: [], onlyInB: [] };
  for (const name of [...na].sort()) {
    if (!nb.has(name)) {
      result.onlyInA.push(name);
      continue;
    }
    const [x, y] = await Promise.all([Deno.readFile(join(a, name)), Deno.readFile(join(b, name))]);
    const offset = firstDifference(x, y);
    if (offset === -1) result.same.push(name);
    else result.differ.push({ name, offset, sizeA: x.length, sizeB: y.length });
  }
  result.onlyInB = [...nb].filter((n) => !na.has(n)).sort();
  return result;
}

/**
 * Throws, listing every difference, unless each complete segment in `received` exists in
 * `origin` with identical bytes; returns the names compared. (`origin` may hold more: older and
 * pre-allocated segments.)
 */
export async function assertSegmentsMatch(received: string, origin: string): Promise<string[]> {
  const c = await compareDirs(received, origin);
  const problems = [
    ...c.onlyInA.map((n) => `${n}: missing from ${origin}`),
    ...c.differ.map((d) =>
      `${d.name}: differs at offset ${d.offset} (sizes ${d.sizeA} and ${d.sizeB})`
    ),
  ];
  if (problems.length > 0) {
    throw new Error(`segments in ${received} do not match ${origin}:\n${problems.join("\n")}`);
  }
  return c.same;
}
