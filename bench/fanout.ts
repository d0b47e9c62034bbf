/**
 * Fan-out and memory benchmarks (directory mode): many `pg_receivewal` pulling the same WAL at
 * once, through one walrelay against straight from PostgreSQL's walsender, and the relay's memory
 * with hundreds of idle connections beside the streaming ones.
 *
 * - **fan-out**: `--fanout-clients` (default 24, then 50) concurrent `pg_receivewal --no-sync -n`,
 *   each into its own directory seeded with an empty `<first segment>.partial`, `--endpos` = end of the last
 *   segment − 1, pulling `--fanout-size-mb` of WAL from one relay (`--max-senders 60`) or from the
 *   primary (`max_wal_senders` = clients + 10). Per run: wall time until the last client exits,
 *   sender CPU (the relay process's `utime + stime` delta; for PostgreSQL the sum of its
 *   walsenders, read from the postmaster's `cutime + cstime` once all of them have been reaped),
 *   the clients' CPU, and the relay's peak RSS. Rounds alternate which side goes first.
 * - **memory**: a fresh relay (`--max-senders` idle + streaming + 10), `--idle-clients` (default
 *   1000) replication connections that authenticate, run `IDENTIFY_SYSTEM` and then sit in
 *   command mode, then the largest `--fanout-clients` count of `pg_receivewal` streaming the same
 *   WAL; the relay's `VmRSS` before, with the idle connections, during streaming (sampled every
 *   100 ms), after, and once the idle connections are closed, plus `VmHWM`, against the 200 MiB
 *   target; once per `--memory-workers` value (by default `--workers 1` and `2`). Then the
 *   same on the primary (whose `max_wal_senders` is sized for it): its memory as the sum of `Pss`
 *   over the postmaster and every child, so shared memory counts once.
 *
 * To keep the disk out of it, complete segments are deleted from the client directories as they
 * appear (after their size is checked); the first client's directory is kept and compared byte
 * for byte with the source on each side's first run.
 *
 * Run through `deno task bench --suite fanout,memory`; both are part of the default run.
 *
 * @module
 */

import { join } from "node:path";
import type { RelayStatus } from "../lib/http/status.ts";
import {
  assertSegmentsMatch,
  delay,
  type PgCluster,
  REPO_ROOT,
  run,
  runOk,
  startRelay,
  type TempDir,
  tempDir,
} from "../tests/_pg.ts";
import { PgClient } from "../lib/pgwire/client.ts";
import {
  type Arm,
  checkOpenFiles,
  childPids,
  postmasterPid,
  procMemory,
  startRunCpu,
  treeMemory,
} from "./_proc.ts";
import {
  copySegments,
  describeGeneratedWal,
  generateWal,
  receivewalCommand,
  seedReceiveDir,
  SEG_SIZE,
  startDenoRelay,
  startWalPrimary,
} from "./_setup.ts";
import { median } from "./_stats.ts";
import { fixed, formatLsn, MIB, mib, table } from "./_util.ts";

/** Options shared by {@linkcode runFanout} and {@linkcode runMemory}. */
export interface FanoutOptions {
  /** WAL to generate and stream, in MiB (rounded up to whole 16 MiB segments). */
  sizeMb: number;
  /** Concurrent `pg_receivewal` clients. */
  clients: number;
  /** Timed rounds of the fan-out (each round runs both sides). */
  rounds: number;
  /** Untimed rounds before them. */
  warmup: number;
  /** Idle connections in the memory benchmark. */
  idleClients: number;
  /** The memory benchmark's relay runs: `--workers` values, `default` for none. */
  memoryWorkers?: string[];
  /** More arguments for the fan-out's relay (the bench's `--workers`). */
  relayArgs?: string[];
  /** Runs the fan-out's relay under `deno run --cpu-prof`, writing its profile here. */
  cpuProfDir?: string | undefined;
  /** Where progress lines go. */
  log: (line: string) => void;
  /** Throws when the run was interrupted. */
  checkInterrupted: () => void;
}

/** A primary with WAL generated, and a copy of its complete segments for the relay. */
export interface FanoutWal extends AsyncDisposable {
  pg: PgCluster;
  /** The directory the relays serve. */
  relayDir: string;
  /** Scratch space for the clients' directories. */
  work: TempDir;
  segNames: string[];
  endLsn: bigint;
  totalMib: number;
}

/** The fan-out's figures. */
export interface FanoutReport {
  config: { size_mb: number; clients: number; rounds: number; warmup: number };
  wal: { segments: number; first: string; last: string; bytes: number; endpos: string };
  commands: { relay: string; client: string };
  verification: string;
  runs: FanoutRun[];
  summary: {
    postgres: FanoutSummary;
    walrelay: FanoutSummary;
    ratios: { wall_time: number; sender_cpu: number };
  };
}

/** One fan-out run (all clients against one side). */
export interface FanoutRun {
  round: number;
  arm: Arm;
  order: number;
  wall_s: number;
  /** All clients' bytes over the wall time. */
  aggregate_mib_per_s: number;
  sender_cpu_s: number;
  client_cpu_s: number;
  /** Slowest and fastest single client. */
  client_wall_max_s: number;
  client_wall_min_s: number;
  /** The relay's block cache: hits over hits and misses in the run (null: not counted). */
  block_cache_hit_rate: number | null;
}

/** Medians of one side. */
export interface FanoutSummary {
  median_wall_s: number;
  median_aggregate_mib_per_s: number;
  median_sender_cpu_s: number;
  median_client_cpu_s: number;
  /** The relay's block cache hit rate (null for PostgreSQL, or when not counted). */
  median_block_cache_hit_rate: number | null;
}

/** The relay's resident memory against which the memory benchmark is judged. */
export const MEMORY_TARGET_BYTES: number = 200 * 1024 * 1024;

/** The memory benchmark's figures (bytes). */
export interface MemoryReport {
  config: { idle_clients: number; streaming_clients: number; size_mb: number };
  /** The relay, once per `--workers` setting, as run. */
  relay: RelayMemory[];
  /** PostgreSQL holding the same connections: its postmaster and every child process. */
  postgres: PostgresMemory;
  /** {@linkcode MEMORY_TARGET_BYTES}. */
  target_rss_bytes: number;
}

/** The relay's memory in one run of the memory benchmark. */
export interface RelayMemory {
  /** `--workers` as given, or `default` without the option. */
  workers: string;
  relay_command: string;
  /** The relay's `VmRSS`. */
  rss_bytes: {
    after_start: number;
    with_idle: number;
    streaming_peak: number;
    streaming_median: number;
    after_streaming: number;
    after_idle_closed: number;
  };
  /** `VmHWM`, the peak over the run. */
  hwm_bytes: number;
  streaming_wall_s: number;
  streaming_samples: number;
  per_idle_connection_bytes: number;
  /** Whether `hwm_bytes` is within {@linkcode MEMORY_TARGET_BYTES}. */
  target_met: boolean;
}

/** What PostgreSQL holds for the same connections, summed over the postmaster and its children. */
export interface PostgresMemory {
  /** Sum of `Pss` (shared memory counted once): what the server holds. */
  pss_bytes: { before: number; with_idle: number; streaming_peak: number; after_streaming: number };
  /** Sum of private memory: what the processes hold each alone. */
  private_bytes: { with_idle: number; streaming_peak: number };
  processes: { before: number; with_idle: number; streaming_peak: number };
  /** Samples taken while streaming (of the streaming walsenders, added to the idle figure). */
  streaming_samples: number;
  per_idle_connection_pss_bytes: number;
  streaming_wall_s: number;
}

/**
 * Starts a primary sized for `clients` walsenders, writes `sizeMb` of WAL, completes its segments
 * and copies them into a directory for the relays.
 */
export async function prepareFanoutWal(
  sizeMb: number,
  clients: number,
  log: (line: string) => void,
): Promise<FanoutWal> {
  await using stack = new AsyncDisposableStack();
  const work = stack.use(await tempDir("walrelay-bench-fanout-"));
  const pg = stack.use(
    await startWalPrimary({
      keepMb: sizeMb * 2 + 512,
      maxWalSenders: clients + 10,
      maxConnections: 100,
      sharedBuffers: "128MB",
    }),
  );
  const generated = await generateWal(pg, sizeMb, SEG_SIZE);
  const { segNames, endLsn } = generated;
  const relayDir = join(work.path, "relay-wal");
  await copySegments(pg.walDir, segNames, relayDir);
  log(describeGeneratedWal(generated, "serving"));
  const owned = stack.move();
  return {
    pg,
    relayDir,
    work,
    segNames,
    endLsn,
    totalMib: (segNames.length * SEG_SIZE) / MIB,
    [Symbol.asyncDispose]: () => owned.disposeAsync(),
  };
}

/**
 * Runs `clients` pg_receivewal at once against `port`, deleting complete segments from every
 * directory but the first as they appear. Returns the wall time of the whole, each client's, and
 * the first client's directory (with everything it received).
 */
async function receiveAll(
  wal: FanoutWal,
  port: number,
  clients: number,
  label: string,
): Promise<{ wall_s: number; client_walls: number[]; keptDir: string; dirs: string[] }> {
  const dirs: string[] = [];
  for (let i = 0; i < clients; i++) {
    const dir = join(wal.work.path, `${label}-${i}`);
    await seedReceiveDir(dir, wal.segNames[0]!);
    dirs.push(dir);
  }
  const seen = dirs.map(() => new Set<string>());
  const problems: string[] = [];
  const clean = async (): Promise<void> => {
    for (let i = 1; i < dirs.length; i++) {
      for await (const e of Deno.readDir(dirs[i]!)) {
        if (!/^[0-9A-F]{24}$/.test(e.name)) continue;
        const path = join(dirs[i]!, e.name);
        const size = (await Deno.stat(path)).size;
        if (size !== SEG_SIZE) problems.push(`${path}: ${size} bytes`);
        seen[i]!.add(e.name);
        await Deno.remove(path);
      }
    }
  };
  const cmds = await Promise.all(
    dirs.map((dir) => receivewalCommand({ port, dir, endLsn: wal.endLsn, sync: false })),
  );
  let running = true;
  const cleaner = (async () => {
    while (running) {
      await clean();
      await delay(200);
    }
  })();
  const t = performance.now();
  const results = await Promise.all(cmds.map(async (cmd) => {
    const r = await run(cmd, { timeoutMs: 300_000 });
    return { r, wall_s: (performance.now() - t) / 1000 };
  }));
  const wall_s = (performance.now() - t) / 1000;
  running = false;
  await cleaner;
  await clean();
  const failed = results.filter((x) => !x.r.success);
  if (failed.length > 0) {
    throw new Error(
      `${failed.length} of ${clients} pg_receivewal failed against ${label}: ` +
        `${failed[0]!.r.stdout}${failed[0]!.r.stderr}`,
    );
  }
  for (const name of wal.segNames) {
    if (!(await Deno.stat(join(dirs[0]!, name)).catch(() => undefined))) {
      problems.push(`${dirs[0]}/${name} missing`);
    }
    for (let i = 1; i < dirs.length; i++) {
      if (!seen[i]!.has(name)) problems.push(`${dirs[i]}/${name} never appeared`);
    }
  }
  if (problems.length > 0) {
    throw new Error(`fan-out output incomplete:\n${problems.slice(0, 10).join("\n")}`);
  }
  return { wall_s, client_walls: results.map((x) => x.wall_s), keptDir: dirs[0]!, dirs };
}

/** The fan-out's relay and the primary's postmaster, and how to reach each side. */
interface FanoutSides {
  relayPid: number;
  postmaster: number;
  port: Record<Arm, number>;
  /** The relay's block cache counters, from its `/status`; undefined when it has none. */
  blockCache: () => Promise<{ hits: number; misses: number } | undefined>;
}

/**
 * One fan-out run: every client against `arm` at once, with the sender's and the clients' CPU.
 * The first run of each side also compares client 1's output with the source, byte for byte.
 */
async function fanoutRun(
  wal: FanoutWal,
  sides: FanoutSides,
  arm: Arm,
  label: string,
  verify: boolean,
  opts: FanoutOptions,
): Promise<Omit<FanoutRun, "round" | "order">> {
  opts.checkInterrupted();
  await runOk(["sync"]);
  const cacheBefore = arm === "walrelay" ? await sides.blockCache() : undefined;
  const meter = await startRunCpu(sides.postmaster, sides.relayPid);
  const r = await receiveAll(wal, sides.port[arm], opts.clients, label);
  const cpu = await meter.finish(arm, { reapTimeoutMs: 20_000, settleMs: 200 });
  const cacheAfter = cacheBefore ? await sides.blockCache() : undefined;
  const hits = cacheAfter && cacheBefore ? cacheAfter.hits - cacheBefore.hits : 0;
  const misses = cacheAfter && cacheBefore ? cacheAfter.misses - cacheBefore.misses : 0;
  if (verify) await assertSegmentsMatch(r.keptDir, wal.relayDir);
  for (const d of r.dirs) await Deno.remove(d, { recursive: true });
  return {
    arm,
    wall_s: r.wall_s,
    aggregate_mib_per_s: (wal.totalMib * opts.clients) / r.wall_s,
    ...cpu,
    client_wall_max_s: Math.max(...r.client_walls),
    client_wall_min_s: Math.min(...r.client_walls),
    block_cache_hit_rate: hits + misses > 0 ? hits / (hits + misses) : null,
  };
}

/** The table of one fan-out round. */
function fanoutRoundTable(runs: FanoutRun[]): string {
  return table(
    [
      "sender",
      "order",
      "wall s",
      "agg MiB/s",
      "sender cpu s",
      "client cpu s",
      "client wall s",
      "cache hits",
    ],
    runs.map((x) => [
      x.arm,
      String(x.order),
      fixed(x.wall_s, 3),
      fixed(x.aggregate_mib_per_s, 0),
      fixed(x.sender_cpu_s, 2),
      fixed(x.client_cpu_s, 2),
      `${fixed(x.client_wall_min_s, 2)}–${fixed(x.client_wall_max_s, 2)}`,
      x.block_cache_hit_rate === null ? "" : `${fixed(x.block_cache_hit_rate * 100, 1)} %`,
    ]),
  );
}

/** Medians of each side, and PostgreSQL / walrelay. */
function summarizeFanout(runs: FanoutRun[]): FanoutReport["summary"] {
  const of = (arm: Arm): FanoutSummary => {
    const rs = runs.filter((x) => x.arm === arm);
    const rates = rs.flatMap((x) =>
      x.block_cache_hit_rate === null ? [] : [x.block_cache_hit_rate]
    );
    return {
      median_wall_s: median(rs.map((x) => x.wall_s)),
      median_aggregate_mib_per_s: median(rs.map((x) => x.aggregate_mib_per_s)),
      median_sender_cpu_s: median(rs.map((x) => x.sender_cpu_s)),
      median_client_cpu_s: median(rs.map((x) => x.client_cpu_s)),
      median_block_cache_hit_rate: rates.length > 0 ? median(rates) : null,
    };
  };
  const p = of("postgres");
  const w = of("walrelay");
  return {
    postgres: p,
    walrelay: w,
    ratios: {
      wall_time: p.median_wall_s / w.median_wall_s,
      sender_cpu: p.median_sender_cpu_s / w.median_sender_cpu_s,
    },
  };
}

/** The fan-out summary table: medians of each side and the ratio row. */
function fanoutSummaryTable(summary: FanoutReport["summary"]): string {
  const { postgres: p, walrelay: w, ratios } = summary;
  return table(
    ["", "wall s", "agg MiB/s", "sender cpu s", "client cpu s"],
    [
      ...([["postgres", p], ["walrelay", w]] as const).map(([arm, s]) => [
        arm,
        fixed(s.median_wall_s, 3),
        fixed(s.median_aggregate_mib_per_s, 0),
        fixed(s.median_sender_cpu_s, 2),
        fixed(s.median_client_cpu_s, 2),
      ]),
      ["ratio pg/relay", fixed(ratios.wall_time, 2), "", fixed(ratios.sender_cpu, 2), ""],
    ],
  );
}

/** Runs the fan-out benchmark and prints its tables; returns the figures. */
export async function runFanout(wal: FanoutWal, opts: FanoutOptions): Promise<FanoutReport> {
  const { log } = opts;
  log(
    `\n== fan-out: ${opts.clients} concurrent pg_receivewal, ${wal.totalMib} MiB each, ` +
      `one walrelay vs PostgreSQL's walsenders ==`,
  );
  const relayArgs = [
    "--max-senders",
    String(opts.clients + 10),
    "--log-format",
    "text",
    ...(opts.relayArgs ?? []),
  ];
  await using relay = await startDenoRelay({
    cli: join(REPO_ROOT, "cli.ts"),
    walDir: wal.relayDir,
    args: relayArgs,
    cpuProfDir: opts.cpuProfDir,
    http: true,
  });
  const pg = wal.pg;
  const sides: FanoutSides = {
    relayPid: relay.pid,
    postmaster: await postmasterPid(pg.dataDir),
    port: { postgres: pg.port, walrelay: relay.port },
    blockCache: async () => {
      const res = await fetch(new URL("status", relay.httpUrl));
      const status = await res.json() as RelayStatus;
      return status.caches?.wal_blocks ?? undefined;
    },
  };
  const clientCommand = await receivewalCommand({
    port: pg.port,
    dir: "<dir i>",
    endLsn: wal.endLsn,
    sync: false,
  });
  const commands = {
    relay: relay.command,
    client: clientCommand.join(" "),
  };
  log(`relay: ${commands.relay}`);
  log(`clients: ${opts.clients} × ${commands.client}`);
  log(`         (or the relay's port), each dir seeded with ${wal.segNames[0]}.partial`);

  const verified = new Set<Arm>();
  const runs: FanoutRun[] = [];
  for (let round = 1 - opts.warmup; round <= opts.rounds; round++) {
    // Alternate which side goes first, so drift (page cache, other tenants) hits both alike.
    const arms = (round + 2 * opts.warmup) % 2 === 1
      ? (["postgres", "walrelay"] as const)
      : (["walrelay", "postgres"] as const);
    for (const [order, arm] of arms.entries()) {
      const r = await fanoutRun(wal, sides, arm, `${arm}-${round}`, !verified.has(arm), opts);
      verified.add(arm);
      if (round >= 1) runs.push({ round, order: order + 1, ...r });
    }
    if (round < 1) {
      log(`fan-out warm-up ${round + opts.warmup} done`);
      continue;
    }
    log(`\nfan-out round ${round}/${opts.rounds}`);
    log(fanoutRoundTable(runs.filter((x) => x.round === round)));
  }
  const relayMem = await procMemory(relay.pid);
  const summary = summarizeFanout(runs);
  const verification = `each side's first run: all ${opts.clients} clients got all ` +
    `${wal.segNames.length} segments at full size; client 1's byte-identical to the source`;
  log(`verified: ${verification}`);
  log(`\nfan-out summary: ${opts.rounds} rounds, ${opts.clients} × ${wal.totalMib} MiB, medians`);
  log(fanoutSummaryTable(summary));
  log(
    `walrelay peak RSS (VmHWM) during the fan-out: ${mib(relayMem.peak)} MiB; ` +
      `PostgreSQL's sender cpu is the sum of its ${opts.clients} walsender processes`,
  );
  return {
    config: {
      size_mb: opts.sizeMb,
      clients: opts.clients,
      rounds: opts.rounds,
      warmup: opts.warmup,
    },
    wal: {
      segments: wal.segNames.length,
      first: wal.segNames[0]!,
      last: wal.segNames.at(-1)!,
      bytes: wal.segNames.length * SEG_SIZE,
      endpos: formatLsn(wal.endLsn - 1n),
    },
    commands,
    verification,
    runs,
    summary,
  };
}

/**
 * Opens `count` replication connections to the relay, twenty at a time, and runs
 * `IDENTIFY_SYSTEM` on each: in command mode, having run a command, as an idle standby between
 * retries would be. Pushes them into `into`, so the caller closes whatever was opened.
 */
async function openIdleConnections(
  port: number,
  count: number,
  into: PgClient[],
  checkInterrupted: () => void,
): Promise<void> {
  for (let i = 0; i < count; i += 20) {
    checkInterrupted();
    const batch = await Promise.all(
      Array.from({ length: Math.min(20, count - i) }, () =>
        PgClient.connect({
          hostname: "127.0.0.1",
          port,
          user: "postgres",
          connectTimeoutMs: 20_000,
        })),
    );
    into.push(...batch);
  }
  for (const c of into) await c.query("IDENTIFY_SYSTEM");
}

/** Samples `read()` every `ms` until the returned stop function is called. */
function sampleEvery<T>(ms: number, read: () => Promise<T>): () => Promise<T[]> {
  const samples: T[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      samples.push(await read());
      await delay(ms);
    }
  })();
  return async () => {
    sampling = false;
    await sampler;
    return samples;
  };
}

/** The memory benchmark's table: the relay's RSS (each run) beside PostgreSQL's PSS. */
function memoryTable(report: MemoryReport): string {
  const { config, postgres: pg } = report;
  const streaming = `streaming to ${config.streaming_clients}`;
  const relay = (f: (r: RelayMemory) => number): string[] => report.relay.map((r) => mib(f(r)));
  const pgCell = (bytes: number, processes?: number): string =>
    processes === undefined ? mib(bytes) : `${mib(bytes)} (${processes})`;
  return table([
    "",
    ...report.relay.map((r) => `walrelay (workers ${r.workers}) VmRSS MiB`),
    "PostgreSQL PSS MiB (processes)",
  ], [
    [
      "after start",
      ...relay((r) => r.rss_bytes.after_start),
      pgCell(pg.pss_bytes.before, pg.processes.before),
    ],
    [
      `with ${config.idle_clients} idle`,
      ...relay((r) => r.rss_bytes.with_idle),
      pgCell(pg.pss_bytes.with_idle, pg.processes.with_idle),
    ],
    [`${streaming} (median sample)`, ...relay((r) => r.rss_bytes.streaming_median), ""],
    [
      `${streaming} (peak sample)`,
      ...relay((r) => r.rss_bytes.streaming_peak),
      pgCell(pg.pss_bytes.streaming_peak, pg.processes.streaming_peak),
    ],
    [
      "after streaming (idle still open)",
      ...relay((r) => r.rss_bytes.after_streaming),
      pgCell(pg.pss_bytes.after_streaming),
    ],
    ["after the idle connections closed", ...relay((r) => r.rss_bytes.after_idle_closed), ""],
    ["VmHWM (peak over the run)", ...relay((r) => r.hwm_bytes), ""],
  ]);
}

/**
 * Opens the idle connections, runs `body` while they are open, closes them (`Terminate` first)
 * whatever happens.
 */
async function withIdle<T>(
  port: number,
  opts: FanoutOptions,
  body: (idle: PgClient[]) => Promise<T>,
): Promise<T> {
  const idle: PgClient[] = [];
  try {
    await openIdleConnections(port, opts.idleClients, idle, opts.checkInterrupted);
    return await body(idle);
  } finally {
    for (const c of idle) await c.terminate().catch(() => c.close());
  }
}

/** The relay's side: its RSS at each stage. */
async function relayMemory(
  wal: FanoutWal,
  opts: FanoutOptions,
  workers: string,
): Promise<RelayMemory> {
  const maxSenders = opts.idleClients + opts.clients + 10;
  const relayArgs = [
    "--max-senders",
    String(maxSenders),
    "--max-connections",
    String(maxSenders + 40),
    ...(workers === "default" ? [] : ["--workers", workers]),
    "--log-format",
    "text",
  ];
  await using relay = await startRelay({ walDir: wal.relayDir, args: relayArgs });
  const relayCommand = `deno run -A cli.ts serve --wal-dir ${wal.relayDir} --listen ` +
    `127.0.0.1:${relay.port} ${relayArgs.join(" ")}`;
  opts.log(`relay: ${relayCommand}`);
  await delay(500);
  const rss = async (): Promise<number> => (await procMemory(relay.pid)).current;
  const afterStart = await rss();
  const stages = await withIdle(relay.port, opts, async () => {
    await delay(1000);
    const withIdle = await rss();
    opts.log(`${opts.idleClients} idle replication connections open (IDENTIFY_SYSTEM run on each)`);
    const stopSampling = sampleEvery(100, rss);
    const r = await receiveAll(wal, relay.port, opts.clients, "memory");
    const samples = await stopSampling();
    for (const d of r.dirs) await Deno.remove(d, { recursive: true });
    await delay(1000);
    return { withIdle, samples, wall_s: r.wall_s, afterStreaming: await rss() };
  });
  await delay(1000);
  const afterIdleClosed = await rss();
  const hwm = (await procMemory(relay.pid)).peak;
  return {
    workers,
    relay_command: relayCommand,
    rss_bytes: {
      after_start: afterStart,
      with_idle: stages.withIdle,
      streaming_peak: Math.max(...stages.samples),
      streaming_median: median(stages.samples),
      after_streaming: stages.afterStreaming,
      after_idle_closed: afterIdleClosed,
    },
    hwm_bytes: hwm,
    streaming_wall_s: stages.wall_s,
    streaming_samples: stages.samples.length,
    per_idle_connection_bytes: opts.idleClients > 0
      ? (stages.withIdle - afterStart) / opts.idleClients
      : 0,
    target_met: hwm <= MEMORY_TARGET_BYTES,
  };
}

/**
 * PostgreSQL's side: the same idle walsender connections and the same streaming clients on the
 * primary, its memory summed over the postmaster and its children (PSS, so that shared memory
 * counts once).
 */
async function postgresMemory(wal: FanoutWal, opts: FanoutOptions): Promise<PostgresMemory> {
  const postmaster = await postmasterPid(wal.pg.dataDir);
  const before = await treeMemory(postmaster);
  return await withIdle(wal.pg.port, opts, async () => {
    await delay(1000);
    const idle = await treeMemory(postmaster);
    opts.log(`${opts.idleClients} idle walsenders on PostgreSQL (IDENTIFY_SYSTEM run on each)`);
    // Reading a thousand processes' smaps_rollup takes seconds: while streaming, only the new
    // walsenders are read, and added to what the rest held before.
    const held = new Set(await childPids(postmaster));
    held.add(postmaster);
    const stopSampling = sampleEvery(100, () => treeMemory(postmaster, { skip: held }));
    const r = await receiveAll(wal, wal.pg.port, opts.clients, "memory-pg");
    const samples = await stopSampling();
    for (const d of r.dirs) await Deno.remove(d, { recursive: true });
    const most = samples.reduce((a, b) => (b.pss > a.pss ? b : a), samples[0]!);
    const peak = {
      processes: idle.processes + most.processes,
      pss: idle.pss + most.pss,
      private: idle.private + most.private,
    };
    const after = await treeMemory(postmaster);
    return {
      pss_bytes: {
        before: before.pss,
        with_idle: idle.pss,
        streaming_peak: peak.pss,
        after_streaming: after.pss,
      },
      private_bytes: { with_idle: idle.private, streaming_peak: peak.private },
      processes: {
        before: before.processes,
        with_idle: idle.processes,
        streaming_peak: peak.processes,
      },
      streaming_samples: samples.length,
      per_idle_connection_pss_bytes: opts.idleClients > 0
        ? (idle.pss - before.pss) / opts.idleClients
        : 0,
      streaming_wall_s: r.wall_s,
    };
  });
}

/**
 * Runs the memory benchmark: the relay, then PostgreSQL, each holding `idleClients` idle
 * replication connections while `clients` stream; prints the table and returns the figures.
 */
export async function runMemory(wal: FanoutWal, opts: FanoutOptions): Promise<MemoryReport> {
  const { log } = opts;
  log(
    `\n== memory: ${opts.idleClients} idle + ${opts.clients} streaming connections, ` +
      `walrelay against PostgreSQL ==`,
  );
  // Both ends of every connection are in this process and the server's (relay or postmaster),
  // plus the streaming clients' and the files they write.
  const files = await checkOpenFiles(2 * (opts.idleClients + opts.clients) + 256);
  log(`open files limit ${files}`);
  const relay: RelayMemory[] = [];
  for (const workers of opts.memoryWorkers ?? ["default"]) {
    opts.checkInterrupted();
    relay.push(await relayMemory(wal, opts, workers));
  }
  opts.checkInterrupted();
  const postgres = await postgresMemory(wal, opts);
  const report: MemoryReport = {
    config: {
      idle_clients: opts.idleClients,
      streaming_clients: opts.clients,
      size_mb: opts.sizeMb,
    },
    relay,
    postgres,
    target_rss_bytes: MEMORY_TARGET_BYTES,
  };
  log(memoryTable(report));
  log(
    `${opts.clients} × ${wal.totalMib} MiB streamed beside ${opts.idleClients} idle ` +
      `connections; per idle connection ≈ ${
        relay.map((r) => `${fixed(r.per_idle_connection_bytes / 1024, 1)} KiB`).join(", ")
      } of relay RSS, ${fixed(postgres.per_idle_connection_pss_bytes / 1024, 1)} KiB of ` +
      `PostgreSQL PSS; relay peak ${
        relay.map((r) =>
          `${mib(r.hwm_bytes)} MiB (workers ${r.workers}: ${r.target_met ? "met" : "NOT met"})`
        ).join(", ")
      } against the target of ${mib(MEMORY_TARGET_BYTES)} MiB`,
  );
  return report;
}
