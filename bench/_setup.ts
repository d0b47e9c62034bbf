/**
 * What the sender benchmarks set up: a primary that keeps all its WAL, WAL generated on it, the
 * complete segments copied for a relay, a relay started under deno flags the test harness does
 * not pass, and the `pg_receivewal` command line the clients run.
 *
 * @module
 */

import { join } from "node:path";
import {
  type BackgroundProcess,
  freePort,
  pgBin,
  type PgCluster,
  REPO_ROOT,
  spawnBackground,
  startPrimary,
  waitFor,
} from "../tests/_pg.ts";
import { fixed, formatLsn, MIB, parseLsn, segmentName } from "./_util.ts";

/** The segment size of the benchmarks' primaries (`initdb --wal-segsize 16`), in bytes. */
export const SEG_SIZE = 16 * 1024 * 1024;

/** Sizes of a primary that serves benchmark WAL from its `pg_wal`. */
export interface WalPrimaryOptions {
  /** `wal_keep_size` and `max_wal_size`, in MB: more than the WAL the benchmark writes. */
  keepMb: number;
  /** `max_wal_senders`. */
  maxWalSenders: number;
  /** `shared_buffers`, e.g. `256MB`. */
  sharedBuffers: string;
  /** `max_connections` (default: PostgreSQL's). */
  maxConnections?: number;
}

/**
 * Starts a primary with 16 MB segments that keeps everything it writes in `pg_wal`, for its
 * walsenders to serve, and stays quiet otherwise.
 *
 * @example
 * ```ts ignore
 * import { startWalPrimary } from "./_setup.ts";
 * await using pg = await startWalPrimary({ keepMb: 2048, maxWalSenders: 10, sharedBuffers: "256MB" });
 * ```
 */
export function startWalPrimary(opts: WalPrimaryOptions): Promise<PgCluster> {
  return startPrimary({
    walSegSize: 16,
    conf: {
      wal_keep_size: `${opts.keepMb}MB`,
      max_wal_size: `${opts.keepMb}MB`,
      checkpoint_timeout: "1h",
      wal_compression: "off",
      max_wal_senders: opts.maxWalSenders,
      ...(opts.maxConnections === undefined ? {} : { max_connections: opts.maxConnections }),
      // A walsender's CPU is read from the postmaster's reaped-children time, which autovacuum
      // workers would add to.
      autovacuum: "off",
      shared_buffers: opts.sharedBuffers,
      wal_buffers: "16MB",
      synchronous_commit: "off",
    },
  });
}

/** WAL a benchmark generated on a primary: the complete segments to stream. */
export interface GeneratedWal {
  /** Where generation began. */
  startLsn: bigint;
  /** The primary's position afterwards (inside the in-progress segment). */
  currentLsn: bigint;
  /** Timeline of the segments. */
  tli: number;
  /** Names of the complete segments, from the one holding `startLsn`. */
  segNames: string[];
  /** End of the last complete segment. */
  endLsn: bigint;
  /** Seconds generation took. */
  seconds: number;
}

/**
 * Writes at least `sizeMb` of WAL on `pg` with 256 kB logical messages (the fastest way to make
 * WAL: one memcpy per record; what it holds does not matter to either sender), switches segment,
 * checkpoints, and waits until everything up to the last complete segment is flushed.
 *
 * @example
 * ```ts ignore
 * import { generateWal, SEG_SIZE } from "./_setup.ts";
 * const { segNames, endLsn } = await generateWal(pg, 1024, SEG_SIZE);
 * ```
 */
export async function generateWal(
  pg: PgCluster,
  sizeMb: number,
  segSize: number,
): Promise<GeneratedWal> {
  const t0 = performance.now();
  const startLsn = parseLsn(await pg.currentLsn());
  const firstName = await pg.sql(`SELECT pg_walfile_name('${formatLsn(startLsn)}')`);
  const tli = parseInt(firstName.slice(0, 8), 16);
  const firstSeg = startLsn / BigInt(segSize);
  const target = startLsn + BigInt(sizeMb) * 1024n * 1024n;
  const messageBytes = 256 * 1024;
  while (true) {
    const lsn = parseLsn(await pg.currentLsn());
    if (lsn >= target) break;
    const count = Math.max(1, Math.ceil(Number(target - lsn) / messageBytes));
    await pg.sql(
      `SELECT count(pg_logical_emit_message(false, 'walrelay-bench', ` +
        `repeat(md5(i::text), ${messageBytes / 32}))) FROM generate_series(1, ${count}) i`,
    );
  }
  await pg.sql("SELECT pg_switch_wal()");
  await pg.sql("CHECKPOINT");
  const currentLsn = parseLsn(await pg.currentLsn());
  const endSeg = currentLsn / BigInt(segSize); // the in-progress segment: not streamed
  const endLsn = endSeg * BigInt(segSize);
  await waitFor(
    async () => parseLsn(await pg.sql("SELECT pg_current_wal_flush_lsn()")) >= endLsn,
    { message: "WAL not flushed up to the end of the last complete segment" },
  );
  const segNames: string[] = [];
  for (let s = firstSeg; s < endSeg; s++) segNames.push(segmentName(tli, s, segSize));
  return {
    startLsn,
    currentLsn,
    tli,
    segNames,
    endLsn,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * The progress line after {@linkcode generateWal}: the range written, how long it took, and the
 * segments a benchmark streams (`verb`: "streaming", "serving").
 *
 * @example
 * ```ts ignore
 * log(describeGeneratedWal(wal, "streaming"));
 * ```
 */
export function describeGeneratedWal(wal: GeneratedWal, verb: string): string {
  const { startLsn, currentLsn, segNames, endLsn, seconds } = wal;
  const totalMib = (segNames.length * SEG_SIZE) / MIB;
  return `generated WAL ${formatLsn(startLsn)} .. ${formatLsn(currentLsn)} in ` +
    `${fixed(seconds, 1)} s; ${verb} ${segNames.length} segments ` +
    `${segNames[0]} .. ${segNames.at(-1)} (${totalMib} MiB) ending at ${formatLsn(endLsn)}`;
}

/**
 * Copies the named segments from a primary's `pg_wal` into `dir` (created), for a relay to serve.
 *
 * @example
 * ```ts ignore
 * await copySegments(pg.walDir, segNames, join(work.path, "relay-wal"));
 * ```
 */
export async function copySegments(walDir: string, names: string[], dir: string): Promise<void> {
  await Deno.mkdir(dir);
  for (const name of names) await Deno.copyFile(join(walDir, name), join(dir, name));
}

/**
 * Creates a client directory holding an empty `<first>.partial`, so that `pg_receivewal` starts
 * streaming at that segment rather than at the server's current position.
 *
 * @example
 * ```ts ignore
 * await seedReceiveDir(join(work.path, "recv-1"), segNames[0]!);
 * ```
 */
export async function seedReceiveDir(dir: string, firstSegment: string): Promise<void> {
  await Deno.mkdir(dir);
  await Deno.writeFile(join(dir, `${firstSegment}.partial`), new Uint8Array());
}

/**
 * The `pg_receivewal` command line that pulls everything up to `endLsn` from `port` into `dir`
 * and exits (`-n`, no password prompt), fsyncing each segment unless `sync` is false.
 *
 * pg_receivewal stops once a position *exceeds* endpos (`endpos < xlogpos`): with endpos at the
 * very end of what the relay holds it would wait forever for one more byte. One byte less stops it
 * exactly at the end of the last segment, which it completes and renames.
 *
 * @example
 * ```ts ignore
 * const cmd = await receivewalCommand({ port: pg.port, dir, endLsn, sync: false });
 * ```
 */
export async function receivewalCommand(
  opts: { port: number; dir: string; endLsn: bigint; sync: boolean },
): Promise<string[]> {
  return [
    await pgBin("pg_receivewal"),
    "-d",
    `host=127.0.0.1 port=${opts.port} user=postgres`,
    "-D",
    opts.dir,
    "-n",
    "-w",
    `--endpos=${formatLsn(opts.endLsn - 1n)}`,
    ...(opts.sync ? [] : ["--no-sync"]),
  ];
}

/** Options of {@linkcode startDenoRelay}. */
export interface DenoRelayOptions {
  /** The walrelay entry point, e.g. this repository's `cli.ts`. */
  cli: string;
  /** `--wal-dir`. */
  walDir: string;
  /** More arguments after `serve --wal-dir DIR --listen 127.0.0.1:PORT`. */
  args: string[];
  /** Run under `deno run --cpu-prof`, the profile written into this directory at exit. */
  cpuProfDir: string | undefined;
  /** How long to wait for it to accept connections (default 60000 ms). */
  timeoutMs?: number;
  /** Serve `--http` on a free loopback port too (see {@linkcode DenoRelay.httpUrl}). */
  http?: boolean;
}

/** A relay started by {@linkcode startDenoRelay}. */
export interface DenoRelay extends BackgroundProcess {
  /** The port it listens on (127.0.0.1). */
  port: number;
  /** Its command line, for the report. */
  command: string;
  /** Its status server's base URL, `http://127.0.0.1:PORT/`, when started with `http`. */
  httpUrl: string | undefined;
}

/**
 * Starts `deno run [--cpu-prof --cpu-prof-dir=DIR] -A CLI serve --wal-dir DIR --listen
 * 127.0.0.1:PORT [--http 127.0.0.1:PORT] …args` and waits until it accepts connections, on the
 * status port too. The harness's `startRelay` runs `deno run -A` without deno flags, hence this.
 *
 * @example
 * ```ts ignore
 * await using relay = await startDenoRelay({ cli, walDir, args: [], cpuProfDir: "prof" });
 * ```
 */
export async function startDenoRelay(opts: DenoRelayOptions): Promise<DenoRelay> {
  if (opts.cpuProfDir !== undefined) await Deno.mkdir(opts.cpuProfDir, { recursive: true });
  const port = await freePort();
  const httpPort = opts.http ? await freePort() : undefined;
  const denoFlags = opts.cpuProfDir === undefined
    ? []
    : ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`];
  const args = [
    "run",
    ...denoFlags,
    "-A",
    opts.cli,
    "serve",
    "--wal-dir",
    opts.walDir,
    "--listen",
    `127.0.0.1:${port}`,
    ...(httpPort === undefined ? [] : ["--http", `127.0.0.1:${httpPort}`]),
    ...opts.args,
  ];
  const proc = await spawnBackground([Deno.execPath(), ...args], {
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
  });
  // The replication port is bound before the status server's, so a relay taking connections
  // may not answer `/status` yet: wait for both.
  const ports = httpPort === undefined ? [port] : [port, httpPort];
  try {
    await waitFor(async () => {
      if (proc.exited) throw new Error(`walrelay exited:\n${proc.stderr()}`);
      try {
        for (const p of ports) (await Deno.connect({ hostname: "127.0.0.1", port: p })).close();
        return true;
      } catch {
        return false;
      }
    }, {
      timeoutMs: opts.timeoutMs ?? 60_000,
      intervalMs: 100,
      message: `walrelay did not listen on ${ports.join(" and ")}`,
    });
  } catch (e) {
    await proc[Symbol.asyncDispose]();
    throw new Error(`${(e as Error).message}\n--- relay stderr ---\n${proc.stderr()}`);
  }
  const quoted = args.map((a) => (/^[\w./=:-]+$/.test(a) ? a : `'${a}'`));
  return Object.assign(proc, {
    port,
    command: `deno ${quoted.join(" ")}`,
    httpUrl: httpPort === undefined ? undefined : `http://127.0.0.1:${httpPort}/`,
  });
}
