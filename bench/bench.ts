/**
 * Sender benchmarks: PostgreSQL 15's own walsender and walrelay serve the same WAL, side by side
 * in one run, reported as figures and ratios (it never asserts a speed). Five suites, all run by
 * default; `--suite` picks some:
 *
 * ```
 * deno task bench [--suite all|throughput,latency,fanout,memory,relay_lag]
 *                 [--size-mb 1024] [--rounds 5] [--sync both|on|off] [--warmup 1]
 *                 [--verify first|all] [--relay-cli PATH] [--relay-v8-flags F] [--cpu-prof DIR]
 *                 [--latency-samples 300] [--latency-interval-ms 20] [--rescan-ms 1000]
 *                 [--fanout-clients 24,50] [--fanout-size-mb 128] [--fanout-rounds 3]
 *                 [--fanout-warmup 1] [--idle-clients 1000]
 *                 [--memory-workers 1,2]
 * ```
 *
 * - **throughput** (`throughput.ts`): one `pg_receivewal` against each sender, `--size-mb` of
 *   WAL, wall time, sender and client CPU, the relay's memory.
 * - **latency** (`latency.ts`): commit on a primary → `pg_receivewal --synchronous` → walrelay → a
 *   client, p50/p99 against the same client on the primary's walsender, with and without directory
 *   watching.
 * - **fanout** and **memory** (`fanout.ts`): 24, then 50 `pg_receivewal` at once through one relay
 *   against as many walsenders, the same WAL from a directory both have read before (a warm-up
 *   round first); the relay's RSS with 1000 idle and 50 streaming connections, beside what
 *   PostgreSQL holds for the same.
 * - **relay_lag** (`relay_lag.ts`, with its defaults): commit → visible on a standby fed through
 *   walrelay, against a standby fed directly and one fed by a cascading standby.
 * - **archive** (`archive.ts`, only when named): one and 24 `pg_receivewal` pulling from a plain,
 *   gzip, lz4 and zstd archive of the same WAL, beside `zcat`, `lz4 -dc`, `zstd -dc` on the files.
 * - **basebackup** (`basebackup.ts`, only when named): `pg_basebackup` of a pgbench database from
 *   the relay's store against the primary, alternating; the primary's cost of ten edge backups.
 *
 * Every relay runs with the V8 flags of `deno task start`, as a deployment runs it;
 * `--relay-v8-flags` gives others (`""`: V8's defaults).
 *
 * Everything measured goes into `bench/out/latest.json`: one key per suite, each with the command,
 * date and environment of the run that produced it (a run of some suites keeps the others' last
 * figures), and `last_run`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { pgBin, REPO_ROOT, run } from "../tests/_pg.ts";
import { type LatencyReport, runLatency } from "./latency.ts";
import {
  type FanoutReport,
  type FanoutWal,
  type MemoryReport,
  prepareFanoutWal,
  runFanout,
  runMemory,
} from "./fanout.ts";
import { type RelayLagSummary, runRelayLagBenchmark } from "./relay_lag.ts";
import { runThroughput, type ThroughputReport } from "./throughput.ts";
import { archiveHeadline, runArchive } from "./archive.ts";
import { baseBackupHeadline, runBaseBackupBench } from "./basebackup.ts";
import { loadAverage } from "./_proc.ts";
import { fixed, interruptOnSigint, intOption, mib, usageError } from "./_util.ts";

const SUITES = ["throughput", "latency", "fanout", "memory", "relay_lag"] as const;
/** Suites run only when named: `archive` generates, compresses and serves four archives. */
const EXTRA_SUITES = ["archive", "basebackup"] as const;

const USAGE = `deno task bench [options]

  --suite LIST       all (default), or a comma-separated list of ${SUITES.join(", ")},
                     or ${EXTRA_SUITES.join(", ")} (only when named)

throughput (one pg_receivewal against each sender):
  --size-mb N        WAL to generate and stream, in MiB (default 1024)
  --rounds N         timed rounds (default 5)
  --sync MODE        on: pg_receivewal fsyncs each segment (its default); off: --no-sync;
                     both: each mode every round (default both)
  --warmup N         untimed runs of each sender before the rounds (default 1)
  --verify MODE      first: compare the first runs' output byte for byte (relay vs PostgreSQL vs
                     the source segments), later runs by name and size; all: every run in full
                     (default first)
  --relay-cli PATH   the walrelay entry point to benchmark (default: this repository's cli.ts)
  --relay-v8-flags F every relay's V8 flags, comma-separated ("" for V8's defaults; default:
                     those of deno task start, as deployed)
  --workers N        the relay's --workers in the throughput, relay_lag, fanout and archive
                     suites (default: the relay's own default)
  --cpu-prof DIR     run the throughput and fan-out relays under deno --cpu-prof, writing the
                     profiles into DIR at exit (the fan-outs into DIR/fanout-N)

latency (commit → pg_receivewal --synchronous → relay → client):
  --latency-samples N      measured commits (default 300)
  --latency-interval-ms N  mean pause between commits (default 20)
  --rescan-ms N            rescan period of the relay without watching (default 1000)

fanout and memory (many pg_receivewal at once):
  --fanout-clients LIST     concurrent pg_receivewal, a fan-out for each count (default 24,50);
                           the memory suite streams to the largest
  --fanout-size-mb N       WAL each of them pulls, in MiB (default 128)
  --fanout-rounds N        timed fan-out rounds (default 3)
  --fanout-warmup N        untimed fan-out rounds before them (default 1)
  --idle-clients N         idle replication connections beside the streaming ones (default 1000)
  --memory-workers LIST    the relay's runs in the memory suite: --workers values, "default" for
                           the relay's own (default: 1,2)

archive (plain, gzip, lz4, zstd archives served; against zcat, lz4 -dc, zstd -dc):
  --archive-size-mb N      WAL to generate, compress and serve, in MiB (default 1024)
  --archive-clients N      pg_receivewal at once in the fan-out (default 24)
  --archive-fanout-mb N    WAL each fan-out client pulls, in MiB (default 128: within the
                           relay's default 256 MB cache, with room for its decoding ahead)

basebackup (pg_basebackup from the relay's store against the primary; --rounds applies):
  --basebackup-scale N     pgbench scale of the database (default 70, about 1 GB)
`;

/** The command line, checked. */
interface BenchConfig {
  suites: Set<string>;
  sizeMb: number;
  rounds: number;
  warmups: number;
  /** `--sync` as given, and the modes it means (true: pg_receivewal fsyncs). */
  sync: string;
  syncModes: boolean[];
  verify: "first" | "all";
  relayCli: string;
  /** `--relay-v8-flags`, when given. */
  relayV8Flags: string | undefined;
  /** Arguments every suite but memory and latency adds to the relay's (`--workers N`). */
  relayArgs: string[];
  cpuProfDir: string | undefined;
  latencySamples: number;
  latencyIntervalMs: number;
  rescanMs: number;
  /** Client counts of the fan-outs, one after another; the memory suite uses the largest. */
  fanoutClients: number[];
  fanoutSizeMb: number;
  fanoutRounds: number;
  fanoutWarmup: number;
  idleClients: number;
  memoryWorkers: string[];
  archiveSizeMb: number;
  archiveClients: number;
  archiveFanoutMb: number;
  basebackupScale: number;
}

/** Parses and checks the options; prints the usage and exits on `--help` or a bad value. */
function parseBenchArgs(args: string[]): BenchConfig {
  const { values: opts } = parseArgs({
    args,
    options: {
      "size-mb": { type: "string", default: "1024" },
      rounds: { type: "string", default: "5" },
      sync: { type: "string", default: "both" },
      warmup: { type: "string", default: "1" },
      verify: { type: "string", default: "first" },
      "relay-cli": { type: "string" },
      "relay-v8-flags": { type: "string" },
      workers: { type: "string" },
      "cpu-prof": { type: "string" },
      suite: { type: "string", default: "all" },
      "latency-samples": { type: "string", default: "300" },
      "latency-interval-ms": { type: "string", default: "20" },
      "rescan-ms": { type: "string", default: "1000" },
      "fanout-clients": { type: "string", default: "24,50" },
      "fanout-size-mb": { type: "string", default: "128" },
      "fanout-rounds": { type: "string", default: "3" },
      "fanout-warmup": { type: "string", default: "1" },
      "idle-clients": { type: "string", default: "1000" },
      "memory-workers": { type: "string", default: "1,2" },
      "archive-size-mb": { type: "string", default: "1024" },
      "archive-clients": { type: "string", default: "24" },
      "archive-fanout-mb": { type: "string", default: "128" },
      "basebackup-scale": { type: "string", default: "70" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (opts.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const int = intOption("bench", USAGE);
  const syncModes = opts.sync === "both"
    ? [true, false]
    : opts.sync === "on"
    ? [true]
    : opts.sync === "off"
    ? [false]
    : usageError("bench", `invalid --sync "${opts.sync}"`, USAGE);
  const verify = opts.verify;
  if (verify !== "first" && verify !== "all") {
    usageError("bench", `invalid --verify "${verify}"`, USAGE);
  }
  const suites = new Set<string>(
    opts.suite === "all" ? SUITES : opts.suite.split(",").map((x) => x.trim()).filter((x) => x),
  );
  for (const name of suites) {
    if (![...SUITES, ...EXTRA_SUITES].includes(name as typeof SUITES[number])) {
      usageError("bench", `unknown suite "${name}"`, USAGE);
    }
  }
  return {
    suites,
    sizeMb: int("size-mb", opts["size-mb"], 32),
    rounds: int("rounds", opts.rounds, 1),
    warmups: int("warmup", opts.warmup, 0),
    sync: opts.sync,
    syncModes,
    verify,
    relayCli: opts["relay-cli"] ?? join(REPO_ROOT, "cli.ts"),
    relayV8Flags: opts["relay-v8-flags"],
    relayArgs: opts.workers === undefined
      ? []
      : ["--workers", String(int("workers", opts.workers, 1))],
    cpuProfDir: opts["cpu-prof"],
    latencySamples: int("latency-samples", opts["latency-samples"], 10),
    latencyIntervalMs: int("latency-interval-ms", opts["latency-interval-ms"], 0),
    rescanMs: int("rescan-ms", opts["rescan-ms"], 10),
    fanoutClients: opts["fanout-clients"].split(",").map((x) => int("fanout-clients", x.trim(), 1)),
    fanoutSizeMb: int("fanout-size-mb", opts["fanout-size-mb"], 16),
    fanoutRounds: int("fanout-rounds", opts["fanout-rounds"], 1),
    fanoutWarmup: int("fanout-warmup", opts["fanout-warmup"], 0),
    idleClients: int("idle-clients", opts["idle-clients"], 0),
    memoryWorkers: opts["memory-workers"].split(",").map((x) => x.trim()).map((x) =>
      x === "default" ? x : String(int("memory-workers", x, 1))
    ),
    archiveSizeMb: int("archive-size-mb", opts["archive-size-mb"], 16),
    archiveClients: int("archive-clients", opts["archive-clients"], 1),
    archiveFanoutMb: int("archive-fanout-mb", opts["archive-fanout-mb"], 16),
    basebackupScale: int("basebackup-scale", opts["basebackup-scale"], 1),
  };
}

/** Where the run happened, for the header and the report. */
interface Environment {
  deno: string;
  postgres: string;
  cpus: number;
  cpu_model: string | undefined;
  load_average_at_start: string;
  /** V8 flags of the relays: the start task's, unless `--relay-v8-flags` gave others. */
  relay_v8_flags: string;
}

/**
 * Runs every relay the bench starts (through `DENO_V8_FLAGS`) with `flags`, by default those a
 * deployment runs it with (`deno task start` and `deno task compile` pass them), so the figures
 * are the deployed relay's. Returns the flags in force.
 */
async function useRelayV8Flags(flags: string | undefined): Promise<string> {
  if (flags === undefined) {
    const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
    flags = /--v8-flags=(\S+)/.exec(config.tasks.start)?.[1] ?? "";
  }
  // Deno refuses an empty flag: none at all means V8's defaults.
  if (flags === "") Deno.env.delete("DENO_V8_FLAGS");
  else Deno.env.set("DENO_V8_FLAGS", flags);
  return flags;
}

async function environment(relayV8Flags: string | undefined): Promise<Environment> {
  return {
    relay_v8_flags: await useRelayV8Flags(relayV8Flags),
    deno: Deno.version.deno,
    postgres: (await run([await pgBin("postgres"), "--version"])).stdout.trim(),
    cpus: navigator.hardwareConcurrency,
    cpu_model: /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1],
    load_average_at_start: await loadAverage(),
  };
}

function throughputHeadline(t: ThroughputReport): string[] {
  return Object.entries(t.summary).map(([mode, s]) =>
    `throughput (${mode}): wall time pg/relay ${fixed(s.ratios.wall_time)}, ` +
    `sender cpu pg/relay ${fixed(s.ratios.sender_cpu)}`
  );
}

function latencyHeadline(l: LatencyReport): string[] {
  return Object.entries(l.paths).map(([path, s]) =>
    `latency ${path}: p50 ${fixed(s.p50_ms)} ms, p99 ${fixed(s.p99_ms)} ms ` +
    `(n=${s.samples}${s.missing ? `, ${s.missing} missing` : ""})`
  );
}

function relayLagHeadline(r: RelayLagSummary): string[] {
  const lines = [
    `relay lag (commit → standby, via relay minus direct): added p50 ${
      fixed(r.median.added_p50_ms, 3)
    } ms, p99 ${fixed(r.median.added_p99_ms, 3)} ms` +
    (r.median.relay_sync_mean_ms === null
      ? ""
      : `; the relay's fdatasync ${fixed(r.median.relay_sync_mean_ms, 3)} ms on average`),
  ];
  const c = r.median.cascade;
  lines.push(
    `relay lag, relay CPU per commit: ${fixed(r.median.relay_cpu_us_per_commit, 0)} µs` +
      (c === null ? "" : ` against ${fixed(c.cpu_us_per_commit, 0)} µs for the cascading ` +
        `standby's walreceiver and walsender; cpu cascade/relay ${
          fixed(c.cpu_us_per_commit / r.median.relay_cpu_us_per_commit)
        }`),
  );
  const st = r.steady;
  if (st !== null) {
    lines.push(
      `relay lag, steady phase (${st.commits} commits, none polled): relay CPU per commit ` +
        `${fixed(st.relay_cpu_us_per_commit, 0)} µs` +
        (st.cascade_cpu_us_per_commit === null
          ? ""
          : ` against ${fixed(st.cascade_cpu_us_per_commit, 0)} µs; cpu cascade/relay ${
            fixed(st.cpu_cascade_over_relay ?? NaN)
          }`),
    );
  }
  if (r.floor !== null) {
    lines.push(
      `relay lag, bare Deno loop of the relay's system calls per commit: ` +
        `${fixed(r.floor.cpu_us_per_commit, 0)} µs` +
        (c === null
          ? ""
          : `; cpu cascade/floor ${fixed(c.cpu_us_per_commit / r.floor.cpu_us_per_commit)}`),
    );
  }
  if (c !== null) {
    lines.push(
      `relay lag, PostgreSQL cascading standby minus direct: added p50 ${
        fixed(c.added_p50_ms, 3)
      } ms, p99 ${fixed(c.added_p99_ms, 3)} ms; cascade / walrelay p50 ${
        fixed(c.vs_relay.p50)
      }, p99 ${fixed(c.vs_relay.p99)}`,
    );
  }
  if (r.relay_fsync.skipped === null) {
    lines.push(
      `relay WAL filesystem: fdatasync ${fixed(r.relay_fsync.fdatasync_us_per_op, 0)} µs/op ` +
        `(pg_test_fsync, ${r.relay_fsync.filesystem})`,
    );
  }
  return lines;
}

function fanoutHeadline(f: FanoutReport, clients: number, wal: FanoutWal): string {
  return `fan-out ${clients} × ${wal.totalMib} MiB: wall time pg/relay ` +
    `${fixed(f.summary.ratios.wall_time)} (${fixed(f.summary.postgres.median_wall_s, 2)} s / ` +
    `${fixed(f.summary.walrelay.median_wall_s, 2)} s), sender cpu pg/relay ` +
    `${fixed(f.summary.ratios.sender_cpu)} (${fixed(f.summary.postgres.median_sender_cpu_s)} s ` +
    `/ ${fixed(f.summary.walrelay.median_sender_cpu_s)} s)` +
    (f.summary.walrelay.median_block_cache_hit_rate === null
      ? ""
      : `, relay block cache hits ${
        fixed(f.summary.walrelay.median_block_cache_hit_rate * 100, 1)
      } %`);
}

function memoryHeadline(m: MemoryReport, idle: number, clients: number): string[] {
  const pg = m.postgres;
  return [
    ...m.relay.map((r) =>
      `relay RSS (workers ${r.workers}) with ${idle} idle + ${clients} streaming: ` +
      `${mib(r.rss_bytes.after_start)} MiB at start → ${mib(r.rss_bytes.with_idle)} idle → ` +
      `${mib(r.rss_bytes.streaming_peak)} streaming (peak) → ` +
      `${mib(r.rss_bytes.after_idle_closed)} after; VmHWM ${mib(r.hwm_bytes)} MiB ` +
      `(target ${mib(m.target_rss_bytes)}: ${r.target_met ? "met" : "NOT met"})`
    ),
    `PostgreSQL for the same: PSS ${mib(pg.pss_bytes.with_idle)} MiB idle, ` +
    `${mib(pg.pss_bytes.streaming_peak)} streaming (peak), ${pg.processes.streaming_peak} ` +
    `processes`,
  ];
}

/** Runs the chosen suites one after another; returns their figures and summary lines. */
async function runSuites(
  cfg: BenchConfig,
  log: (line: string) => void,
  checkInterrupted: () => void,
): Promise<{ results: Record<string, unknown>; headline: string[] }> {
  const results: Record<string, unknown> = {};
  const headline: string[] = [];
  const { suites } = cfg;
  if (suites.has("throughput")) {
    const t = await runThroughput({
      sizeMb: cfg.sizeMb,
      rounds: cfg.rounds,
      warmup: cfg.warmups,
      sync: cfg.sync,
      syncModes: cfg.syncModes,
      verify: cfg.verify,
      relayCli: cfg.relayCli,
      relayArgs: cfg.relayArgs,
      cpuProfDir: cfg.cpuProfDir,
      log,
      checkInterrupted,
    });
    results.throughput = t;
    headline.push(...throughputHeadline(t));
  }
  if (suites.has("latency")) {
    const l = await runLatency({
      samples: cfg.latencySamples,
      warmup: 20,
      intervalMs: cfg.latencyIntervalMs,
      rescanMs: cfg.rescanMs,
      log,
      checkInterrupted,
    });
    results.latency = l;
    headline.push(...latencyHeadline(l));
  }
  if (suites.has("relay_lag")) {
    const r = await runRelayLagBenchmark({ log, checkInterrupted, relayArgs: cfg.relayArgs });
    results.relay_lag = r;
    headline.push(...relayLagHeadline(r));
  }
  if (suites.has("fanout") || suites.has("memory")) {
    log(`\n== WAL for the fan-out and memory suites ==`);
    const most = Math.max(...cfg.fanoutClients);
    const fanoutOpts = {
      sizeMb: cfg.fanoutSizeMb,
      clients: most,
      rounds: cfg.fanoutRounds,
      warmup: cfg.fanoutWarmup,
      idleClients: cfg.idleClients,
      memoryWorkers: cfg.memoryWorkers,
      relayArgs: cfg.relayArgs,
      log,
      checkInterrupted,
    };
    // The memory suite holds its idle connections on the primary's walsenders too.
    const senders = suites.has("memory") ? most + cfg.idleClients : most;
    await using wal = await prepareFanoutWal(cfg.fanoutSizeMb, senders, log);
    if (suites.has("fanout")) {
      const byClients: Record<string, FanoutReport> = {};
      for (const clients of cfg.fanoutClients) {
        const cpuProfDir = cfg.cpuProfDir === undefined
          ? undefined
          : join(cfg.cpuProfDir, `fanout-${clients}`);
        const f = await runFanout(wal, { ...fanoutOpts, clients, cpuProfDir });
        byClients[clients] = f;
        headline.push(fanoutHeadline(f, clients, wal));
      }
      results.fanout = { by_clients: byClients };
    }
    if (suites.has("memory")) {
      const m = await runMemory(wal, fanoutOpts);
      results.memory = m;
      headline.push(...memoryHeadline(m, cfg.idleClients, most));
    }
  }
  if (suites.has("archive")) {
    const a = await runArchive({
      sizeMb: cfg.archiveSizeMb,
      clients: cfg.archiveClients,
      fanoutMb: cfg.archiveFanoutMb,
      relayCli: cfg.relayCli,
      relayArgs: cfg.relayArgs,
      log,
      checkInterrupted,
    });
    results.archive = a;
    headline.push(...archiveHeadline(a));
  }
  if (suites.has("basebackup")) {
    log(`\n== basebackup: pg_basebackup from the relay's store against the primary ==`);
    const b = await runBaseBackupBench({ scale: cfg.basebackupScale, rounds: cfg.rounds, log });
    results.basebackup = b;
    headline.push(baseBackupHeadline(b));
  }
  return { results, headline };
}

/** The run that writes the report: `last_run` in it. */
interface LastRun {
  command: string;
  date: string;
  duration_s: number;
  environment: Environment & { load_average_at_end: string };
  suites: string[];
}

/**
 * Merges the results into `bench/out/latest.json`. A run of some suites keeps the other suites'
 * figures from earlier runs; each suite carries the command, date and environment of the run that
 * produced it.
 */
async function writeReport(results: Record<string, unknown>, lastRun: LastRun): Promise<string> {
  const outDir = join(REPO_ROOT, "bench", "out");
  await Deno.mkdir(outDir, { recursive: true });
  const outFile = join(outDir, "latest.json");
  let previous: Record<string, unknown> = {};
  try {
    const old = JSON.parse(await Deno.readTextFile(outFile));
    if (old?.format === 2) previous = old;
  } catch { /* none yet, or the single-suite format of before */ }
  const report: Record<string, unknown> = { ...previous, format: 2, last_run: lastRun };
  for (const [name, result] of Object.entries(results)) {
    report[name] = {
      command: lastRun.command,
      date: lastRun.date,
      environment: lastRun.environment,
      ...(result as Record<string, unknown>),
    };
  }
  await Deno.writeTextFile(outFile, JSON.stringify(report, null, 2) + "\n");
  return outFile;
}

/** `deno task bench`: parses the options, runs the suites, prints the summary, writes the JSON. */
async function main(args: string[]): Promise<void> {
  const cfg = parseBenchArgs(args);
  using interrupt = interruptOnSigint("stopping after the current run");
  const commandLine = `deno run --allow-all bench/bench.ts ${args.join(" ")}`.trim();
  const log = (s: string): void => console.log(s);

  log(`walrelay sender benchmarks: ${[...cfg.suites].join(", ")}`);
  log(`command: ${commandLine}`);
  const env = await environment(cfg.relayV8Flags);
  log(
    `deno ${env.deno}, ${env.postgres}, ${env.cpus} cpus (${env.cpu_model}), ` +
      `load average ${env.load_average_at_start}`,
  );
  log(`relays run with V8 flags: ${env.relay_v8_flags || "(V8's defaults)"}`);

  const tStart = performance.now();
  const { results, headline } = await runSuites(cfg, log, interrupt.check);
  const loadAtEnd = await loadAverage();
  const elapsed = (performance.now() - tStart) / 1000;

  log(`\n== summary (${[...cfg.suites].join(", ")}; ${fixed(elapsed, 0)} s) ==`);
  for (const line of headline) log(line);
  log(
    `ratios are PostgreSQL / walrelay: ≥ 1.0 means walrelay is at least as fast, or uses at most ` +
      `as much CPU; load average ${env.load_average_at_start} at start, ${loadAtEnd} at end`,
  );
  const outFile = await writeReport(results, {
    command: commandLine,
    date: new Date().toISOString(),
    duration_s: elapsed,
    environment: { ...env, load_average_at_end: loadAtEnd },
    suites: [...cfg.suites],
  });
  log(`wrote ${outFile}`);
}

if (import.meta.main) await main(Deno.args);
