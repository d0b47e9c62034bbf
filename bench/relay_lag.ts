/**
 * Relay lag benchmark (issue 4): the lag a relay adds between a commit on the primary and its
 * visibility on a standby fed through it, against a standby fed by the primary directly.
 *
 * ```
 * deno run -A bench/relay_lag.ts [--commits 1000] [--rounds 3] [--warmup 50]
 *                                [--interval-ms 5] [--seg-mb 16] [--probe lsn|row]
 *                                [--poll-from ack|send]
 *                                [--relay-cli PATH] [--cpu-prof DIR]
 *                                [--relay-wal-parent DIR] [--out FILE]
 * ```
 *
 * Setup: one PostgreSQL 15 primary (`wal_level = replica`, `synchronous_commit = on`, no
 * synchronous standbys) and a walrelay in relay mode following it (`cli.ts serve --upstream`).
 * Two hot standbys from base backups of the primary: **A** streams from the primary, **B** from
 * the relay; both with `recovery_min_apply_delay = 0` and `wal_receiver_status_interval = 1s`.
 *
 * Each commit is one autocommit `INSERT INTO relay_lag VALUES (i, now())` through a persistent
 * in-process connection to the primary ({@linkcode PgClient}, simple query protocol). Two more
 * in-process connections, one per standby, poll in tight loops (one query in flight per standby,
 * the next sent as soon as the answer arrives):
 *
 * - `--probe lsn` (default): `SELECT pg_last_wal_replay_lsn()`, compared in this process with the
 *   primary's `pg_current_wal_flush_lsn()` read right after the commit returned (≥ the end of
 *   the commit record; every answer is kept, so one that came before the target was known
 *   counts);
 * - `--probe row`: `SELECT 1 FROM relay_lag WHERE id = i`, visibility itself (a costlier query).
 *
 * Polling starts once the INSERT returned (`--poll-from ack`, default) or as it is sent
 * (`--poll-from send`). On two shared cores the polls compete with what they measure; starting at
 * the return spares the primary's WAL flush that competition, and the direct standby has rarely
 * replayed a commit by then (its own walreceiver flushes first), which the `polls` column shows.
 *
 * A standby's visibility time is the arrival of the first answer that shows the row (or an LSN at
 * or past the commit's). The lag of a commit on a standby is that time minus the time the commit
 * returned to the writer ("from send": minus the time the INSERT was sent). On A it can be
 * slightly negative: the walsender is woken by the WAL flush, before the backend answers its
 * client. The resolution is one poll round trip, reported as `poll rtt`. The added lag is B − A:
 * both as differences of percentiles (p50 and p99 of B minus those of A) and as the percentiles
 * of the per-commit differences (B − A of the same commit).
 *
 * Between commits the writer pauses a random [0.5, 1.5] × `--interval-ms`, after both standbys
 * saw the commit, so commits do not queue behind each other. Each round is `--commits` commits;
 * the summary gives the medians of the per-round figures and the percentiles of all commits
 * pooled. It prints figures and never asserts a time. The relay's CPU (utime + stime) per round
 * is read from `/proc`.
 *
 * Used by `bench.ts` through {@linkcode runRelayLagBenchmark}; run alone, it writes its JSON into
 * `bench/out/relay_lag.json` (or `--out FILE`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  type BackgroundProcess,
  basebackup,
  delay,
  freePort,
  type PgCluster,
  REPO_ROOT,
  spawnBackground,
  startPrimary,
  startStandby,
  tempDir,
  waitFor,
} from "../tests/_pg.ts";
import { PgClient } from "../lib/pgwire/client.ts";
import {
  fixed,
  formatLsn,
  loadAverage,
  median,
  parseLsn,
  percentile,
  procCpu,
  procMemory,
  table,
} from "./_util.ts";

/** How a standby is asked whether it shows a commit. */
export type RelayLagProbe = "row" | "lsn";

/** Options of {@linkcode runRelayLagBenchmark}; every field has a default. */
export interface RelayLagOptions {
  /** Measured commits per round (default 1000). */
  commits: number;
  /** Rounds (default 3); the summary takes medians over them. */
  rounds: number;
  /** Unmeasured commits before the first round (default 50). */
  warmup: number;
  /** Mean pause between commits in milliseconds, each drawn from [0.5, 1.5] × this (default 5). */
  intervalMs: number;
  /** The primary's `initdb --wal-segsize` in MB (default 16). */
  segMb: number;
  /** How the standbys are polled (default `lsn`). */
  probe: RelayLagProbe;
  /**
   * When polling starts: `ack` (default), once the INSERT returned, or `send`, as it is sent.
   * `ack` spares the two cores the polls during the primary's WAL flush, but cannot see a
   * visibility earlier than the first poll after the commit returned.
   */
  pollFrom: "send" | "ack";
  /** The walrelay entry point (default: this repository's `cli.ts`). */
  relayCli: string;
  /** Run the relay under `deno run --cpu-prof`, the profile written into this directory. */
  cpuProfDir: string | undefined;
  /**
   * Where to create the relay's WAL directory (default: the system's temporary directory). A
   * tmpfs such as `/dev/shm` takes the relay's `fdatasync` out of the path, leaving its own
   * overhead.
   */
  relayWalParent: string | undefined;
  /** Gives up on a commit a standby has not shown after this many milliseconds (default 10000). */
  timeoutMs: number;
  /** Where progress lines and tables go (default `console.log`). */
  log: (line: string) => void;
  /** Throws when the run was interrupted (default: never). */
  checkInterrupted: () => void;
}

/** Lag figures of one standby over a set of commits, in milliseconds. */
export interface LagStats {
  /** Commits the standby showed. */
  samples: number;
  /** Commits it did not show within the timeout. */
  missing: number;
  /** Median lag. */
  p50_ms: number;
  /** 90th percentile. */
  p90_ms: number;
  /** 99th percentile. */
  p99_ms: number;
  /** Largest lag. */
  max_ms: number;
  /** Mean lag. */
  mean_ms: number;
  /** p50 measured from when the INSERT was sent rather than when it returned. */
  p50_from_send_ms: number;
  /** p99 measured from when the INSERT was sent. */
  p99_from_send_ms: number;
  /** Median round trip of the poll that saw the commit: the measurement's resolution. */
  poll_rtt_p50_ms: number;
  /** Median count of polls per commit. */
  polls_p50: number;
}

/** What the relay added: B (via the relay) − A (direct), in milliseconds. */
export interface AddedLag {
  /** p50 of B − p50 of A. */
  p50_ms: number;
  /** p99 of B − p99 of A. */
  p99_ms: number;
  /** Median of the per-commit difference (B − A of the same commit). */
  paired_p50_ms: number;
  /** 90th percentile of the per-commit difference. */
  paired_p90_ms: number;
  /** 99th percentile of the per-commit difference. */
  paired_p99_ms: number;
  /** Largest per-commit difference. */
  paired_max_ms: number;
}

/** One round's figures. */
export interface RelayLagRound {
  /** 1-based round number. */
  round: number;
  /** Median INSERT round trip on the primary (sent → returned). */
  commit_p50_ms: number;
  /** 99th percentile of the INSERT round trip. */
  commit_p99_ms: number;
  /** Standby A, fed by the primary. */
  direct: LagStats;
  /** Standby B, fed by the relay. */
  via_relay: LagStats;
  /** B − A. */
  added: AddedLag;
  /** CPU seconds the relay process used during the round. */
  relay_cpu_s: number;
  /** The same per commit, in microseconds. */
  relay_cpu_us_per_commit: number;
  /** Bytes of WAL of the round (first to last commit's flush LSN). */
  wal_bytes: number;
  /** Duration of the round. */
  wall_s: number;
}

/** What {@linkcode runRelayLagBenchmark} measured. */
export interface RelayLagSummary {
  /** The options the run used. */
  config: {
    commits: number;
    rounds: number;
    warmup: number;
    interval_ms: number;
    seg_mb: number;
    probe: RelayLagProbe;
    poll_from: "send" | "ack";
    relay_cli: string;
    cpu_prof: string | null;
    relay_wal_dir: string;
  };
  /** The relay's command line, and the standbys' primary_conninfo. */
  commands: { relay: string; standby_direct: string; standby_via_relay: string };
  /** `/proc/loadavg` (1, 5, 15 min) before the setup. */
  load_average_at_start: string;
  /** `/proc/loadavg` after the last round. */
  load_average_at_end: string;
  /** Each round's figures. */
  rounds: RelayLagRound[];
  /** Medians over the rounds of the per-round figures. */
  median: {
    direct_p50_ms: number;
    direct_p99_ms: number;
    via_relay_p50_ms: number;
    via_relay_p99_ms: number;
    added_p50_ms: number;
    added_p99_ms: number;
    added_paired_p50_ms: number;
    added_paired_p99_ms: number;
    relay_cpu_us_per_commit: number;
  };
  /** Every round's commits together. */
  pooled: { direct: LagStats; via_relay: LagStats; added: AddedLag };
  /** Whether the median over the rounds of the p99 added (B − A) is at most 1 ms. */
  target_p99_added_le_1ms: boolean;
  /** The relay's peak RSS (VmHWM) at the end, in bytes. */
  relay_hwm_bytes: number;
}

/** When one commit became visible on one standby. */
interface Seen {
  /** `performance.now()` at the arrival of the first answer showing it; undefined = never. */
  at: number | undefined;
  /** Round trip of that poll. */
  rtt: number;
  polls: number;
}

/** One measured commit. */
interface CommitSample {
  sent: number;
  acked: number;
  lsn: bigint;
  direct: Seen;
  relay: Seen;
}

const DEFAULTS: Omit<RelayLagOptions, "relayCli"> = {
  commits: 1000,
  rounds: 3,
  warmup: 50,
  intervalMs: 5,
  segMb: 16,
  probe: "lsn",
  pollFrom: "ack",
  cpuProfDir: undefined,
  relayWalParent: undefined,
  timeoutMs: 10_000,
  log: (line) => console.log(line),
  checkInterrupted: () => {},
};

/** A relay process and how to reach it. */
interface Relay extends BackgroundProcess {
  port: number;
  command: string;
}

/**
 * Starts `deno run [--cpu-prof …] -A CLI serve --wal-dir DIR --listen 127.0.0.1:PORT --upstream
 * …` (the harness's `startRelay` cannot pass deno flags) and waits until it accepts connections.
 */
async function startRelayProcess(
  cli: string,
  walDir: string,
  upstream: string,
  cpuProfDir: string | undefined,
): Promise<Relay> {
  const port = await freePort();
  const denoFlags = cpuProfDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`];
  const args = [
    "run",
    ...denoFlags,
    "-A",
    cli,
    "serve",
    "--wal-dir",
    walDir,
    "--listen",
    `127.0.0.1:${port}`,
    "--upstream",
    upstream,
    "--log-format",
    "text",
  ];
  const proc = await spawnBackground([Deno.execPath(), ...args], {
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
  });
  try {
    await waitFor(async () => {
      if (proc.exited) {
        throw new Error(`walrelay exited:\n${proc.stderr()}`);
      }
      try {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        c.close();
        return true;
      } catch {
        return false;
      }
    }, { timeoutMs: 60_000, intervalMs: 100, message: `walrelay did not listen on ${port}` });
  } catch (e) {
    await proc[Symbol.asyncDispose]();
    throw new Error(`${(e as Error).message}\n--- relay stderr ---\n${proc.stderr()}`);
  }
  const quoted = args.map((a) => (/^[\w./=:-]+$/.test(a) ? a : `'${a}'`));
  return Object.assign(proc, { port, command: `deno ${quoted.join(" ")}` });
}

/** An ordinary (non-replication) in-process connection to the `postgres` database. */
function sqlClient(port: number, name: string): Promise<PgClient> {
  return PgClient.connect({
    hostname: "127.0.0.1",
    port,
    user: "postgres",
    params: { database: "postgres", application_name: name },
  });
}

/**
 * Polls a standby in a tight loop until it shows commit `id` (or, with the lsn probe, until its
 * replay LSN reaches `target()`), or until `deadline`. The lsn probe keeps every answer, so an
 * answer that arrived before the target was known still counts once it is.
 */
async function pollUntilSeen(
  client: PgClient,
  probe: RelayLagProbe,
  id: number,
  target: () => bigint | undefined,
  deadline: number,
): Promise<Seen> {
  const query = probe === "row"
    ? `SELECT 1 FROM relay_lag WHERE id = ${id}`
    : "SELECT pg_last_wal_replay_lsn()";
  const answers: { at: number; rtt: number; lsn: bigint }[] = [];
  let checked = 0;
  while (true) {
    const before = performance.now();
    const [r] = await client.query(query);
    const at = performance.now();
    const rtt = at - before;
    if (probe === "row") {
      answers.push({ at, rtt, lsn: 0n });
      if (r!.rows.length > 0) return { at, rtt, polls: answers.length };
    } else {
      const text = r!.rows[0]?.[0];
      answers.push({ at, rtt, lsn: typeof text === "string" ? parseLsn(text) : -1n });
      const want = target();
      if (want !== undefined) {
        for (; checked < answers.length; checked++) {
          const a = answers[checked]!;
          if (a.lsn >= want) return { at: a.at, rtt: a.rtt, polls: checked + 1 };
        }
      }
    }
    if (at > deadline) return { at: undefined, rtt, polls: answers.length };
  }
}

function lagStats(samples: CommitSample[], which: "direct" | "relay"): LagStats {
  const lag: number[] = [];
  const fromSend: number[] = [];
  const rtt: number[] = [];
  const polls: number[] = [];
  let missing = 0;
  for (const s of samples) {
    const seen = s[which];
    polls.push(seen.polls);
    if (seen.at === undefined) {
      missing++;
      continue;
    }
    lag.push(seen.at - s.acked);
    fromSend.push(seen.at - s.sent);
    rtt.push(seen.rtt);
  }
  if (lag.length === 0) {
    return {
      samples: 0,
      missing,
      p50_ms: NaN,
      p90_ms: NaN,
      p99_ms: NaN,
      max_ms: NaN,
      mean_ms: NaN,
      p50_from_send_ms: NaN,
      p99_from_send_ms: NaN,
      poll_rtt_p50_ms: NaN,
      polls_p50: median(polls),
    };
  }
  return {
    samples: lag.length,
    missing,
    p50_ms: percentile(lag, 50),
    p90_ms: percentile(lag, 90),
    p99_ms: percentile(lag, 99),
    max_ms: Math.max(...lag),
    mean_ms: lag.reduce((a, b) => a + b, 0) / lag.length,
    p50_from_send_ms: percentile(fromSend, 50),
    p99_from_send_ms: percentile(fromSend, 99),
    poll_rtt_p50_ms: median(rtt),
    polls_p50: median(polls),
  };
}

function addedLag(samples: CommitSample[], a: LagStats, b: LagStats): AddedLag {
  const diffs = samples
    .filter((s) => s.direct.at !== undefined && s.relay.at !== undefined)
    .map((s) => s.relay.at! - s.direct.at!);
  const p = (q: number): number => (diffs.length > 0 ? percentile(diffs, q) : NaN);
  return {
    p50_ms: b.p50_ms - a.p50_ms,
    p99_ms: b.p99_ms - a.p99_ms,
    paired_p50_ms: p(50),
    paired_p90_ms: p(90),
    paired_p99_ms: p(99),
    paired_max_ms: diffs.length > 0 ? Math.max(...diffs) : NaN,
  };
}

/**
 * Runs the relay lag benchmark: a primary, a relay following it, a standby on each, and
 * `commits × rounds` commits timed to their visibility on both standbys. Prints its tables
 * through `log` and returns the figures; never asserts a time.
 */
export async function runRelayLagBenchmark(
  options: Partial<RelayLagOptions> = {},
): Promise<RelayLagSummary> {
  const opts: RelayLagOptions = {
    ...DEFAULTS,
    relayCli: join(REPO_ROOT, "cli.ts"),
    ...options,
  };
  const { log } = opts;
  const loadAtStart = await loadAverage();
  log(`\n== relay lag: commit on the primary → visible on a standby, direct vs via walrelay ==`);
  await using work = await tempDir("walrelay-bench-lag-");
  await using pg = await startPrimary({
    walSegSize: opts.segMb,
    conf: {
      synchronous_commit: "on",
      autovacuum: "off",
      checkpoint_timeout: "1h",
      max_wal_size: "1GB",
      wal_keep_size: "512MB",
    },
  });
  await pg.sql("CREATE TABLE relay_lag (id int PRIMARY KEY, t timestamptz)");
  const relayParent = opts.relayWalParent === undefined
    ? work.path
    : await Deno.makeTempDir({ dir: opts.relayWalParent, prefix: "walrelay-lag-" });
  // Disposed after the relay (declared before it).
  await using _relayParent = {
    async [Symbol.asyncDispose]() {
      if (relayParent !== work.path) {
        await Deno.remove(relayParent, { recursive: true }).catch(() => {});
      }
    },
  };
  const walDir = join(relayParent, "relay-wal");
  await Deno.mkdir(walDir);
  await using relay = await startRelayProcess(
    opts.relayCli,
    walDir,
    pg.conninfo({ application_name: "walrelay" }),
    opts.cpuProfDir,
  );
  // After the relay started, so the backups' WAL is in the relay's directory.
  await using backupA = await basebackup(pg);
  await using backupB = await basebackup(pg);
  const standbyConf = {
    hot_standby: "on",
    wal_receiver_status_interval: "1s",
    recovery_min_apply_delay: 0,
    shared_buffers: "32MB",
  };
  const directConninfo = pg.conninfo({ application_name: "standby_direct" });
  const relayConninfo = `host=127.0.0.1 port=${relay.port} user=postgres ` +
    `application_name=standby_via_relay`;
  await using standbyA = await startStandby({
    dataDir: backupA.dataDir,
    primaryConninfo: directConninfo,
    conf: standbyConf,
  });
  await using standbyB = await startStandby({
    dataDir: backupB.dataDir,
    primaryConninfo: relayConninfo,
    conf: standbyConf,
  });
  const ready = await pg.sql("SELECT pg_current_wal_flush_lsn()");
  const waitReplay = async (s: PgCluster, name: string): Promise<void> => {
    await s.waitForReplay(ready, 60_000).catch((e) => {
      throw new Error(`${name}: ${(e as Error).message}\n--- relay ---\n${relay.stderr()}`);
    });
  };
  await waitReplay(standbyA, "standby A (direct)");
  await waitReplay(standbyB, "standby B (via relay)");
  const commands = {
    relay: relay.command,
    standby_direct: directConninfo,
    standby_via_relay: relayConninfo,
  };
  log(`primary: PostgreSQL on ${pg.port}, ${opts.segMb} MB segments, synchronous_commit on`);
  log(`relay:   ${commands.relay}`);
  log(`A:       standby, primary_conninfo '${directConninfo}'`);
  log(`B:       standby, primary_conninfo '${relayConninfo}'`);

  await using writer = await sqlClient(pg.port, "relay_lag_writer");
  await using pollA = await sqlClient(standbyA.port, "relay_lag_poll");
  await using pollB = await sqlClient(standbyB.port, "relay_lag_poll");

  let nextId = 1;
  /** One commit, timed on both standbys. */
  const commitOnce = async (): Promise<CommitSample> => {
    const id = nextId++;
    // Known once the commit returned; the lsn probe compares against it from then on.
    const known: { lsn?: bigint } = {};
    const target = (): bigint | undefined => known.lsn;
    const sent = performance.now();
    const deadline = sent + opts.timeoutMs;
    const inserted = writer.query(`INSERT INTO relay_lag VALUES (${id}, now())`);
    const poll = (): [Promise<Seen>, Promise<Seen>] => [
      pollUntilSeen(pollA, opts.probe, id, target, deadline),
      pollUntilSeen(pollB, opts.probe, id, target, deadline),
    ];
    const early = opts.pollFrom === "send" ? poll() : undefined;
    await inserted;
    const acked = performance.now();
    const [seenA, seenB] = early ?? poll();
    const [r] = await writer.query("SELECT pg_current_wal_flush_lsn()");
    const lsn = known.lsn = parseLsn(r!.rows[0]![0]!);
    const [direct, relayed] = await Promise.all([seenA, seenB]);
    return { sent, acked, lsn, direct, relay: relayed };
  };
  const pause = (): Promise<void> => delay(opts.intervalMs * (0.5 + Math.random()));

  log(
    `${opts.rounds} round(s) × ${opts.commits} commits (+${opts.warmup} warm-up), one every ` +
      `~${opts.intervalMs} ms; probe ${opts.probe}, polling from ${opts.pollFrom}; load average ${loadAtStart}`,
  );
  for (let i = 0; i < opts.warmup; i++) {
    opts.checkInterrupted();
    await commitOnce();
    await pause();
  }

  const rounds: RelayLagRound[] = [];
  const all: CommitSample[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const cpuBefore = await procCpu(relay.pid);
    const t0 = performance.now();
    const samples: CommitSample[] = [];
    for (let i = 0; i < opts.commits; i++) {
      opts.checkInterrupted();
      samples.push(await commitOnce());
      await pause();
    }
    const wall = (performance.now() - t0) / 1000;
    const cpuAfter = await procCpu(relay.pid);
    all.push(...samples);
    const direct = lagStats(samples, "direct");
    const viaRelay = lagStats(samples, "relay");
    const commitMs = samples.map((s) => s.acked - s.sent);
    const relayCpu = cpuAfter.self - cpuBefore.self;
    rounds.push({
      round,
      commit_p50_ms: percentile(commitMs, 50),
      commit_p99_ms: percentile(commitMs, 99),
      direct,
      via_relay: viaRelay,
      added: addedLag(samples, direct, viaRelay),
      relay_cpu_s: relayCpu,
      relay_cpu_us_per_commit: (relayCpu / opts.commits) * 1e6,
      wal_bytes: Number(samples.at(-1)!.lsn - samples[0]!.lsn),
      wall_s: wall,
    });
    const r = rounds.at(-1)!;
    log(
      `round ${round}: ${fixed(wall, 1)} s, WAL ${formatLsn(samples[0]!.lsn)} .. ` +
        `${formatLsn(samples.at(-1)!.lsn)}, commit p50 ${fixed(r.commit_p50_ms, 3)} ms; added ` +
        `p50 ${fixed(r.added.p50_ms, 3)} ms, p99 ${fixed(r.added.p99_ms, 3)} ms; relay CPU ` +
        `${fixed(r.relay_cpu_us_per_commit, 0)} µs/commit`,
    );
  }
  const loadAtEnd = await loadAverage();
  const hwm = (await procMemory(relay.pid)).peak;

  const pooledA = lagStats(all, "direct");
  const pooledB = lagStats(all, "relay");
  const med = (f: (r: RelayLagRound) => number): number => median(rounds.map(f));
  const summary: RelayLagSummary = {
    config: {
      commits: opts.commits,
      rounds: opts.rounds,
      warmup: opts.warmup,
      interval_ms: opts.intervalMs,
      seg_mb: opts.segMb,
      probe: opts.probe,
      poll_from: opts.pollFrom,
      relay_cli: opts.relayCli,
      cpu_prof: opts.cpuProfDir ?? null,
      relay_wal_dir: walDir,
    },
    commands,
    load_average_at_start: loadAtStart,
    load_average_at_end: loadAtEnd,
    rounds,
    median: {
      direct_p50_ms: med((r) => r.direct.p50_ms),
      direct_p99_ms: med((r) => r.direct.p99_ms),
      via_relay_p50_ms: med((r) => r.via_relay.p50_ms),
      via_relay_p99_ms: med((r) => r.via_relay.p99_ms),
      added_p50_ms: med((r) => r.added.p50_ms),
      added_p99_ms: med((r) => r.added.p99_ms),
      added_paired_p50_ms: med((r) => r.added.paired_p50_ms),
      added_paired_p99_ms: med((r) => r.added.paired_p99_ms),
      relay_cpu_us_per_commit: med((r) => r.relay_cpu_us_per_commit),
    },
    pooled: { direct: pooledA, via_relay: pooledB, added: addedLag(all, pooledA, pooledB) },
    target_p99_added_le_1ms: false,
    relay_hwm_bytes: hwm,
  };
  summary.target_p99_added_le_1ms = summary.median.added_p99_ms <= 1;

  const ms = (n: number): string => fixed(n, 3);
  log(
    `\nlag = visible on the standby − commit returned to the writer (ms); "from send" = − ` +
      `INSERT sent; poll rtt = resolution`,
  );
  const statRow = (label: string, s: LagStats): string[] => [
    label,
    s.missing > 0 ? `${s.samples} (${s.missing} missing)` : String(s.samples),
    ms(s.p50_ms),
    ms(s.p90_ms),
    ms(s.p99_ms),
    ms(s.max_ms),
    ms(s.p50_from_send_ms),
    ms(s.p99_from_send_ms),
    ms(s.poll_rtt_p50_ms),
    fixed(s.polls_p50, 0),
  ];
  const rows: string[][] = [];
  for (const r of rounds) {
    rows.push(statRow(`round ${r.round} A direct`, r.direct));
    rows.push(statRow(`round ${r.round} B via relay`, r.via_relay));
  }
  rows.push(statRow("all A direct", pooledA));
  rows.push(statRow("all B via relay", pooledB));
  log(table(
    ["standby", "n", "p50", "p90", "p99", "max", "p50 send", "p99 send", "poll rtt", "polls"],
    rows,
  ));
  log(`\nadded by the relay (B − A, ms): p50/p99 of B minus those of A; paired = per commit`);
  const addedRow = (label: string, a: AddedLag, cpu: string): string[] => [
    label,
    ms(a.p50_ms),
    ms(a.p99_ms),
    ms(a.paired_p50_ms),
    ms(a.paired_p90_ms),
    ms(a.paired_p99_ms),
    ms(a.paired_max_ms),
    cpu,
  ];
  log(table(
    ["", "p50", "p99", "paired p50", "paired p90", "paired p99", "paired max", "relay µs/commit"],
    [
      ...rounds.map((r) =>
        addedRow(`round ${r.round}`, r.added, fixed(r.relay_cpu_us_per_commit, 0))
      ),
      addedRow(
        "median of rounds",
        {
          p50_ms: summary.median.added_p50_ms,
          p99_ms: summary.median.added_p99_ms,
          paired_p50_ms: summary.median.added_paired_p50_ms,
          paired_p90_ms: med((r) => r.added.paired_p90_ms),
          paired_p99_ms: summary.median.added_paired_p99_ms,
          paired_max_ms: med((r) => r.added.paired_max_ms),
        },
        fixed(summary.median.relay_cpu_us_per_commit, 0),
      ),
      addedRow("all commits", summary.pooled.added, ""),
    ],
  ));
  log(
    `\nmedian p50: A ${ms(summary.median.direct_p50_ms)} ms, B ` +
      `${ms(summary.median.via_relay_p50_ms)} ms; median p99: A ` +
      `${ms(summary.median.direct_p99_ms)} ms, B ${ms(summary.median.via_relay_p99_ms)} ms`,
  );
  log(
    `added by the relay: p50 ${ms(summary.median.added_p50_ms)} ms, p99 ` +
      `${ms(summary.median.added_p99_ms)} ms (median of ${rounds.length} round(s)); target p99 ` +
      `added ≤ 1 ms: ${summary.target_p99_added_le_1ms ? "met" : "not met"}; relay VmHWM ` +
      `${fixed(hwm / (1024 * 1024), 1)} MiB; load average ${loadAtStart} at start, ` +
      `${loadAtEnd} at end`,
  );

  await writer.terminate();
  await pollA.terminate();
  await pollB.terminate();
  await standbyB.stop("fast");
  await standbyA.stop("fast");
  const status = await relay.stop("SIGTERM", 10_000);
  if (opts.cpuProfDir !== undefined) {
    log(`relay exited (${status.code}); CPU profile in ${opts.cpuProfDir}`);
  }
  return summary;
}

const USAGE = `deno run -A bench/relay_lag.ts [options]

  --commits N       measured commits per round (default 1000)
  --rounds N        rounds; the summary takes medians over them (default 3)
  --warmup N        unmeasured commits first (default 50)
  --interval-ms N   mean pause between commits (default 5)
  --seg-mb N        the primary's WAL segment size in MB: 1, 2, 4, …, 1024 (default 16)
  --probe P         lsn: poll pg_last_wal_replay_lsn() against the commit's flush LSN (default);
                    row: poll SELECT 1 FROM relay_lag WHERE id = i (visibility itself)
  --poll-from WHEN  ack: start polling once the INSERT returned (default: fewer polls competing
                    for the CPU, blind before the first poll); send: as it is sent
  --relay-cli PATH  the walrelay entry point (default: this repository's cli.ts)
  --cpu-prof DIR    run the relay under deno --cpu-prof, the profile written into DIR at exit
  --relay-wal-parent DIR
                    create the relay's WAL directory under DIR (e.g. /dev/shm: a tmpfs takes
                    the relay's fdatasync out of the path, leaving the relay's own overhead)
  --out FILE        the JSON report (default bench/out/relay_lag.json)
`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      commits: { type: "string", default: "1000" },
      rounds: { type: "string", default: "3" },
      warmup: { type: "string", default: "50" },
      "interval-ms": { type: "string", default: "5" },
      "seg-mb": { type: "string", default: "16" },
      probe: { type: "string", default: "lsn" },
      "poll-from": { type: "string", default: "ack" },
      "relay-cli": { type: "string" },
      "cpu-prof": { type: "string" },
      "relay-wal-parent": { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const int = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) {
      console.error(`relay_lag: invalid --${name} "${text}"\n\n${USAGE}`);
      Deno.exit(2);
    }
    return n;
  };
  const segMb = int("seg-mb", values["seg-mb"], 1);
  if ((segMb & (segMb - 1)) !== 0 || segMb > 1024) {
    console.error(`relay_lag: --seg-mb must be a power of two from 1 to 1024\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (values.probe !== "row" && values.probe !== "lsn") {
    console.error(`relay_lag: invalid --probe "${values.probe}"\n\n${USAGE}`);
    Deno.exit(2);
  }
  const pollFrom = values["poll-from"];
  if (pollFrom !== "send" && pollFrom !== "ack") {
    console.error(`relay_lag: invalid --poll-from "${pollFrom}"\n\n${USAGE}`);
    Deno.exit(2);
  }
  let interrupted = false;
  Deno.addSignalListener("SIGINT", () => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    console.error("\ninterrupted: stopping (Ctrl-C again to exit at once)");
  });
  const tStart = performance.now();
  const summary = await runRelayLagBenchmark({
    commits: int("commits", values.commits, 100),
    rounds: int("rounds", values.rounds, 1),
    warmup: int("warmup", values.warmup, 0),
    intervalMs: int("interval-ms", values["interval-ms"], 0),
    segMb,
    probe: values.probe,
    pollFrom,
    ...(values["relay-cli"] !== undefined ? { relayCli: values["relay-cli"] } : {}),
    ...(values["cpu-prof"] !== undefined ? { cpuProfDir: values["cpu-prof"] } : {}),
    ...(values["relay-wal-parent"] !== undefined
      ? { relayWalParent: values["relay-wal-parent"] }
      : {}),
    checkInterrupted: () => {
      if (interrupted) throw new Error("interrupted");
    },
  });
  const out = values.out ?? join(REPO_ROOT, "bench", "out", "relay_lag.json");
  await Deno.mkdir(join(out, ".."), { recursive: true });
  const report = {
    command: `deno run -A bench/relay_lag.ts ${Deno.args.join(" ")}`.trimEnd(),
    date: new Date().toISOString(),
    duration_s: (performance.now() - tStart) / 1000,
    environment: { deno: Deno.version.deno, cpus: navigator.hardwareConcurrency },
    relay_lag: summary,
  };
  await Deno.writeTextFile(out, JSON.stringify(report, null, 2) + "\n");
  console.log(`wrote ${out}`);
}
