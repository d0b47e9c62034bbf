/**
 * The one PostgreSQL test harness: real servers, standbys, client programs and the walrelay CLI,
 * each in its own temporary directory on loopback ports chosen at run time. Unit tests in `lib/`
 * that need real WAL or a real server use it too, and the sample WAL ({@linkcode TESTDATA}).
 *
 * Servers are PostgreSQL 15 (the host's) unless a test names another major: 17 and 18 run from the
 * Debian chroots that `../shared/tools/pg-versions.sh` builds, with their own client programs
 * ({@linkcode PgCluster.programs}). A major that is not set up fails the test with the command
 * that installs it; it never skips.
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
 * directories) run as the `postgres` user, which PostgreSQL requires; the host's client programs
 * run as the current user, a chroot major's as its `postgres`. Paths are the host's (`dataDir`,
 * `TempDir.path`); what a chroot major's programs see is `pgDataDir`, `TempDir.pgPath`.
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
   * Sends `signal` (default SIGTERM), waits up to `graceMs` (default 5000; 15000 for SIGINT,
   * which pg_receivewal may notice only after its 10 s status interval) for the exit, then
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
  // pg_receivewal checks for SIGINT between reads, then sleeps in select() for up to its status
  // interval (10 s): a signal landing in between is noticed only when that sleep ends.
  const stop = async (
    signal: Deno.Signal = "SIGTERM",
    graceMs = signal === "SIGINT" ? 15_000 : 5000,
  ) => {
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
  /** Absolute path, as the tests (on the host) see it. */
  readonly path: string;
  /**
   * The same directory as the programs of the major it was made for see it: inside their chroot
   * for a chroot major, else equal to {@linkcode TempDir.path}.
   */
  readonly pgPath: string;
  /** Removes the directory (again harmless). */
  remove(): Promise<void>;
}

/**
 * Creates a temporary directory, owned by `postgres` when running as root so servers can create
 * data directories and sockets in it. With `major`, it is made where that major's programs can
 * reach it (inside its chroot) and owned by that major's `postgres`.
 *
 * @example
 * ```ts
 * await using dir = await tempDir("walrelay-example-");
 * await Deno.writeTextFile(`${dir.path}/f`, "x");
 * ```
 */
export async function tempDir(
  prefix = "walrelay-test-",
  opts: { major?: number } = {},
): Promise<TempDir> {
  if (opts.major !== undefined) return await (await pgPrograms(opts.major)).tempDir(prefix);
  const path = await Deno.makeTempDir({ prefix });
  if (isRoot()) {
    const u = await lookupPostgresUser();
    await Deno.chown(path, u.uid, u.gid);
  }
  return removableDir(path, path);
}

function removableDir(path: string, pgPath: string): TempDir {
  const remove = async (): Promise<void> => {
    await Deno.remove(path, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  };
  return { path, pgPath, remove, [Symbol.asyncDispose]: remove };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL majors

/**
 * The major a test gets when it names none: the host's PostgreSQL 15 (Debian bookworm's), which
 * every existing test was written against.
 */
export const DEFAULT_MAJOR = 15;

/**
 * Debian suites that ship the majors bookworm lacks; `pg-versions.sh` builds a chroot of each under
 * `$WALRELAY_PG_ROOTS` (default `/opt/walrelay-pg`), named after the suite.
 */
const CHROOT_SUITES: Readonly<Record<number, string>> = { 17: "trixie", 18: "sid" };

/** The chroot builder, in the read-only `shared/` that CI places beside the clone. */
const PG_VERSIONS_SCRIPT = join(REPO_ROOT, "..", "shared", "tools", "pg-versions.sh");

/** The command that sets up a chroot major, as the failure message of a test names it. */
function installHint(major: number): string {
  return major === DEFAULT_MAJOR
    ? `apt-get install -y postgresql-${major}`
    : `bash ../shared/tools/pg-versions.sh ${major}`;
}

/**
 * One PostgreSQL major's programs (`postgres`, `initdb`, `pg_ctl`, `psql`, `pg_receivewal`,
 * `pg_basebackup`, `pgbench`, `pg_waldump`, …), on the host or in a Debian chroot, and the one way
 * to run them. A chroot major's programs see only paths inside the chroot and always run as its
 * `postgres` user; {@linkcode PgPrograms.pgPath} and {@linkcode PgPrograms.hostPath} translate.
 */
export interface PgPrograms {
  /** The major version (15, 17, 18, …). */
  readonly major: number;
  /** The chroot the programs run in, or `undefined` when they are the host's. */
  readonly root: string | undefined;
  /** The program directory as the programs see it (inside {@linkcode PgPrograms.root}). */
  readonly binDir: string;
  /** The command line that runs program `name` (through `chroot` for a chroot major). */
  command(name: string, args?: string[]): string[];
  /** Runs program `name` to completion, as {@linkcode run} does. */
  run(name: string, args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Runs program `name`, as {@linkcode runOk} does: throws unless it exits with 0. */
  runOk(name: string, args: string[], opts?: RunOptions): Promise<string>;
  /** Starts program `name` in the background, as {@linkcode spawnBackground} does. */
  spawn(
    name: string,
    args: string[],
    opts?: Omit<RunOptions, "timeoutMs">,
  ): Promise<BackgroundProcess>;
  /** The path the programs see for a host path; throws for one outside the chroot. */
  pgPath(hostPath: string): string;
  /** The host path of a path the programs see. */
  hostPath(pgPath: string): string;
  /** Gives a host path to this major's `postgres` user (when running as root). */
  chown(hostPath: string): Promise<void>;
  /** A temporary directory the programs can use, owned by this major's `postgres`. */
  tempDir(prefix?: string): Promise<TempDir>;
}

const programsCache = new Map<string, Promise<PgPrograms>>();

/**
 * The programs of PostgreSQL `major` (default {@linkcode DEFAULT_MAJOR}): the host's when it has
 * them (15 through {@linkcode pgBinDir}), else 17 and 18 from the Debian chroots that
 * `../shared/tools/pg-versions.sh` builds. Throws, naming the command that installs the major,
 * when it is not set up: a test asking for a major fails, it never skips.
 *
 * @example
 * ```ts
 * const pg = await pgPrograms();
 * const version = await pg.runOk("psql", ["--version"]);
 * ```
 */
export function pgPrograms(major: number = DEFAULT_MAJOR): Promise<PgPrograms> {
  // Keyed by where the chroots live too, so a test may point the harness elsewhere.
  const key = `${major} ${Deno.env.get("WALRELAY_PG_ROOTS") ?? ""}`;
  let found = programsCache.get(key);
  if (found === undefined) {
    found = findPrograms(major);
    programsCache.set(key, found);
    // A failed lookup is retried by the next caller rather than cached.
    found.catch(() => programsCache.delete(key));
  }
  return found;
}

async function findPrograms(major: number): Promise<PgPrograms> {
  if (major === DEFAULT_MAJOR) return hostPrograms(major, await pgBinDir());
  const hostDir = `/usr/lib/postgresql/${major}/bin`;
  if (await isExecutable(join(hostDir, "postgres"))) return hostPrograms(major, hostDir);
  const suite = CHROOT_SUITES[major];
  const hint = installHint(major);
  if (suite === undefined) {
    throw new Error(`PostgreSQL ${major} is not installed and no chroot is known for it (${hint})`);
  }
  let root = join(Deno.env.get("WALRELAY_PG_ROOTS") ?? "/opt/walrelay-pg", suite);
  let binDir = `/usr/lib/postgresql/${major}/bin`;
  if (!isRoot()) {
    throw new Error(`PostgreSQL ${major} runs in a chroot, which needs root (set up: ${hint})`);
  }
  if (!await isExecutable(join(root, binDir, "postgres"))) {
    throw new Error(
      `PostgreSQL ${major} is not set up (no ${root}${binDir}); install it with: ${hint}`,
    );
  }
  if (await isExecutable(PG_VERSIONS_SCRIPT)) {
    // Built already, so the script only mounts /proc, /dev and /dev/shm (lost at a reboot).
    const r = await run(["bash", PG_VERSIONS_SCRIPT, String(major)], { timeoutMs: 120_000 });
    const line = r.stdout.split("\n").find((l) => l.startsWith(`${major} `));
    const [, scriptRoot, scriptBin] = line?.split(" ") ?? [];
    if (!r.success || scriptRoot === undefined || scriptBin === undefined) {
      throw new Error(`PostgreSQL ${major}: ${hint} failed:\n${r.stdout}${r.stderr}`);
    }
    root = scriptRoot;
    binDir = scriptBin;
  } else if (!await exists(join(root, "proc", "self")) || !await exists(join(root, "dev", "shm"))) {
    throw new Error(
      `PostgreSQL ${major}: ${root} lacks /proc or /dev/shm; mount them with: ${hint}`,
    );
  }
  return chrootPrograms(major, root, binDir, await chrootPostgresUser(root, hint));
}

function hostPrograms(major: number, binDir: string): PgPrograms {
  const command = (name: string, args: string[] = []): string[] => [join(binDir, name), ...args];
  return {
    major,
    root: undefined,
    binDir,
    command,
    run: (name, args, opts) => run(command(name, args), opts),
    runOk: (name, args, opts) => runOk(command(name, args), opts),
    spawn: (name, args, opts) => spawnBackground(command(name, args), opts),
    pgPath: (hostPath) => hostPath,
    hostPath: (pgPath) => pgPath,
    async chown(hostPath) {
      if (!isRoot()) return;
      const u = await lookupPostgresUser();
      await Deno.chown(hostPath, u.uid, u.gid);
    },
    tempDir: (prefix) => tempDir(prefix),
  };
}

/** The `postgres` account of a chroot, from its own password database (its uid is not ours). */
async function chrootPostgresUser(root: string, hint: string): Promise<PostgresUser> {
  const passwd = await Deno.readTextFile(join(root, "etc", "passwd")).catch(() => "");
  const fields = passwd.split("\n").find((l) => l.startsWith("postgres:"))?.split(":") ?? [];
  if (fields.length < 6) throw new Error(`no postgres user in ${root}; set it up with: ${hint}`);
  return { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? "/" };
}

function chrootPrograms(
  major: number,
  root: string,
  binDir: string,
  user: PostgresUser,
): PgPrograms {
  // `chroot --userspec` execs the program itself (runuser would fork), so signals reach it.
  const command = (name: string, args: string[] = []): string[] => [
    "chroot",
    `--userspec=${user.uid}:${user.gid}`,
    root,
    join(binDir, name),
    ...args,
  ];
  const env = (extra: Record<string, string> | undefined): Record<string, string> => ({
    HOME: user.home,
    USER: "postgres",
    LOGNAME: "postgres",
    ...extra,
  });
  // Everything runs as the chroot's postgres already; runuser would pick the host's.
  const asIs = <T extends RunOptions>(opts: T | undefined): T =>
    ({ ...opts, asPostgres: false, env: env(opts?.env) }) as T;
  const pgPath = (hostPath: string): string => {
    if (hostPath === root) return "/";
    if (hostPath.startsWith(`${root}/`)) return hostPath.slice(root.length);
    throw new Error(`${hostPath} is outside ${root}, so PostgreSQL ${major} cannot see it`);
  };
  const chown = async (hostPath: string): Promise<void> => {
    await Deno.chown(hostPath, user.uid, user.gid);
  };
  return {
    major,
    root,
    binDir,
    command,
    run: (name, args, opts) => run(command(name, args), asIs(opts)),
    runOk: (name, args, opts) => runOk(command(name, args), asIs(opts)),
    spawn: (name, args, opts) => spawnBackground(command(name, args), asIs(opts)),
    pgPath,
    hostPath: (p) => join(root, p),
    chown,
    async tempDir(prefix = "walrelay-test-") {
      const path = await Deno.makeTempDir({ dir: join(root, "tmp"), prefix });
      await chown(path);
      return removableDir(path, pgPath(path));
    },
  };
}

/**
 * Runs program `name` of a PostgreSQL major (default {@linkcode DEFAULT_MAJOR}) to completion;
 * never throws for a non-zero exit.
 *
 * @example
 * ```ts
 * const r = await runPg("pg_waldump", ["--rmgr=list"]);
 * ```
 */
export async function runPg(
  name: string,
  args: string[],
  opts: RunOptions & { major?: number } = {},
): Promise<RunResult> {
  return await (await pgPrograms(opts.major)).run(name, args, opts);
}

/**
 * Like {@linkcode runPg}, but throws (with the program's output) unless it exits with 0; returns
 * its standard output.
 *
 * @example
 * ```ts
 * const rmgrs = (await runPgOk("pg_waldump", ["--rmgr=list"])).trim().split("\n");
 * ```
 */
export async function runPgOk(
  name: string,
  args: string[],
  opts: RunOptions & { major?: number } = {},
): Promise<string> {
  return await (await pgPrograms(opts.major)).runOk(name, args, opts);
}

/**
 * Whether this test run may start servers (`deno test -A`). Without run/read/write/net/env/sys
 * permissions (a bare `deno test --doc`), tests that need a cluster declare themselves ignored.
 *
 * @example
 * ```ts
 * const ignore = !clusterPermitted(); // for Deno.test({ name, ignore, fn })
 * ```
 */
export function clusterPermitted(): boolean {
  const names = ["run", "read", "write", "net", "env", "sys"] as const;
  return names.every((name) => Deno.permissions.querySync({ name }).state === "granted");
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
    /** The data directory (owned by `postgres`), as the host sees it. */
    readonly dataDir: string,
    /** Directory of the Unix socket and the server log; removed on dispose. */
    readonly runDir: TempDir,
    /** Where `archive_command` copies segments, when archiving was asked for. */
    readonly archiveDir: string | undefined,
    /** The programs of the server's major; its clients (`psql`, `pgbench`, …) are these too. */
    readonly programs: PgPrograms,
  ) {}

  /** The server's major version. */
  get major(): number {
    return this.programs.major;
  }

  /** The program directory, as the programs see it (inside the chroot of a chroot major). */
  get binDir(): string {
    return this.programs.binDir;
  }

  /** The data directory as the server's programs see it (inside the chroot of a chroot major). */
  get pgDataDir(): string {
    return this.programs.pgPath(this.dataDir);
  }

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
    const out = await this.programs.runOk(
      "psql",
      [
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
    return this.programs.runOk(
      "pgbench",
      [
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
    const out = await this.programs.runOk("pg_controldata", ["-D", this.pgDataDir], {
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
    await this.programs.runOk("pg_ctl", ["-D", this.pgDataDir, "-w", "-t", "60", "promote"], {
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
    const r = await this.programs.run(
      "pg_ctl",
      ["-D", this.pgDataDir, "-m", mode, "-w", "-t", "60", "stop"],
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
    await pgCtlStart(this.programs, this.dataDir, this.logFile, 60);
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

async function appendAsPostgres(programs: PgPrograms, path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { append: true });
  await programs.chown(path);
}

/** `pg_ctl start` on a data directory and log file given as host paths. */
async function pgCtlStart(
  programs: PgPrograms,
  dataDir: string,
  logFile: string,
  timeoutSec: number,
  wait = true,
): Promise<void> {
  const r = await programs.run(
    "pg_ctl",
    [
      "-D",
      programs.pgPath(dataDir),
      "-l",
      programs.pgPath(logFile),
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
  /**
   * The PostgreSQL major (default {@linkcode DEFAULT_MAJOR}, the host's 15); 17 and 18 run from
   * the chroots of `../shared/tools/pg-versions.sh`. A major that is not set up fails the test.
   */
  major?: number;
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
 *
 * @example
 * ```ts ignore
 * await using pg = await startPrimary({ major: 18, walSegSize: 1 });
 * await pg.sql("SHOW server_version_num"); // "180001" or later
 * ```
 */
export async function startPrimary(opts: PrimaryOptions = {}): Promise<PgCluster> {
  const programs = await pgPrograms(opts.major);
  const dir = await programs.tempDir("walrelay-pg-");
  const dataDir = join(dir.path, "data");
  try {
    const archiveDir = opts.archive ? join(dir.path, "archive") : undefined;
    await programs.runOk(
      "initdb",
      [
        "-D",
        programs.pgPath(dataDir),
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
      await programs.runOk("pg_resetwal", [...opts.resetwalArgs, programs.pgPath(dataDir)], {
        asPostgres: true,
      });
    }
    if (archiveDir) {
      await Deno.mkdir(archiveDir);
      await programs.chown(archiveDir);
    }
    const port = await freePort();
    const archiveTo = archiveDir === undefined ? "" : programs.pgPath(archiveDir);
    const conf: Record<string, string | number> = {
      listen_addresses: "127.0.0.1",
      port,
      unix_socket_directories: dir.pgPath,
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
          archive_command: `test ! -f ${archiveTo}/%f && cp %p ${archiveTo}/%f`,
        }
        : {}),
      ...opts.conf,
    };
    await appendAsPostgres(
      programs,
      join(dataDir, "postgresql.conf"),
      `\n# walrelay test harness\n${confLines(conf)}`,
    );
    await Deno.writeTextFile(
      join(dataDir, "pg_hba.conf"),
      (opts.hba ?? DEFAULT_HBA).join("\n") + "\n",
    );
    const logFile = join(dir.path, "server.log");
    await pgCtlStart(programs, dataDir, logFile, 60);
    return new PgCluster(Number(conf.port), dataDir, dir, archiveDir, programs);
  } catch (e) {
    // A half-started server must not outlive the failed test.
    await programs.run("pg_ctl", ["-D", programs.pgPath(dataDir), "-m", "immediate", "stop"], {
      asPostgres: true,
      timeoutMs: 30_000,
    }).catch(() => {});
    await dir.remove();
    throw e;
  }
}

/**
 * Runs `fn` with a new primary (see {@linkcode startPrimary}) and always disposes of it, even
 * when `fn` throws; returns what `fn` returned. For code that cannot hold an `await using`.
 *
 * @example
 * ```ts
 * const one = await withPrimary((pg) => pg.sql("SELECT 1"), { walSegSize: 1 });
 * ```
 */
export async function withPrimary<T>(
  fn: (pg: PgCluster) => Promise<T>,
  opts: PrimaryOptions = {},
): Promise<T> {
  await using pg = await startPrimary(opts);
  return await fn(pg);
}

/** A base backup's data directory; disposing it removes it. */
export interface BaseBackup extends AsyncDisposable {
  /** The data directory, owned by `postgres`, ready for {@linkcode startStandby}. */
  readonly dataDir: string;
  /** The major of the server it was taken from (and of the `pg_basebackup` that took it). */
  readonly major: number;
}

/**
 * Takes a base backup of `from` with its major's `pg_basebackup -X stream -c fast` (as
 * `postgres`), into a new temporary directory. Pass `args` to add options.
 */
export async function basebackup(
  from: PgCluster,
  opts: { args?: string[] } = {},
): Promise<BaseBackup> {
  const programs = from.programs;
  const dir = await programs.tempDir("walrelay-bb-");
  const dataDir = join(dir.path, "data");
  try {
    await programs.runOk(
      "pg_basebackup",
      [
        "-d",
        from.conninfo(),
        "-D",
        programs.pgPath(dataDir),
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
  return { dataDir, major: programs.major, [Symbol.asyncDispose]: dir.remove };
}

/** Options for {@linkcode startStandby}. */
export interface StandbyOptions {
  /** A data directory from {@linkcode basebackup} (not removed by the standby). */
  dataDir: string;
  /** Where to stream from: a libpq conninfo (the primary's or a relay's). */
  primaryConninfo: string;
  /** The major to run (default: the one in the data directory's `PG_VERSION`). */
  major?: number;
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
  const major = opts.major ??
    Number((await Deno.readTextFile(join(opts.dataDir, "PG_VERSION"))).trim());
  const programs = await pgPrograms(major);
  const dir = await programs.tempDir("walrelay-standby-");
  try {
    const port = await freePort();
    const conf: Record<string, string | number> = {
      port,
      listen_addresses: "127.0.0.1",
      unix_socket_directories: dir.pgPath,
      hot_standby: "on",
      primary_conninfo: opts.primaryConninfo,
      // The primary's archive belongs to the primary.
      archive_mode: "off",
      wal_receiver_status_interval: "1s",
      ...opts.conf,
    };
    await appendAsPostgres(
      programs,
      join(opts.dataDir, "postgresql.conf"),
      `\n# walrelay test harness: standby\n${confLines(conf)}`,
    );
    await appendAsPostgres(programs, join(opts.dataDir, "standby.signal"), "");
    const logFile = join(dir.path, "server.log");
    await pgCtlStart(programs, opts.dataDir, logFile, opts.timeoutSec ?? 60, opts.wait ?? true);
    return new PgCluster(port, opts.dataDir, dir, undefined, programs);
  } catch (e) {
    await programs.run("pg_ctl", ["-D", programs.pgPath(opts.dataDir), "-m", "immediate", "stop"], {
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
 * Runs `deno run -A cli.ts …args` from this repository until it exits: a command that ends by
 * itself, or a relay expected to refuse to start (default limit 30 s).
 */
export async function runWalrelay(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return await run([Deno.execPath(), "run", "-A", join(REPO_ROOT, "cli.ts"), ...args], {
    timeoutMs: 30_000,
    ...opts,
  });
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
// Copying WAL

/**
 * The bundled sample WAL, `testdata/wal`: PostgreSQL 15, 1 MB segments, timeline 1 → 2 in the
 * middle of a segment (`testdata/wal.json` describes it; `testdata/generate.sh` made it).
 */
export const TESTDATA: string = join(REPO_ROOT, "testdata", "wal");

/**
 * Copies the regular files of `src` whose names pass `filter` into the existing directory `dst`;
 * returns their names, sorted.
 *
 * @example
 * ```ts
 * await using dir = await tempDir();
 * const names = await copyFiles(TESTDATA, dir.path, isSegmentName);
 * ```
 */
export async function copyFiles(
  src: string,
  dst: string,
  filter: (name: string) => boolean = () => true,
): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(src)) {
    if (e.isFile && filter(e.name)) names.push(e.name);
  }
  names.sort();
  for (const n of names) await Deno.copyFile(join(src, n), join(dst, n));
  return names;
}

/**
 * Copies the sample WAL ({@linkcode TESTDATA}) into `dir` (created when missing), or into a new
 * temporary directory that the caller removes; returns the directory. Tests that rename, cut or
 * remove segments work on such a copy.
 *
 * @example
 * ```ts
 * const dir = await copyTestdata();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function copyTestdata(dir?: string): Promise<string> {
  if (dir === undefined) dir = await Deno.makeTempDir({ prefix: "walrelay-testdata-" });
  else await Deno.mkdir(dir, { recursive: true });
  await copyFiles(TESTDATA, dir);
  return dir;
}

/**
 * Copies the complete segments of a cluster's `pg_wal` into `dst` (stop the cluster first for a
 * stable copy); returns their names, sorted.
 *
 * @example
 * ```ts ignore
 * await pg.stop();
 * const names = await copyWal(pg, dir.path);
 * ```
 */
export async function copyWal(cluster: PgCluster, dst: string): Promise<string[]> {
  return await copyFiles(cluster.walDir, dst, isSegmentName);
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

/**
 * Damages one byte of a file in place (XOR 0x20), as bit rot would: the test of a check that must
 * notice it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { flipByte } from "./_pg.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array([1, 2, 3]));
 * await flipByte(path, 1);
 * assert.deepEqual([...await Deno.readFile(path)], [1, 0x22, 3]);
 * await Deno.remove(path);
 * ```
 */
export async function flipByte(path: string, offset: number): Promise<void> {
  using f = await Deno.open(path, { read: true, write: true });
  const b = new Uint8Array(1);
  await f.seek(offset, Deno.SeekMode.Start);
  await f.read(b);
  b[0]! ^= 0x20;
  await f.seek(offset, Deno.SeekMode.Start);
  await f.write(b);
}
