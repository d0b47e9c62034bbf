/**
 * Sender benchmarks: PostgreSQL 15's own walsender and walrelay serve the same WAL, side by side
 * in one run, reported as figures and ratios (it never asserts a speed). Four suites, all run by
 * default (about 4 minutes on 2 cores); `--suite` picks some:
 *
 * ```
 * deno task bench [--suite all|throughput,latency,fanout,memory,relay_lag]
 *                 [--size-mb 1024] [--rounds 5] [--sync both|on|off] [--warmup 1]
 *                 [--verify first|all] [--relay-cli PATH] [--cpu-prof DIR]
 *                 [--latency-samples 300] [--latency-interval-ms 20] [--rescan-ms 1000]
 *                 [--fanout-clients 50] [--fanout-size-mb 128] [--fanout-rounds 3]
 *                 [--fanout-warmup 1] [--idle-clients 200]
 * ```
 *
 * **throughput** (one client, this file):
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
 * **latency** (`latency.ts`): commit on a primary → `pg_receivewal --synchronous` → walrelay → a
 * client, p50/p99 against the same client on the primary's walsender, with and without directory
 * watching. **fanout** and **memory** (`fanout.ts`): 50 `pg_receivewal` at once through one relay
 * against 50 walsenders; the relay's RSS with 200 idle and 50 streaming connections.
 *
 * Everything measured goes into `bench/out/latest.json`: one key per suite, each with the command,
 * date and environment of the run that produced it (a run of some suites keeps the others' last
 * figures), and `last_run`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  assertSegmentsMatch,
  type BackgroundProcess,
  compareDirs,
  delay,
  freePort,
  pgBin,
  REPO_ROOT,
  run,
  runOk,
  spawnBackground,
  startPrimary,
  startRelay,
  tempDir,
  waitFor,
} from "../tests/_pg.ts";
import { runLatency } from "./latency.ts";
import { prepareFanoutWal, runFanout, runMemory } from "./fanout.ts";
import {
  childPids,
  fixed,
  formatLsn,
  generateWal,
  loadAverage,
  median,
  procCpu,
  procMemory,
  table,
} from "./_util.ts";
import { runRelayLagBenchmark } from "./relay_lag.ts";

const SEG_SIZE = 16 * 1024 * 1024;
const MIB = 1024 * 1024;

/** The two senders compared. */
type Arm = "postgres" | "walrelay";

/** One timed `pg_receivewal` run. */
interface RunRecord {
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
interface ArmSummary {
  median_wall_s: number;
  min_wall_s: number;
  max_wall_s: number;
  median_mib_per_s: number;
  median_sender_cpu_s: number;
  median_client_cpu_s: number;
}

const SUITES = ["throughput", "latency", "fanout", "memory", "relay_lag"] as const;

const USAGE = `deno task bench [options]

  --suite LIST       all (default), or a comma-separated list of ${SUITES.join(", ")}

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
  --cpu-prof DIR     run the relay under deno --cpu-prof, writing the profile into DIR at exit

latency (commit → pg_receivewal --synchronous → relay → client):
  --latency-samples N      measured commits (default 300)
  --latency-interval-ms N  mean pause between commits (default 20)
  --rescan-ms N            rescan period of the relay without watching (default 1000)

fanout and memory (many pg_receivewal at once):
  --fanout-clients N       concurrent pg_receivewal (default 50)
  --fanout-size-mb N       WAL each of them pulls, in MiB (default 128)
  --fanout-rounds N        timed fan-out rounds (default 3)
  --fanout-warmup N        untimed fan-out rounds before them (default 1)
  --idle-clients N         idle replication connections beside the streaming ones (default 200)
`;

function positiveInt(name: string, text: string, min = 1): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    console.error(`bench: invalid --${name} "${text}"\n\n${USAGE}`);
    Deno.exit(2);
  }
  return n;
}

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    "size-mb": { type: "string", default: "1024" },
    rounds: { type: "string", default: "5" },
    sync: { type: "string", default: "both" },
    warmup: { type: "string", default: "1" },
    verify: { type: "string", default: "first" },
    "relay-cli": { type: "string" },
    "cpu-prof": { type: "string" },
    suite: { type: "string", default: "all" },
    "latency-samples": { type: "string", default: "300" },
    "latency-interval-ms": { type: "string", default: "20" },
    "rescan-ms": { type: "string", default: "1000" },
    "fanout-clients": { type: "string", default: "50" },
    "fanout-size-mb": { type: "string", default: "128" },
    "fanout-rounds": { type: "string", default: "3" },
    "fanout-warmup": { type: "string", default: "1" },
    "idle-clients": { type: "string", default: "200" },
    help: { type: "boolean", short: "h" },
  },
  strict: true,
});
if (opts.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const sizeMb = positiveInt("size-mb", opts["size-mb"], 32);
const rounds = positiveInt("rounds", opts.rounds);
const warmups = positiveInt("warmup", opts.warmup, 0);
const syncModes: boolean[] = opts.sync === "both"
  ? [true, false]
  : opts.sync === "on"
  ? [true]
  : opts.sync === "off"
  ? [false]
  : (() => {
    console.error(`bench: invalid --sync "${opts.sync}"\n\n${USAGE}`);
    Deno.exit(2);
  })();
if (opts.verify !== "first" && opts.verify !== "all") {
  console.error(`bench: invalid --verify "${opts.verify}"\n\n${USAGE}`);
  Deno.exit(2);
}
const relayCli = opts["relay-cli"] ?? join(REPO_ROOT, "cli.ts");
const cpuProfDir = opts["cpu-prof"];
const suites = new Set<string>(
  opts.suite === "all" ? SUITES : opts.suite.split(",").map((x) => x.trim()).filter((x) => x),
);
for (const name of suites) {
  if (!(SUITES as readonly string[]).includes(name)) {
    console.error(`bench: unknown suite "${name}"\n\n${USAGE}`);
    Deno.exit(2);
  }
}
const latencySamples = positiveInt("latency-samples", opts["latency-samples"], 10);
const latencyIntervalMs = positiveInt("latency-interval-ms", opts["latency-interval-ms"], 0);
const rescanMs = positiveInt("rescan-ms", opts["rescan-ms"], 10);
const fanoutClients = positiveInt("fanout-clients", opts["fanout-clients"]);
const fanoutSizeMb = positiveInt("fanout-size-mb", opts["fanout-size-mb"], 16);
const fanoutRounds = positiveInt("fanout-rounds", opts["fanout-rounds"]);
const fanoutWarmup = positiveInt("fanout-warmup", opts["fanout-warmup"], 0);
const idleClients = positiveInt("idle-clients", opts["idle-clients"], 0);

// A Ctrl-C between runs unwinds through the `await using` disposals (servers, relay, temp dirs)
// instead of leaving a PostgreSQL server behind.
let interrupted = false;
Deno.addSignalListener("SIGINT", () => {
  if (interrupted) Deno.exit(130);
  interrupted = true;
  console.error("\ninterrupted: stopping after the current run (Ctrl-C again to exit at once)");
});
function checkInterrupted(): void {
  if (interrupted) throw new Error("interrupted");
}

const commandLine = `deno run --allow-all bench/bench.ts ${Deno.args.join(" ")}`.trim();
const log = (s: string): void => console.log(s);

log(`walrelay sender benchmarks: ${[...suites].join(", ")}`);
log(`command: ${commandLine}`);

const pgVersion = (await run([await pgBin("postgres"), "--version"])).stdout.trim();
const cpuModel = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1];
const loadAtStart = await loadAverage();
log(
  `deno ${Deno.version.deno}, ${pgVersion}, ${navigator.hardwareConcurrency} cpus (${cpuModel}), ` +
    `load average ${loadAtStart}`,
);

/** Runs the single-client throughput comparison (the original benchmark); returns its figures. */
async function runThroughput(): Promise<Record<string, unknown>> {
  log(`\n== throughput: one pg_receivewal, ${sizeMb} MiB, PostgreSQL's walsender vs walrelay ==`);
  await using work = await tempDir("walrelay-bench-");
  await using pg = await startPrimary({
    walSegSize: 16,
    conf: {
      // Everything written must stay in pg_wal for the walsender to serve it.
      wal_keep_size: `${sizeMb * 2 + 1024}MB`,
      max_wal_size: `${sizeMb * 2 + 1024}MB`,
      checkpoint_timeout: "1h",
      wal_compression: "off",
      max_wal_senders: 10,
      // A quiet server: the walsender's CPU is read from the postmaster's reaped-children time,
      // which autovacuum workers would add to.
      autovacuum: "off",
      shared_buffers: "256MB",
      wal_buffers: "16MB",
      synchronous_commit: "off",
    },
  });

  // ---------------------------------------------------------------------------------------------
  // 1. Generate WAL

  const { startLsn, currentLsn, segNames, endLsn, seconds } = await generateWal(
    pg,
    sizeMb,
    SEG_SIZE,
  );
  const totalBytes = segNames.length * SEG_SIZE;
  const totalMib = totalBytes / MIB;
  log(
    `generated WAL ${formatLsn(startLsn)} .. ${formatLsn(currentLsn)} in ` +
      `${fixed(seconds, 1)} s; streaming ${segNames.length} segments ` +
      `${segNames[0]} .. ${segNames.at(-1)} (${totalMib} MiB) ending at ${formatLsn(endLsn)}`,
  );

  // ---------------------------------------------------------------------------------------------
  // 2. Copy the complete segments and start the relay

  const relayWal = join(work.path, "relay-wal");
  await Deno.mkdir(relayWal);
  for (const name of segNames) await Deno.copyFile(join(pg.walDir, name), join(relayWal, name));

  const relayArgs = ["--log-format", "text"];
  await using relay = cpuProfDir === undefined
    ? await startRelay({ walDir: relayWal, cli: relayCli, args: relayArgs })
    : await startProfiledRelay(relayWal, relayCli, relayArgs, cpuProfDir);
  const relayCommand = cpuProfDir === undefined
    ? `deno run -A ${relayCli} serve --wal-dir ${relayWal} --listen 127.0.0.1:${relay.port} ${
      relayArgs.join(" ")
    }`
    : `deno run --cpu-prof --cpu-prof-dir=${cpuProfDir} -A ${relayCli} serve --wal-dir ${relayWal} ` +
      `--listen 127.0.0.1:${relay.port} ${relayArgs.join(" ")}`;
  const relayRssAtStart = await procMemory(relay.pid);
  const postmasterPid = Number(
    (await Deno.readTextFile(join(pg.dataDir, "postmaster.pid"))).split("\n")[0],
  );

  const receivewal = await pgBin("pg_receivewal");
  const conninfo: Record<Arm, string> = {
    postgres: `host=127.0.0.1 port=${pg.port} user=postgres`,
    walrelay: `host=127.0.0.1 port=${relay.port} user=postgres`,
  };
  const receiveArgs = (arm: Arm, dir: string, sync: boolean): string[] => [
    receivewal,
    "-d",
    conninfo[arm],
    "-D",
    dir,
    "-n",
    "-w",
    // pg_receivewal stops once a position *exceeds* endpos (`endpos < xlogpos`): with endpos at the
    // very end of what the relay holds it would wait forever for one more byte. One byte less
    // stops it exactly at the end of the last segment, which it completes and renames.
    `--endpos=${formatLsn(endLsn - 1n)}`,
    ...(sync ? [] : ["--no-sync"]),
  ];
  log(`relay: ${relayCommand}`);
  log(`client: ${receiveArgs("postgres", "<empty dir>", true).join(" ")} [--no-sync]`);
  log(`        (the same against the relay, port ${relay.port}), each into a fresh directory`);
  log(`        seeded with an empty ${segNames[0]}.partial so it starts at that segment`);

  // ---------------------------------------------------------------------------------------------
  // 3. The runs

  let runCounter = 0;

  /** Streams everything once from `arm` into a fresh directory; returns the figures and the dir. */
  async function receive(arm: Arm, sync: boolean): Promise<
    { wall_s: number; sender_cpu_s: number; client_cpu_s: number; dir: string }
  > {
    checkInterrupted();
    const dir = join(work.path, `recv-${++runCounter}-${arm}`);
    await Deno.mkdir(dir);
    await Deno.writeFile(join(dir, `${segNames[0]}.partial`), new Uint8Array());
    // Start each run with no dirty pages anywhere, so write-back of earlier work (ours or another
    // tenant's) does not land on whichever run happens to be next.
    await runOk(["sync"]);
    const before = {
      pmChildren: new Set(await childPids(postmasterPid)),
      pm: await procCpu(postmasterPid),
      relay: await procCpu(relay.pid),
      self: await procCpu("self"),
    };
    const t = performance.now();
    const r = await run(receiveArgs(arm, dir, sync), { timeoutMs: 120_000 + sizeMb * 200 });
    const wall_s = (performance.now() - t) / 1000;
    if (!r.success) {
      throw new Error(`pg_receivewal against ${arm} failed (${r.code}):\n${r.stdout}${r.stderr}`);
    }
    let sender_cpu_s: number;
    if (arm === "postgres") {
      // The walsender's CPU reaches the postmaster's cutime only when the postmaster reaps it: wait
      // until every child that was not there before the run (the walsender) is gone, zombies
      // included (a zombie is still listed among the children, with an empty cmdline).
      await waitFor(
        async () => (await childPids(postmasterPid)).every((p) => before.pmChildren.has(p)),
        {
          timeoutMs: 10_000,
          intervalMs: 10,
          message: "the walsender was not reaped",
        },
      );
      sender_cpu_s = (await procCpu(postmasterPid)).children - before.pm.children;
    } else {
      // Let the session finish its goodbye (CopyDone, close) so its CPU is counted too.
      await delay(100);
      sender_cpu_s = (await procCpu(relay.pid)).self - before.relay.self;
    }
    const client_cpu_s = (await procCpu("self")).children - before.self.children;
    return { wall_s, sender_cpu_s, client_cpu_s, dir };
  }

  /** Checks a run's output: every segment present and complete, by name and size or in full. */
  async function checkOutput(dir: string, full: boolean): Promise<void> {
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
    if (full) await assertSegmentsMatch(dir, relayWal);
  }

  const records: RunRecord[] = [];
  let verifiedPair = false;
  let verification = "";

  /** One pass over both arms in one sync mode; `round` 0 is a warm-up (not recorded). */
  async function pass(round: number, sync: boolean, pgFirst: boolean): Promise<void> {
    const arms: Arm[] = pgFirst ? ["postgres", "walrelay"] : ["walrelay", "postgres"];
    const comparing = !verifiedPair;
    const dirs: Partial<Record<Arm, string>> = {};
    for (const [i, arm] of arms.entries()) {
      const r = await receive(arm, sync);
      if (round > 0) {
        records.push({
          round,
          arm,
          sync,
          order: i + 1,
          wall_s: r.wall_s,
          mib_per_s: totalMib / r.wall_s,
          sender_cpu_s: r.sender_cpu_s,
          client_cpu_s: r.client_cpu_s,
        });
      }
      await checkOutput(r.dir, comparing || opts.verify === "all");
      // Gone before the next run: a GiB of the previous run's files left on disk made whichever
      // sender ran second in a pass about 1 s slower with fsync (seen in both orders).
      if (comparing) dirs[arm] = r.dir;
      else await Deno.remove(r.dir, { recursive: true });
    }
    if (comparing) {
      // The relay's output against PostgreSQL's own, file by file, beyond both matching the source.
      const c = await compareDirs(dirs.walrelay!, dirs.postgres!, () => true);
      if (c.differ.length > 0 || c.onlyInA.length > 0 || c.onlyInB.length > 0) {
        throw new Error(`relay output differs from PostgreSQL's: ${JSON.stringify(c)}`);
      }
      const partials = c.same.filter((n) => n.endsWith(".partial")).length;
      verification = `${c.same.length} files (${partials} .partial) byte-identical between ` +
        `walrelay's and PostgreSQL's pg_receivewal output, and every segment identical to the source`;
      log(`verified: ${verification}`);
      verifiedPair = true;
      for (const arm of arms) await Deno.remove(dirs[arm]!, { recursive: true });
    }
  }

  for (let w = 1; w <= warmups; w++) {
    for (const sync of syncModes) await pass(0, sync, w % 2 === 1);
    log(`warm-up ${w} done`);
  }

  const rssAfterRound: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    // Alternate which sender goes first, so drift (page cache, other tenants) hits both alike.
    for (const sync of syncModes) await pass(round, sync, round % 2 === 1);
    rssAfterRound.push((await procMemory(relay.pid)).peak);
    const rows = records.filter((r) => r.round === round).map((r) => [
      r.arm,
      r.sync ? "fsync" : "no-sync",
      String(r.order),
      fixed(r.wall_s, 3),
      fixed(r.mib_per_s, 0),
      fixed(r.sender_cpu_s, 2),
      fixed(r.client_cpu_s, 2),
    ]);
    log(`\nround ${round}/${rounds}`);
    log(
      table(["sender", "mode", "order", "wall s", "MiB/s", "sender cpu s", "client cpu s"], rows),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // 4. Summary

  const relayMem = await procMemory(relay.pid);
  const summary: Record<string, Record<Arm, ArmSummary> & { ratios: Record<string, number> }> = {};
  const summaryRows: string[][] = [];
  for (const sync of syncModes) {
    const mode = sync ? "fsync" : "no-sync";
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
      const get = (arm: Arm) =>
        records.find((r) => r.round === i + 1 && r.arm === arm && r.sync === sync)!;
      return get("postgres").wall_s / get("walrelay").wall_s;
    });
    const ratios = {
      wall_time: p.median_wall_s / w.median_wall_s,
      wall_time_per_round_min: Math.min(...perRound),
      wall_time_per_round_max: Math.max(...perRound),
      sender_cpu: p.median_sender_cpu_s / w.median_sender_cpu_s,
    };
    summary[mode] = { postgres: p, walrelay: w, ratios };
    for (const [arm, s] of [["postgres", p], ["walrelay", w]] as const) {
      summaryRows.push([
        `${arm} (${mode})`,
        fixed(s.median_wall_s, 3),
        `${fixed(s.min_wall_s, 3)}–${fixed(s.max_wall_s, 3)}`,
        fixed(s.median_mib_per_s, 0),
        fixed(s.median_sender_cpu_s, 2),
        fixed(totalMib / s.median_sender_cpu_s, 0),
        fixed(s.median_client_cpu_s, 2),
      ]);
    }
    summaryRows.push([
      `ratio pg/relay (${mode})`,
      fixed(ratios.wall_time, 2),
      `${fixed(ratios.wall_time_per_round_min, 2)}–${fixed(ratios.wall_time_per_round_max, 2)}`,
      "",
      fixed(ratios.sender_cpu, 2),
      "",
      "",
    ]);
  }

  log(`\nsummary: ${rounds} rounds, ${totalMib} MiB each run, medians`);
  log(table(
    [
      "",
      "wall s",
      "range",
      "MiB/s",
      "sender cpu s",
      "MiB per cpu s",
      "client cpu s",
    ],
    summaryRows,
  ));
  const mb = (n: number): string => `${fixed(n / MIB, 1)} MiB`;
  log(
    `walrelay RSS: ${mb(relayRssAtStart.current)} after start, peak (VmHWM) ${mb(relayMem.peak)}` +
      ` (after each round: ${rssAfterRound.map(mb).join(", ")})`,
  );
  log(
    `ratios are PostgreSQL / walrelay: wall time ≥ 1.0 means walrelay is at least as fast; ` +
      `sender cpu ≥ 1.0 means it uses at most as much CPU`,
  );

  const status = await relay.stop("SIGTERM", 10_000);
  if (cpuProfDir !== undefined) log(`relay exited (${status.code}); CPU profile in ${cpuProfDir}`);
  return {
    relay_command: relayCommand,
    client_command: receiveArgs("postgres", "<dir>", true).join(" ") + " [--no-sync]",
    config: {
      size_mb: sizeMb,
      rounds,
      warmup: warmups,
      sync: opts.sync,
      verify: opts.verify,
      relay_cli: relayCli,
      cpu_prof: cpuProfDir ?? null,
    },
    wal: {
      segments: segNames.length,
      first: segNames[0],
      last: segNames.at(-1),
      bytes: totalBytes,
      end: formatLsn(endLsn),
      endpos: formatLsn(endLsn - 1n),
    },
    verification,
    summary,
    relay_rss: {
      after_start_bytes: relayRssAtStart.current,
      peak_bytes: relayMem.peak,
      peak_after_each_round_bytes: rssAfterRound,
    },
    runs: records,
  };
}

// ---------------------------------------------------------------------------------------------
// The suites, one after another

const results: Record<string, unknown> = {};
const headline: string[] = [];
const tStart = performance.now();
if (suites.has("throughput")) {
  const t = await runThroughput() as {
    summary: Record<string, { ratios: { wall_time: number; sender_cpu: number } }>;
  };
  results.throughput = t;
  for (const [mode, s] of Object.entries(t.summary)) {
    headline.push(
      `throughput (${mode}): wall time pg/relay ${fixed(s.ratios.wall_time)}, ` +
        `sender cpu pg/relay ${fixed(s.ratios.sender_cpu)}`,
    );
  }
}
if (suites.has("latency")) {
  const l = await runLatency({
    samples: latencySamples,
    warmup: 20,
    intervalMs: latencyIntervalMs,
    rescanMs,
    log,
    checkInterrupted,
  });
  results.latency = l;
  for (const [path, s] of Object.entries(l.paths)) {
    headline.push(
      `latency ${path}: p50 ${fixed(s.p50_ms)} ms, p99 ${fixed(s.p99_ms)} ms ` +
        `(n=${s.samples}${s.missing ? `, ${s.missing} missing` : ""})`,
    );
  }
}
if (suites.has("relay_lag")) {
  const r = await runRelayLagBenchmark({ log });
  results.relay_lag = r;
  headline.push(
    `relay lag (commit → standby, via relay minus direct): added p50 ${
      fixed(r.median.added_p50_ms, 3)
    } ms, p99 ${fixed(r.median.added_p99_ms, 3)} ms`,
  );
  const c = r.median.cascade;
  if (c !== null) {
    headline.push(
      `relay lag, PostgreSQL cascading standby minus direct: added p50 ${
        fixed(c.added_p50_ms, 3)
      } ms, p99 ${fixed(c.added_p99_ms, 3)} ms; cascade / walrelay p50 ${
        fixed(c.vs_relay.p50)
      }, p99 ${fixed(c.vs_relay.p99)}`,
    );
  }
  if (r.relay_fsync.skipped === null) {
    headline.push(
      `relay WAL filesystem: fdatasync ${fixed(r.relay_fsync.fdatasync_us_per_op, 0)} µs/op ` +
        `(pg_test_fsync, ${r.relay_fsync.filesystem})`,
    );
  }
}
if (suites.has("fanout") || suites.has("memory")) {
  log(`\n== WAL for the fan-out and memory suites ==`);
  const fanoutOpts = {
    sizeMb: fanoutSizeMb,
    clients: fanoutClients,
    rounds: fanoutRounds,
    warmup: fanoutWarmup,
    idleClients,
    log,
    checkInterrupted,
  };
  await using wal = await prepareFanoutWal(fanoutSizeMb, fanoutClients, log);
  if (suites.has("fanout")) {
    const f = await runFanout(wal, fanoutOpts);
    results.fanout = f;
    headline.push(
      `fan-out ${fanoutClients} × ${wal.totalMib} MiB: wall time pg/relay ` +
        `${fixed(f.summary.ratios.wall_time)} (${fixed(f.summary.postgres.median_wall_s, 2)} s / ` +
        `${fixed(f.summary.walrelay.median_wall_s, 2)} s), sender cpu pg/relay ` +
        `${fixed(f.summary.ratios.sender_cpu)} (${
          fixed(f.summary.postgres.median_sender_cpu_s)
        } s ` +
        `/ ${fixed(f.summary.walrelay.median_sender_cpu_s)} s)`,
    );
  }
  if (suites.has("memory")) {
    const m = await runMemory(wal, fanoutOpts);
    results.memory = m;
    const mib = (n: number): string => fixed(n / (1024 * 1024), 1);
    headline.push(
      `relay RSS with ${idleClients} idle + ${fanoutClients} streaming: ` +
        `${mib(m.rss_bytes.after_start)} MiB at start → ${mib(m.rss_bytes.with_idle)} idle → ` +
        `${mib(m.rss_bytes.streaming_peak)} streaming (peak) → ` +
        `${mib(m.rss_bytes.after_idle_closed)} after; VmHWM ${mib(m.hwm_bytes)} MiB`,
    );
  }
}
const loadAtEnd = await loadAverage();
const elapsed = (performance.now() - tStart) / 1000;

log(`\n== summary (${[...suites].join(", ")}; ${fixed(elapsed, 0)} s) ==`);
for (const line of headline) log(line);
log(
  `ratios are PostgreSQL / walrelay: ≥ 1.0 means walrelay is at least as fast, or uses at most ` +
    `as much CPU; load average ${loadAtStart} at start, ${loadAtEnd} at end`,
);

const outDir = join(REPO_ROOT, "bench", "out");
await Deno.mkdir(outDir, { recursive: true });
const outFile = join(outDir, "latest.json");
const lastRun = {
  command: commandLine,
  date: new Date().toISOString(),
  duration_s: elapsed,
  environment: {
    deno: Deno.version.deno,
    postgres: pgVersion,
    cpus: navigator.hardwareConcurrency,
    cpu_model: cpuModel,
    load_average_at_start: loadAtStart,
    load_average_at_end: loadAtEnd,
  },
  suites: [...suites],
};
// A run of some suites keeps the other suites' figures from earlier runs; each suite carries the
// command, date and environment of the run that produced it.
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
log(`wrote ${join(outDir, "latest.json")}`);

/**
 * `startRelay` with `deno run --cpu-prof`: the harness runs `deno run -A` without extra deno flags,
 * so this spawns the same command line with the profiler on and waits for the port.
 */
async function startProfiledRelay(
  walDir: string,
  cli: string,
  args: string[],
  profDir: string,
): Promise<BackgroundProcess & { port: number }> {
  await Deno.mkdir(profDir, { recursive: true });
  const port = await freePort();
  const proc = await spawnBackground([
    Deno.execPath(),
    "run",
    "--cpu-prof",
    `--cpu-prof-dir=${profDir}`,
    "-A",
    cli,
    "serve",
    "--wal-dir",
    walDir,
    "--listen",
    `127.0.0.1:${port}`,
    ...args,
  ], { cwd: REPO_ROOT, env: { NO_COLOR: "1" } });
  try {
    await waitFor(async () => {
      if (proc.exited) throw new Error(`relay exited:\n${proc.stderr()}`);
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    }, { timeoutMs: 20_000, message: "the profiled relay did not listen" });
  } catch (e) {
    await proc[Symbol.asyncDispose]();
    throw e;
  }
  return Object.assign(proc, { port });
}
