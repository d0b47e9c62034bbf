/**
 * Throughput benchmark: one `pg_receivewal` pulls the same WAL from PostgreSQL 15's walsender and
 * from walrelay, timed side by side.
 *
 * 1. A fresh primary (16 MB segments, everything kept) writes `--size-mb` of WAL with
 *    `pg_logical_emit_message`, then `pg_switch_wal()` and `CHECKPOINT` complete its segments.
 * 2. The complete segments are copied into a directory that walrelay serves.
 * 3. Each round times `pg_receivewal -n --endpos=<end of the last segment>` from the first segment
 *    into an empty directory, against the primary and against the relay, alternating which goes
 *    first. `--sync on` keeps pg_receivewal's fsync of each segment, `off` passes `--no-sync`;
 *    `both` (default) runs each mode every round.
 * 4. Sender CPU: for PostgreSQL the walsender backend's CPU, read from the postmaster's `cutime +
 *    cstime` once the walsender has been reaped (exact, and no polling that would disturb the run);
 *    for walrelay the deno process's `utime + stime` delta. Client CPU is pg_receivewal's, from this
 *    process's own `cutime`. Relay memory is `VmHWM`.
 * 5. Output: a table per round, a summary of medians and ratios (PostgreSQL / walrelay, so ≥ 1.0
 *    means walrelay is at least as fast, or uses at most as much CPU).
 *
 * Run it through `deno task bench --suite throughput`; it is also part of the default run.
 *
 * @module
 */

import { join } from "node:path";
import {
  assertSegmentsMatch,
  type BackgroundProcess,
  compareDirs,
  type PgCluster,
  run,
  runOk,
  type TempDir,
  tempDir,
} from "../tests/_pg.ts";
import { type Arm, postmasterPid, procMemory, type RunCpu, startRunCpu } from "./_proc.ts";
import {
  copySegments,
  describeGeneratedWal,
  type GeneratedWal,
  generateWal,
  receivewalCommand,
  seedReceiveDir,
  SEG_SIZE,
  startDenoRelay,
  startWalPrimary,
} from "./_setup.ts";
import { median } from "./_stats.ts";
import { fixed, formatLsn, MIB, table } from "./_util.ts";

/** Options of {@linkcode runThroughput}. */
export interface ThroughputOptions {
  /** WAL to generate and stream, in MiB. */
  sizeMb: number;
  /** Timed rounds. */
  rounds: number;
  /** Untimed runs of each sender before the rounds. */
  warmup: number;
  /** The `--sync` option as given (`both`, `on`, `off`), for the report. */
  sync: string;
  /** The fsync modes each round runs: true keeps pg_receivewal's fsync, false is `--no-sync`. */
  syncModes: boolean[];
  /** `first`: the first runs' output compared byte for byte, later ones by name and size. */
  verify: "first" | "all";
  /** The walrelay entry point. */
  relayCli: string;
  /** More arguments for the relay (the bench's `--workers`). */
  relayArgs?: string[];
  /** Run the relay under `deno run --cpu-prof`, the profile written into this directory. */
  cpuProfDir: string | undefined;
  /** Where progress lines and tables go. */
  log: (line: string) => void;
  /** Throws when the run was interrupted. */
  checkInterrupted: () => void;
}

/** One timed `pg_receivewal` run. */
export interface ThroughputRecord {
  round: number;
  arm: Arm;
  sync: boolean;
  /** Position in the round (1 = went first). */
  order: number;
  wall_s: number;
  mib_per_s: number;
  /** CPU seconds of the sender: the walsender backend, or the relay process. */
  sender_cpu_s: number;
  /** CPU seconds of pg_receivewal. */
  client_cpu_s: number;
}

/** Medians of one arm in one sync mode. */
export interface ArmSummary {
  median_wall_s: number;
  min_wall_s: number;
  max_wall_s: number;
  median_mib_per_s: number;
  median_sender_cpu_s: number;
  median_client_cpu_s: number;
}

/** PostgreSQL / walrelay in one sync mode: ≥ 1.0 means walrelay is as fast, or as frugal. */
export interface ThroughputRatios {
  wall_time: number;
  wall_time_per_round_min: number;
  wall_time_per_round_max: number;
  sender_cpu: number;
}

/** Both arms of one sync mode, and their ratios. */
export type ModeSummary = Record<Arm, ArmSummary> & { ratios: ThroughputRatios };

/** What {@linkcode runThroughput} measured. */
export interface ThroughputReport {
  relay_command: string;
  client_command: string;
  config: {
    size_mb: number;
    rounds: number;
    warmup: number;
    sync: string;
    verify: string;
    relay_cli: string;
    cpu_prof: string | null;
  };
  wal: {
    segments: number;
    first: string | undefined;
    last: string | undefined;
    bytes: number;
    end: string;
    endpos: string;
  };
  verification: string;
  /** By mode: `fsync`, `no-sync`. */
  summary: Record<string, ModeSummary>;
  relay_rss: {
    after_start_bytes: number;
    peak_bytes: number;
    peak_after_each_round_bytes: number[];
  };
  runs: ThroughputRecord[];
}

/** The primary, its WAL, and the relay serving a copy of it. */
interface Setup extends AsyncDisposable {
  work: TempDir;
  pg: PgCluster;
  postmaster: number;
  wal: GeneratedWal;
  totalMib: number;
  /** The directory the relay serves: the source every run's output is compared with. */
  relayWal: string;
  relay: BackgroundProcess & { port: number };
  relayCommand: string;
  relayRssAtStart: number;
  /** The client's command line against `arm`, into `dir`. */
  receiveArgs(arm: Arm, dir: string, sync: boolean): Promise<string[]>;
}

/** Starts the primary, generates the WAL, copies it and starts the relay on the copy. */
async function setUp(opts: ThroughputOptions): Promise<Setup> {
  const { log, sizeMb } = opts;
  await using stack = new AsyncDisposableStack();
  const work = stack.use(await tempDir("walrelay-bench-"));
  const pg = stack.use(
    await startWalPrimary({
      keepMb: sizeMb * 2 + 1024,
      maxWalSenders: 10,
      sharedBuffers: "256MB",
    }),
  );
  const wal = await generateWal(pg, sizeMb, SEG_SIZE);
  log(describeGeneratedWal(wal, "streaming"));

  const relayWal = join(work.path, "relay-wal");
  await copySegments(pg.walDir, wal.segNames, relayWal);
  const relayArgs = ["--log-format", "text", ...(opts.relayArgs ?? [])];
  const relay = stack.use(
    await startDenoRelay({
      cli: opts.relayCli,
      walDir: relayWal,
      args: relayArgs,
      cpuProfDir: opts.cpuProfDir,
      timeoutMs: 20_000,
    }),
  );
  const relayCommand = relay.command;
  const ports: Record<Arm, number> = { postgres: pg.port, walrelay: relay.port };
  const owned = stack.move();
  return {
    work,
    pg,
    postmaster: await postmasterPid(pg.dataDir),
    wal,
    totalMib: (wal.segNames.length * SEG_SIZE) / MIB,
    relayWal,
    relay,
    relayCommand,
    relayRssAtStart: (await procMemory(relay.pid)).current,
    receiveArgs: (arm, dir, sync) =>
      receivewalCommand({ port: ports[arm], dir, endLsn: wal.endLsn, sync }),
    [Symbol.asyncDispose]: () => owned.disposeAsync(),
  };
}

/** Figures of one run, and the directory holding its output. */
interface ReceiveResult extends RunCpu {
  wall_s: number;
  dir: string;
}

/**
 * The runs of one benchmark: each streams everything once from one sender into a fresh directory
 * and is checked; the first pair is compared byte for byte.
 */
class Runs {
  readonly records: ThroughputRecord[] = [];
  verification = "";
  #verifiedPair = false;
  #counter = 0;

  constructor(readonly setup: Setup, readonly opts: ThroughputOptions) {}

  /** Streams everything once from `arm` into a fresh directory. */
  async receive(arm: Arm, sync: boolean): Promise<ReceiveResult> {
    const { setup, opts } = this;
    opts.checkInterrupted();
    const dir = join(setup.work.path, `recv-${++this.#counter}-${arm}`);
    await seedReceiveDir(dir, setup.wal.segNames[0]!);
    // Start each run with no dirty pages anywhere, so write-back of earlier work (ours or another
    // tenant's) does not land on whichever run happens to be next.
    await runOk(["sync"]);
    const meter = await startRunCpu(setup.postmaster, setup.relay.pid);
    const t = performance.now();
    const r = await run(await setup.receiveArgs(arm, dir, sync), {
      timeoutMs: 120_000 + opts.sizeMb * 200,
    });
    const wall_s = (performance.now() - t) / 1000;
    if (!r.success) {
      throw new Error(`pg_receivewal against ${arm} failed (${r.code}):\n${r.stdout}${r.stderr}`);
    }
    const cpu = await meter.finish(arm, { reapTimeoutMs: 10_000, settleMs: 100 });
    return { wall_s, ...cpu, dir };
  }

  /** Checks a run's output: every segment present and complete, by name and size or in full. */
  async checkOutput(dir: string, full: boolean): Promise<void> {
    const { segNames } = this.setup.wal;
    const names = new Set<string>();
    for await (const e of Deno.readDir(dir)) names.add(e.name);
    const missing = segNames.filter((n) => !names.has(n));
    if (missing.length > 0) {
      throw new Error(
        `${dir}: ${missing.length} segments missing (${missing.slice(0, 3).join(", ")}…); ` +
          `found ${[...names].sort().join(", ")}`,
      );
    }
    for (const n of segNames) {
      const size = (await Deno.stat(join(dir, n))).size;
      if (size !== SEG_SIZE) throw new Error(`${dir}/${n}: ${size} bytes, not ${SEG_SIZE}`);
    }
    if (full) await assertSegmentsMatch(dir, this.setup.relayWal);
  }

  /** One pass over both arms in one sync mode; `round` 0 is a warm-up (not recorded). */
  async pass(round: number, sync: boolean, pgFirst: boolean): Promise<void> {
    const arms: Arm[] = pgFirst ? ["postgres", "walrelay"] : ["walrelay", "postgres"];
    const comparing = !this.#verifiedPair;
    const dirs: Partial<Record<Arm, string>> = {};
    for (const [i, arm] of arms.entries()) {
      const r = await this.receive(arm, sync);
      if (round > 0) {
        this.records.push({
          round,
          arm,
          sync,
          order: i + 1,
          wall_s: r.wall_s,
          mib_per_s: this.setup.totalMib / r.wall_s,
          sender_cpu_s: r.sender_cpu_s,
          client_cpu_s: r.client_cpu_s,
        });
      }
      await this.checkOutput(r.dir, comparing || this.opts.verify === "all");
      // Gone before the next run: a GiB of the previous run's files left on disk made whichever
      // sender ran second in a pass about 1 s slower with fsync (seen in both orders).
      if (comparing) dirs[arm] = r.dir;
      else await Deno.remove(r.dir, { recursive: true });
    }
    if (comparing) {
      await this.#comparePair(dirs.walrelay!, dirs.postgres!);
      for (const arm of arms) await Deno.remove(dirs[arm]!, { recursive: true });
    }
  }

  /** The relay's output against PostgreSQL's own, file by file, beyond both matching the source. */
  async #comparePair(relayDir: string, pgDir: string): Promise<void> {
    const c = await compareDirs(relayDir, pgDir, () => true);
    if (c.differ.length > 0 || c.onlyInA.length > 0 || c.onlyInB.length > 0) {
      throw new Error(`relay output differs from PostgreSQL's: ${JSON.stringify(c)}`);
    }
    const partials = c.same.filter((n) => n.endsWith(".partial")).length;
    this.verification = `${c.same.length} files (${partials} .partial) byte-identical between ` +
      `walrelay's and PostgreSQL's pg_receivewal output, and every segment identical to the source`;
    this.opts.log(`verified: ${this.verification}`);
    this.#verifiedPair = true;
  }
}

/** The table of one round's runs. */
function roundTable(records: ThroughputRecord[], round: number): string {
  const rows = records.filter((r) => r.round === round).map((r) => [
    r.arm,
    r.sync ? "fsync" : "no-sync",
    String(r.order),
    fixed(r.wall_s, 3),
    fixed(r.mib_per_s, 0),
    fixed(r.sender_cpu_s, 2),
    fixed(r.client_cpu_s, 2),
  ]);
  return table(
    ["sender", "mode", "order", "wall s", "MiB/s", "sender cpu s", "client cpu s"],
    rows,
  );
}

/** Medians of each arm in one sync mode, and their ratios. */
function summarizeMode(
  records: ThroughputRecord[],
  sync: boolean,
  rounds: number,
  totalMib: number,
): ModeSummary {
  const of = (arm: Arm): ArmSummary => {
    const rs = records.filter((r) => r.arm === arm && r.sync === sync);
    const walls = rs.map((r) => r.wall_s);
    return {
      median_wall_s: median(walls),
      min_wall_s: Math.min(...walls),
      max_wall_s: Math.max(...walls),
      median_mib_per_s: totalMib / median(walls),
      median_sender_cpu_s: median(rs.map((r) => r.sender_cpu_s)),
      median_client_cpu_s: median(rs.map((r) => r.client_cpu_s)),
    };
  };
  const p = of("postgres");
  const w = of("walrelay");
  // Per-round ratios show the spread that a ratio of medians hides.
  const perRound = Array.from({ length: rounds }, (_, i) => {
    const get = (arm: Arm): ThroughputRecord =>
      records.find((r) => r.round === i + 1 && r.arm === arm && r.sync === sync)!;
    return get("postgres").wall_s / get("walrelay").wall_s;
  });
  return {
    postgres: p,
    walrelay: w,
    ratios: {
      wall_time: p.median_wall_s / w.median_wall_s,
      wall_time_per_round_min: Math.min(...perRound),
      wall_time_per_round_max: Math.max(...perRound),
      sender_cpu: p.median_sender_cpu_s / w.median_sender_cpu_s,
    },
  };
}

/** The summary table: medians of each arm and the ratio row, for every sync mode. */
function summaryTable(summary: Record<string, ModeSummary>, totalMib: number): string {
  const rows: string[][] = [];
  for (const [mode, s] of Object.entries(summary)) {
    for (const arm of ["postgres", "walrelay"] as const) {
      const a = s[arm];
      rows.push([
        `${arm} (${mode})`,
        fixed(a.median_wall_s, 3),
        `${fixed(a.min_wall_s, 3)}–${fixed(a.max_wall_s, 3)}`,
        fixed(a.median_mib_per_s, 0),
        fixed(a.median_sender_cpu_s, 2),
        fixed(totalMib / a.median_sender_cpu_s, 0),
        fixed(a.median_client_cpu_s, 2),
      ]);
    }
    rows.push([
      `ratio pg/relay (${mode})`,
      fixed(s.ratios.wall_time, 2),
      `${fixed(s.ratios.wall_time_per_round_min, 2)}–${fixed(s.ratios.wall_time_per_round_max, 2)}`,
      "",
      fixed(s.ratios.sender_cpu, 2),
      "",
      "",
    ]);
  }
  return table(
    ["", "wall s", "range", "MiB/s", "sender cpu s", "MiB per cpu s", "client cpu s"],
    rows,
  );
}

/** Runs the single-client throughput comparison, prints its tables; returns its figures. */
export async function runThroughput(opts: ThroughputOptions): Promise<ThroughputReport> {
  const { log, sizeMb, rounds, syncModes } = opts;
  log(`\n== throughput: one pg_receivewal, ${sizeMb} MiB, PostgreSQL's walsender vs walrelay ==`);
  await using setup = await setUp(opts);
  const { wal, totalMib, relay } = setup;
  const clientCommand = (await setup.receiveArgs("postgres", "<empty dir>", true)).join(" ");
  log(`relay: ${setup.relayCommand}`);
  log(`client: ${clientCommand} [--no-sync]`);
  log(`        (the same against the relay, port ${relay.port}), each into a fresh directory`);
  log(`        seeded with an empty ${wal.segNames[0]}.partial so it starts at that segment`);

  const runs = new Runs(setup, opts);
  for (let w = 1; w <= opts.warmup; w++) {
    for (const sync of syncModes) await runs.pass(0, sync, w % 2 === 1);
    log(`warm-up ${w} done`);
  }
  const rssAfterRound: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    // Alternate which sender goes first, so drift (page cache, other tenants) hits both alike.
    for (const sync of syncModes) await runs.pass(round, sync, round % 2 === 1);
    rssAfterRound.push((await procMemory(relay.pid)).peak);
    log(`\nround ${round}/${rounds}`);
    log(roundTable(runs.records, round));
  }

  const relayMem = await procMemory(relay.pid);
  const summary: Record<string, ModeSummary> = {};
  for (const sync of syncModes) {
    summary[sync ? "fsync" : "no-sync"] = summarizeMode(runs.records, sync, rounds, totalMib);
  }
  log(`\nsummary: ${rounds} rounds, ${totalMib} MiB each run, medians`);
  log(summaryTable(summary, totalMib));
  const mb = (n: number): string => `${fixed(n / MIB, 1)} MiB`;
  log(
    `walrelay RSS: ${mb(setup.relayRssAtStart)} after start, peak (VmHWM) ${mb(relayMem.peak)}` +
      ` (after each round: ${rssAfterRound.map(mb).join(", ")})`,
  );
  log(
    `ratios are PostgreSQL / walrelay: wall time ≥ 1.0 means walrelay is at least as fast; ` +
      `sender cpu ≥ 1.0 means it uses at most as much CPU`,
  );

  const status = await relay.stop("SIGTERM", 10_000);
  if (opts.cpuProfDir !== undefined) {
    log(`relay exited (${status.code}); CPU profile in ${opts.cpuProfDir}`);
  }
  return {
    relay_command: setup.relayCommand,
    client_command: (await setup.receiveArgs("postgres", "<dir>", true)).join(" ") + " [--no-sync]",
    config: {
      size_mb: sizeMb,
      rounds,
      warmup: opts.warmup,
      sync: opts.sync,
      verify: opts.verify,
      relay_cli: opts.relayCli,
      cpu_prof: opts.cpuProfDir ?? null,
    },
    wal: {
      segments: wal.segNames.length,
      first: wal.segNames[0],
      last: wal.segNames.at(-1),
      bytes: wal.segNames.length * SEG_SIZE,
      end: formatLsn(wal.endLsn),
      endpos: formatLsn(wal.endLsn - 1n),
    },
    verification: runs.verification,
    summary,
    relay_rss: {
      after_start_bytes: setup.relayRssAtStart,
      peak_bytes: relayMem.peak,
      peak_after_each_round_bytes: rssAfterRound,
    },
    runs: runs.records,
  };
}
