/**
 * Relay lag benchmark (issue 4): the lag a relay adds between a commit on the primary and its
 * visibility on a standby fed through it, against a standby fed by the primary directly, with
 * PostgreSQL's own relay (a cascading standby) measured side by side in the same run.
 *
 * ```
 * deno run -A bench/relay_lag.ts [--commits 1000] [--rounds 3] [--warmup 50]
 *                                [--interval-ms 5] [--seg-mb 16] [--probe lsn|row]
 *                                [--poll-from ack|send] [--no-cascade] [--no-fsync-test]
 *                                [--relay-cli PATH] [--cpu-prof DIR]
 *                                [--relay-wal-parent DIR] [--out FILE]
 * ```
 *
 * Setup: one PostgreSQL 15 primary (`wal_level = replica`, `synchronous_commit = on`, no
 * synchronous standbys) and a walrelay in relay mode following it (`cli.ts serve --upstream`).
 * Hot standbys from base backups of the primary, all with `recovery_min_apply_delay = 0` and
 * `wal_receiver_status_interval = 1s`:
 *
 * - **A** streams from the primary: the reference;
 * - **B** streams from the relay;
 * - **D** (not polled) streams from the primary with `max_wal_senders` as the primary's, so it
 *   can cascade; it plays the relay's part in PostgreSQL's own relaying;
 * - **C** streams from D (cascading replication).
 *
 * The comparison is fair on durability: walrelay sends only WAL it has fsynced, and a cascading
 * walsender only WAL its server's walreceiver has flushed (the walreceiver wakes the walsenders
 * after its `fdatasync`). D does more than relay, though: its startup process replays every
 * record, on the same two cores, which walrelay does not do. `--no-cascade` leaves out C and D.
 *
 * Each commit is one autocommit `INSERT INTO relay_lag VALUES (i, now())` through a persistent
 * in-process connection to the primary ({@linkcode PgClient}, simple query protocol). More
 * in-process connections, one per polled standby (A, B, C), poll in tight loops (one query in
 * flight per standby, the next sent as soon as the answer arrives; the same probe and loop for
 * all three):
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
 * The cascade arm makes that competition heavier: a primary, four standbys replaying, the relay,
 * three poll loops and this process share the two cores, against two standbys and two loops
 * without it. The figures shift with it: A, B and B − A are not the same as in a `--no-cascade`
 * run (nor as the README's earlier two-standby figures), and which loop or process the scheduler
 * runs first varies from commit to commit. Compare B − A with C − A within one run; compare
 * across runs only with the same arms on.
 *
 * A standby's visibility time is the arrival of the first answer that shows the row (or an LSN at
 * or past the commit's). The lag of a commit on a standby is that time minus the time the commit
 * returned to the writer ("from send": minus the time the INSERT was sent). On A it can be
 * slightly negative: the walsender is woken by the WAL flush, before the backend answers its
 * client. The resolution is one poll round trip, reported as `poll rtt`. The added lag is B − A
 * for walrelay and C − A for the cascading standby: both as differences of percentiles (p50 and
 * p99 of B minus those of A) and as the percentiles of the per-commit differences (B − A of the
 * same commit). Their ratio, cascade added / walrelay added, is above 1 when walrelay adds less;
 * it is left out (n/a) when either added lag is not positive.
 *
 * Between commits the writer pauses a random [0.5, 1.5] × `--interval-ms`, after every polled
 * standby saw the commit, so commits do not queue behind each other. Each round is `--commits`
 * commits; the summary gives the medians of the per-round figures and the percentiles of all
 * commits pooled. It prints figures and never asserts a time. The relay's CPU (utime + stime) per
 * round is read from `/proc`, and so is that of D's walreceiver and its walsender to C (the
 * processes doing the relay's work; D's replay is not counted).
 *
 * Before the setup, `pg_test_fsync -s 1` runs on the filesystem of the relay's WAL directory
 * (`--no-fsync-test` skips it), stopped after its first section (one 8 kB write per sync); the
 * header prints its `fdatasync` µs/op: the price of the relay's durability on that disk, alone.
 * The relay's and D's syncs during the rounds compete with the primary's and the standbys'.
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
  pgBinDir,
  type PgCluster,
  REPO_ROOT,
  spawnBackground,
  startPrimary,
  startStandby,
  tempDir,
  waitFor,
} from "../tests/_pg.ts";
import { PgClient } from "../lib/pgwire/client.ts";
import { childPids, loadAverage, procCpu, procMemory } from "./_proc.ts";
import { median, percentile } from "./_stats.ts";
import { fixed, formatLsn, parseLsn, table } from "./_util.ts";

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
  /**
   * Adds PostgreSQL's own relay as a third arm (default true): standby D streaming from the
   * primary, and standby C streaming from D (cascading replication), polled like A and B.
   */
  cascade: boolean;
  /**
   * Runs `pg_test_fsync -s 1` on the relay WAL directory's filesystem before the setup (default
   * true), for the header's `fdatasync` cost.
   */
  fsyncTest: boolean;
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

/**
 * What a relay added, in milliseconds: B (via walrelay) − A (direct), or C (via the cascading
 * standby D) − A.
 */
export interface AddedLag {
  /** p50 of B (or C) − p50 of A. */
  p50_ms: number;
  /** p99 of B (or C) − p99 of A. */
  p99_ms: number;
  /** Median of the per-commit difference (B − A, or C − A, of the same commit). */
  paired_p50_ms: number;
  /** 90th percentile of the per-commit difference. */
  paired_p90_ms: number;
  /** 99th percentile of the per-commit difference. */
  paired_p99_ms: number;
  /** Largest per-commit difference. */
  paired_max_ms: number;
}

/**
 * The cascading standby's added lag over walrelay's (C − A) / (B − A), figure by figure: above 1
 * when walrelay adds less. NaN (`null` in the JSON) when either added lag is not positive, where
 * the ratio says nothing.
 */
export interface AddedRatio {
  /** Of the p50 differences. */
  p50: number;
  /** Of the p99 differences. */
  p99: number;
  /** Of the medians of the per-commit differences. */
  paired_p50: number;
  /** Of the 99th percentiles of the per-commit differences. */
  paired_p99: number;
}

/** One round's figures of the cascade arm (C fed by D, D by the primary). */
export interface CascadeRound {
  /** Standby C, fed by the cascading standby D. */
  via_cascade: LagStats;
  /** C − A: what the cascading standby added. */
  added: AddedLag;
  /** (C − A) / (B − A). */
  vs_relay: AddedRatio;
  /**
   * CPU seconds of D's walreceiver and of its walsender to C during the round: the processes
   * doing the relay's work (D's replay is not counted). NaN when either restarted.
   */
  cpu_s: number;
  /** The same per commit, in microseconds. */
  cpu_us_per_commit: number;
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
  /** The cascade arm (C, C − A, its ratio to B − A); null with it off. */
  cascade: CascadeRound | null;
  /** CPU seconds the relay process used during the round. */
  relay_cpu_s: number;
  /** The same per commit, in microseconds. */
  relay_cpu_us_per_commit: number;
  /** Bytes of WAL of the round (first to last commit's flush LSN). */
  wal_bytes: number;
  /** Duration of the round. */
  wall_s: number;
}

/** What `pg_test_fsync` said about the filesystem of the relay's WAL directory. */
export interface FsyncTest {
  /** The command line; null when it did not run. */
  command: string | null;
  /** Why there is no figure (not run, binary missing, failed); null when there is. */
  skipped: string | null;
  /** The directory it wrote its test file into (the parent of the relay's WAL directory). */
  dir: string;
  /** Type, mount point and device of that directory's filesystem, from `/proc/self/mounts`. */
  filesystem: string;
  /**
   * µs per `fdatasync` of one 8 kB write: 10⁶ / the ops/sec `pg_test_fsync` printed (it prints
   * the same rounded to whole µs); NaN (`null` in the JSON) when skipped.
   */
  fdatasync_us_per_op: number;
  /** Every method of its "one 8kB write" section, µs/op likewise; methods marked n/a left out. */
  one_8kb_write_us_per_op: Record<string, number>;
  /** `/proc/loadavg` just before it ran. */
  load_average: string;
}

/** Medians over the rounds of the cascade arm's per-round figures. */
export interface CascadeMedian {
  /** Median p50 of C. */
  via_cascade_p50_ms: number;
  /** Median p99 of C. */
  via_cascade_p99_ms: number;
  /** Median of the rounds' p50 of C − p50 of A. */
  added_p50_ms: number;
  /** Median of the rounds' p99 of C − p99 of A. */
  added_p99_ms: number;
  /** Median of the rounds' per-commit C − A medians. */
  added_paired_p50_ms: number;
  /** Median of the rounds' per-commit C − A 99th percentiles. */
  added_paired_p99_ms: number;
  /** The ratios of these medians to walrelay's medians (not the medians of per-round ratios). */
  vs_relay: AddedRatio;
  /** Median CPU of D's walreceiver and walsender per commit, in microseconds. */
  cpu_us_per_commit: number;
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
    /** Whether the cascade arm (C and D) ran. */
    cascade: boolean;
    /** Whether `pg_test_fsync` was asked for. */
    fsync_test: boolean;
  };
  /** The relay's command line, and the standbys' primary_conninfo. */
  commands: {
    relay: string;
    standby_direct: string;
    standby_via_relay: string;
    /** D's primary_conninfo (to the primary); null without the cascade arm. */
    standby_cascading: string | null;
    /** C's primary_conninfo (to D); null without the cascade arm. */
    standby_via_cascade: string | null;
  };
  /** `pg_test_fsync` on the relay's WAL filesystem, before the setup. */
  relay_fsync: FsyncTest;
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
    /** The cascade arm's medians; null with it off. */
    cascade: CascadeMedian | null;
  };
  /** Every round's commits together. */
  pooled: {
    direct: LagStats;
    via_relay: LagStats;
    added: AddedLag;
    /** C, C − A and (C − A) / (B − A) over every commit; null without the cascade arm. */
    cascade: { via_cascade: LagStats; added: AddedLag; vs_relay: AddedRatio } | null;
  };
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
  /** Undefined without the cascade arm. */
  cascade: Seen | undefined;
}

/** A polled standby: A, B or C. */
type Arm = "direct" | "relay" | "cascade";

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
  cascade: true,
  fsyncTest: true,
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

function lagStats(samples: CommitSample[], which: Arm): LagStats {
  const lag: number[] = [];
  const fromSend: number[] = [];
  const rtt: number[] = [];
  const polls: number[] = [];
  let missing = 0;
  for (const s of samples) {
    const seen = s[which];
    if (seen === undefined) throw new Error(`no ${which} figures: the arm did not run`);
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

/** `b` − `a`, where `a` is A's figures and `b` those of the standby `which` (B or C). */
function addedLag(
  samples: CommitSample[],
  which: "relay" | "cascade",
  a: LagStats,
  b: LagStats,
): AddedLag {
  const diffs: number[] = [];
  for (const s of samples) {
    const via = s[which]?.at;
    if (s.direct.at !== undefined && via !== undefined) diffs.push(via - s.direct.at);
  }
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

/** `x / y` when both are positive, else NaN. */
function ratio(x: number, y: number): number {
  return x > 0 && y > 0 ? x / y : NaN;
}

/** (C − A) / (B − A), figure by figure. */
function addedRatio(cascade: AddedLag, relay: AddedLag): AddedRatio {
  return {
    p50: ratio(cascade.p50_ms, relay.p50_ms),
    p99: ratio(cascade.p99_ms, relay.p99_ms),
    paired_p50: ratio(cascade.paired_p50_ms, relay.paired_p50_ms),
    paired_p99: ratio(cascade.paired_p99_ms, relay.paired_p99_ms),
  };
}

/** The filesystem holding `path`: the longest mount point of `/proc/self/mounts` above it. */
async function filesystemOf(path: string): Promise<string> {
  let real = path;
  try {
    real = await Deno.realPath(path);
    const mounts = await Deno.readTextFile("/proc/self/mounts");
    let best: { mount: string; type: string; source: string } | undefined;
    for (const line of mounts.split("\n")) {
      const [source, rawMount, type] = line.split(" ");
      if (source === undefined || rawMount === undefined || type === undefined) continue;
      const mount = rawMount.replace(
        /\\([0-7]{3})/g,
        (_, o) => String.fromCharCode(parseInt(o, 8)),
      );
      const under = mount === "/" || real === mount || real.startsWith(`${mount}/`);
      // A later line mounted on the same point hides the earlier one.
      if (under && (best === undefined || mount.length >= best.mount.length)) {
        best = { mount, type, source };
      }
    }
    return best === undefined ? "unknown" : `${best.type} on ${best.mount} (${best.source})`;
  } catch (e) {
    return `unknown (${(e as Error).message})`;
  }
}

/**
 * Runs `pg_test_fsync -s 1 -f DIR/pg_test_fsync.out` and stops it (SIGTERM, on which it removes
 * its file) once its first section, one 8 kB write per sync, is complete: the `fdatasync` figure
 * is there, and the rest would take ten more seconds of syncs.
 */
async function runFsyncTest(dir: string): Promise<FsyncTest> {
  const result: FsyncTest = {
    command: null,
    skipped: null,
    dir,
    filesystem: await filesystemOf(dir),
    fdatasync_us_per_op: NaN,
    one_8kb_write_us_per_op: {},
    load_average: await loadAverage(),
  };
  let bin: string;
  try {
    bin = join(await pgBinDir(), "pg_test_fsync");
    await Deno.stat(bin);
  } catch (e) {
    result.skipped = `pg_test_fsync not found (${(e as Error).message.split("\n")[0]})`;
    return result;
  }
  const file = join(dir, "pg_test_fsync.out");
  const args = ["-s", "1", "-f", file];
  result.command = `${bin} ${args.join(" ")}`;
  const child = new Deno.Command(bin, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  const kill = (signal: Deno.Signal): void => {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  };
  const timer = setTimeout(() => kill("SIGKILL"), 60_000);
  const stderr = new Response(child.stderr).text();
  let out = "";
  let stopped = false;
  try {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      out += chunk;
      // Printed when the second section starts: the first one is complete.
      if (!stopped && out.includes("two 8kB writes")) {
        stopped = true;
        kill("SIGTERM");
      }
    }
    await child.status;
  } finally {
    clearTimeout(timer);
    await Deno.remove(file).catch(() => {});
  }
  const first =
    /one 8kB write:[^\n]*\n(?:[^\n]*\n)?([\s\S]*?)(?:\n\s*\n|Compare|$)/.exec(out)?.[1] ?? "";
  for (const m of first.matchAll(/^\s*(\S+)\s+([\d.]+) ops\/sec\s+(\d+) usecs\/op/gm)) {
    result.one_8kb_write_us_per_op[m[1]!] = 1e6 / Number(m[2]);
  }
  const fdatasync = result.one_8kb_write_us_per_op["fdatasync"];
  if (fdatasync === undefined) {
    result.skipped = `no fdatasync figure in its output:\n${out}${await stderr}`.trimEnd();
  } else {
    result.fdatasync_us_per_op = fdatasync;
  }
  return result;
}

/** CPU seconds of some processes, by pid. */
type CpuByPid = Map<number, number>;

/**
 * D's walreceiver and its walsenders (the one to C): the children of the postmaster whose
 * process title says so.
 */
async function cascadeSenderPids(cluster: PgCluster): Promise<{ pid: number; title: string }[]> {
  const pidFile = await Deno.readTextFile(join(cluster.dataDir, "postmaster.pid"));
  const postmaster = Number(pidFile.split("\n")[0]);
  const found: { pid: number; title: string }[] = [];
  for (const pid of await childPids(postmaster)) {
    try {
      const title = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).replaceAll("\0", " ").trim();
      if (/^postgres: (walreceiver|walsender)\b/.test(title)) found.push({ pid, title });
    } catch { /* gone */ }
  }
  return found;
}

async function cpuOf(pids: number[]): Promise<CpuByPid> {
  const m: CpuByPid = new Map();
  for (const pid of pids) {
    try {
      m.set(pid, (await procCpu(pid)).self);
    } catch { /* gone: left out, which makes the difference NaN */ }
  }
  return m;
}

/** CPU seconds between two readings of the same processes; NaN if any came or went. */
function cpuBetween(before: CpuByPid, after: CpuByPid): number {
  if (before.size === 0 || before.size !== after.size) return NaN;
  let sum = 0;
  for (const [pid, t] of before) {
    const t2 = after.get(pid);
    if (t2 === undefined) return NaN;
    sum += t2 - t;
  }
  return sum;
}

/**
 * Runs the relay lag benchmark: a primary, a relay following it, a standby on each, by default a
 * cascading standby and a standby on it, and `commits × rounds` commits timed to their visibility
 * on every polled standby. Prints its tables through `log` and returns the figures; never asserts
 * a time.
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
  log(
    `\n== relay lag: commit on the primary → visible on a standby, direct vs via walrelay` +
      `${opts.cascade ? " vs via a cascading standby" : ""} ==`,
  );
  await using work = await tempDir("walrelay-bench-lag-");
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
  // Before any server starts, on the filesystem of the relay's WAL directory.
  const fsync: FsyncTest = opts.fsyncTest ? await runFsyncTest(relayParent) : {
    command: null,
    skipped: "not asked for (--no-fsync-test)",
    dir: relayParent,
    filesystem: await filesystemOf(relayParent),
    fdatasync_us_per_op: NaN,
    one_8kb_write_us_per_op: {},
    load_average: await loadAverage(),
  };

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
  await using relay = await startRelayProcess(
    opts.relayCli,
    walDir,
    pg.conninfo({ application_name: "walrelay" }),
    opts.cpuProfDir,
  );
  // After the relay started, so the backups' WAL is in the relay's directory.
  await using backupA = await basebackup(pg);
  await using backupB = await basebackup(pg);
  await using backupD = opts.cascade ? await basebackup(pg) : undefined;
  await using backupC = opts.cascade ? await basebackup(pg) : undefined;
  const standbyConf = {
    hot_standby: "on",
    wal_receiver_status_interval: "1s",
    recovery_min_apply_delay: 0,
    shared_buffers: "32MB",
  };
  const directConninfo = pg.conninfo({ application_name: "standby_direct" });
  const relayConninfo = `host=127.0.0.1 port=${relay.port} user=postgres ` +
    `application_name=standby_via_relay`;
  const cascadingConninfo = pg.conninfo({ application_name: "standby_cascading" });
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
  // A standby must allow at least as many walsenders as its primary, and needs some to cascade.
  const maxWalSenders = Number(await pg.sql("SHOW max_wal_senders"));
  await using standbyD = backupD === undefined ? undefined : await startStandby({
    dataDir: backupD.dataDir,
    primaryConninfo: cascadingConninfo,
    conf: { ...standbyConf, max_wal_senders: Math.max(maxWalSenders, 1) },
  });
  const ready = await pg.sql("SELECT pg_current_wal_flush_lsn()");
  const waitReplay = async (s: PgCluster, name: string): Promise<void> => {
    await s.waitForReplay(ready, 60_000).catch((e) => {
      throw new Error(`${name}: ${(e as Error).message}\n--- relay ---\n${relay.stderr()}`);
    });
  };
  // C starts once D holds the WAL up to C's backup end: asked for WAL beyond its flush position,
  // D would refuse, and C retry only after wal_retrieve_retry_interval.
  if (standbyD !== undefined) await waitReplay(standbyD, "standby D (cascading)");
  const cascadeConninfo = standbyD?.conninfo({ application_name: "standby_via_cascade" });
  await using standbyC = backupC === undefined || cascadeConninfo === undefined
    ? undefined
    : await startStandby({
      dataDir: backupC.dataDir,
      primaryConninfo: cascadeConninfo,
      conf: standbyConf,
    });
  await waitReplay(standbyA, "standby A (direct)");
  await waitReplay(standbyB, "standby B (via relay)");
  if (standbyC !== undefined) await waitReplay(standbyC, "standby C (via cascade)");
  const commands = {
    relay: relay.command,
    standby_direct: directConninfo,
    standby_via_relay: relayConninfo,
    standby_cascading: standbyD === undefined ? null : cascadingConninfo,
    standby_via_cascade: cascadeConninfo ?? null,
  };
  log(`primary: PostgreSQL on ${pg.port}, ${opts.segMb} MB segments, synchronous_commit on`);
  log(`relay:   ${commands.relay}`);
  log(`A:       standby, primary_conninfo '${directConninfo}'`);
  log(`B:       standby, primary_conninfo '${relayConninfo}'`);
  let cascadePids: number[] = [];
  if (standbyD !== undefined && cascadeConninfo !== undefined) {
    log(
      `D:       standby, max_wal_senders ${Math.max(maxWalSenders, 1)}, primary_conninfo ` +
        `'${cascadingConninfo}' (not polled)`,
    );
    log(`C:       standby, primary_conninfo '${cascadeConninfo}'`);
    const senders = await cascadeSenderPids(standbyD);
    cascadePids = senders.map((p) => p.pid);
    const kinds = senders.map((p) => p.title.split(" ")[1]).sort().join(", ");
    if (kinds !== "walreceiver, walsender") {
      log(`D's CPU not measured: expected a walreceiver and one walsender, found [${kinds}]`);
      cascadePids = [];
    }
  }
  log(
    `fsync:   ${fsync.filesystem} holds the relay's WAL directory; ` +
      (fsync.skipped === null
        ? `pg_test_fsync -s 1: fdatasync ${fixed(fsync.fdatasync_us_per_op, 1)} µs/op ` +
          `(one 8 kB write; ${
            Object.entries(fsync.one_8kb_write_us_per_op)
              .filter(([k]) => k !== "fdatasync")
              .map(([k, v]) => `${k} ${fixed(v, 1)}`)
              .join(", ")
          } µs/op; load average ${fsync.load_average})`
        : `no pg_test_fsync figure: ${fsync.skipped}`),
  );

  await using writer = await sqlClient(pg.port, "relay_lag_writer");
  await using pollA = await sqlClient(standbyA.port, "relay_lag_poll");
  await using pollB = await sqlClient(standbyB.port, "relay_lag_poll");
  await using pollC = standbyC === undefined
    ? undefined
    : await sqlClient(standbyC.port, "relay_lag_poll");
  const pollers = pollC === undefined ? [pollA, pollB] : [pollA, pollB, pollC];

  let nextId = 1;
  /** One commit, timed on every polled standby. */
  const commitOnce = async (): Promise<CommitSample> => {
    const id = nextId++;
    // Known once the commit returned; the lsn probe compares against it from then on.
    const known: { lsn?: bigint } = {};
    const target = (): bigint | undefined => known.lsn;
    const sent = performance.now();
    const deadline = sent + opts.timeoutMs;
    const inserted = writer.query(`INSERT INTO relay_lag VALUES (${id}, now())`);
    const poll = (): Promise<Seen>[] =>
      pollers.map((c) => pollUntilSeen(c, opts.probe, id, target, deadline));
    const early = opts.pollFrom === "send" ? poll() : undefined;
    await inserted;
    const acked = performance.now();
    const seen = early ?? poll();
    const [r] = await writer.query("SELECT pg_current_wal_flush_lsn()");
    const lsn = known.lsn = parseLsn(r!.rows[0]![0]!);
    const [direct, relayed, cascaded] = await Promise.all(seen);
    return { sent, acked, lsn, direct: direct!, relay: relayed!, cascade: cascaded };
  };
  const pause = (): Promise<void> => delay(opts.intervalMs * (0.5 + Math.random()));

  log(
    `${opts.rounds} round(s) × ${opts.commits} commits (+${opts.warmup} warm-up), one every ` +
      `~${opts.intervalMs} ms; probe ${opts.probe}, polling from ${opts.pollFrom}; ` +
      `${pollers.length} standbys polled; load average ${await loadAverage()}`,
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
    const cascadeCpuBefore = await cpuOf(cascadePids);
    const t0 = performance.now();
    const samples: CommitSample[] = [];
    for (let i = 0; i < opts.commits; i++) {
      opts.checkInterrupted();
      samples.push(await commitOnce());
      await pause();
    }
    const wall = (performance.now() - t0) / 1000;
    const cpuAfter = await procCpu(relay.pid);
    const cascadeCpuAfter = await cpuOf(cascadePids);
    all.push(...samples);
    const direct = lagStats(samples, "direct");
    const viaRelay = lagStats(samples, "relay");
    const added = addedLag(samples, "relay", direct, viaRelay);
    let cascade: CascadeRound | null = null;
    if (pollC !== undefined) {
      const viaCascade = lagStats(samples, "cascade");
      const addedCascade = addedLag(samples, "cascade", direct, viaCascade);
      const cpu = cpuBetween(cascadeCpuBefore, cascadeCpuAfter);
      cascade = {
        via_cascade: viaCascade,
        added: addedCascade,
        vs_relay: addedRatio(addedCascade, added),
        cpu_s: cpu,
        cpu_us_per_commit: (cpu / opts.commits) * 1e6,
      };
    }
    const commitMs = samples.map((s) => s.acked - s.sent);
    const relayCpu = cpuAfter.self - cpuBefore.self;
    rounds.push({
      round,
      commit_p50_ms: percentile(commitMs, 50),
      commit_p99_ms: percentile(commitMs, 99),
      direct,
      via_relay: viaRelay,
      added,
      cascade,
      relay_cpu_s: relayCpu,
      relay_cpu_us_per_commit: (relayCpu / opts.commits) * 1e6,
      wal_bytes: Number(samples.at(-1)!.lsn - samples[0]!.lsn),
      wall_s: wall,
    });
    const r = rounds.at(-1)!;
    log(
      `round ${round}: ${fixed(wall, 1)} s, WAL ${formatLsn(samples[0]!.lsn)} .. ` +
        `${formatLsn(samples.at(-1)!.lsn)}, commit p50 ${fixed(r.commit_p50_ms, 3)} ms; added ` +
        `by walrelay p50 ${fixed(r.added.p50_ms, 3)} ms, p99 ${fixed(r.added.p99_ms, 3)} ms` +
        (r.cascade === null
          ? ""
          : `, by the cascading standby p50 ${fixed(r.cascade.added.p50_ms, 3)} ms, p99 ${
            fixed(r.cascade.added.p99_ms, 3)
          } ms`) +
        `; relay CPU ${fixed(r.relay_cpu_us_per_commit, 0)} µs/commit`,
    );
  }
  const loadAtEnd = await loadAverage();
  const hwm = (await procMemory(relay.pid)).peak;

  const pooledA = lagStats(all, "direct");
  const pooledB = lagStats(all, "relay");
  const pooledAdded = addedLag(all, "relay", pooledA, pooledB);
  const med = (f: (r: RelayLagRound) => number): number => median(rounds.map(f));
  /** The median over the rounds of a cascade figure (only called with the arm on). */
  const medC = (f: (c: CascadeRound) => number): number => med((r) => f(r.cascade!));
  const summaryMedian: RelayLagSummary["median"] = {
    direct_p50_ms: med((r) => r.direct.p50_ms),
    direct_p99_ms: med((r) => r.direct.p99_ms),
    via_relay_p50_ms: med((r) => r.via_relay.p50_ms),
    via_relay_p99_ms: med((r) => r.via_relay.p99_ms),
    added_p50_ms: med((r) => r.added.p50_ms),
    added_p99_ms: med((r) => r.added.p99_ms),
    added_paired_p50_ms: med((r) => r.added.paired_p50_ms),
    added_paired_p99_ms: med((r) => r.added.paired_p99_ms),
    relay_cpu_us_per_commit: med((r) => r.relay_cpu_us_per_commit),
    cascade: null,
  };
  if (pollC !== undefined) {
    const c = {
      via_cascade_p50_ms: medC((c) => c.via_cascade.p50_ms),
      via_cascade_p99_ms: medC((c) => c.via_cascade.p99_ms),
      added_p50_ms: medC((c) => c.added.p50_ms),
      added_p99_ms: medC((c) => c.added.p99_ms),
      added_paired_p50_ms: medC((c) => c.added.paired_p50_ms),
      added_paired_p99_ms: medC((c) => c.added.paired_p99_ms),
      cpu_us_per_commit: medC((c) => c.cpu_us_per_commit),
    };
    summaryMedian.cascade = {
      ...c,
      vs_relay: {
        p50: ratio(c.added_p50_ms, summaryMedian.added_p50_ms),
        p99: ratio(c.added_p99_ms, summaryMedian.added_p99_ms),
        paired_p50: ratio(c.added_paired_p50_ms, summaryMedian.added_paired_p50_ms),
        paired_p99: ratio(c.added_paired_p99_ms, summaryMedian.added_paired_p99_ms),
      },
    };
  }
  let pooledCascade: RelayLagSummary["pooled"]["cascade"] = null;
  if (pollC !== undefined) {
    const viaCascade = lagStats(all, "cascade");
    const added = addedLag(all, "cascade", pooledA, viaCascade);
    pooledCascade = { via_cascade: viaCascade, added, vs_relay: addedRatio(added, pooledAdded) };
  }
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
      cascade: opts.cascade,
      fsync_test: opts.fsyncTest,
    },
    commands,
    relay_fsync: fsync,
    load_average_at_start: loadAtStart,
    load_average_at_end: loadAtEnd,
    rounds,
    median: summaryMedian,
    pooled: { direct: pooledA, via_relay: pooledB, added: pooledAdded, cascade: pooledCascade },
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
    rows.push(statRow(`round ${r.round} B via walrelay`, r.via_relay));
    if (r.cascade !== null) {
      rows.push(statRow(`round ${r.round} C via cascade`, r.cascade.via_cascade));
    }
  }
  rows.push(statRow("all A direct", pooledA));
  rows.push(statRow("all B via walrelay", pooledB));
  if (pooledCascade !== null) rows.push(statRow("all C via cascade", pooledCascade.via_cascade));
  log(table(
    ["standby", "n", "p50", "p90", "p99", "max", "p50 send", "p99 send", "poll rtt", "polls"],
    rows,
  ));
  log(
    pollC === undefined
      ? `\nadded by walrelay (B − A, ms): p50/p99 of B minus those of A; paired = per commit; ` +
        `CPU = the relay process`
      : `\nadded lag (ms): B − A by walrelay, C − A by a PostgreSQL cascading standby; p50/p99 ` +
        `of B (C) minus those of A; paired = per commit; CPU = the relay process (B rows), D's ` +
        `walreceiver + walsender (C rows)`,
  );
  const addedRow = (label: string, a: AddedLag, cpu: number | undefined): string[] => [
    label,
    ms(a.p50_ms),
    ms(a.p99_ms),
    ms(a.paired_p50_ms),
    ms(a.paired_p90_ms),
    ms(a.paired_p99_ms),
    ms(a.paired_max_ms),
    cpu === undefined ? "" : fixed(cpu, 0),
  ];
  const addedRows: string[][] = [];
  for (const r of rounds) {
    addedRows.push(addedRow(`round ${r.round} B − A walrelay`, r.added, r.relay_cpu_us_per_commit));
    if (r.cascade !== null) {
      addedRows.push(
        addedRow(`round ${r.round} C − A cascade`, r.cascade.added, r.cascade.cpu_us_per_commit),
      );
    }
  }
  addedRows.push(addedRow(
    "median B − A walrelay",
    {
      p50_ms: summary.median.added_p50_ms,
      p99_ms: summary.median.added_p99_ms,
      paired_p50_ms: summary.median.added_paired_p50_ms,
      paired_p90_ms: med((r) => r.added.paired_p90_ms),
      paired_p99_ms: summary.median.added_paired_p99_ms,
      paired_max_ms: med((r) => r.added.paired_max_ms),
    },
    summary.median.relay_cpu_us_per_commit,
  ));
  const mc = summary.median.cascade;
  if (mc !== null) {
    addedRows.push(addedRow(
      "median C − A cascade",
      {
        p50_ms: mc.added_p50_ms,
        p99_ms: mc.added_p99_ms,
        paired_p50_ms: mc.added_paired_p50_ms,
        paired_p90_ms: medC((c) => c.added.paired_p90_ms),
        paired_p99_ms: mc.added_paired_p99_ms,
        paired_max_ms: medC((c) => c.added.paired_max_ms),
      },
      mc.cpu_us_per_commit,
    ));
  }
  addedRows.push(addedRow("all B − A walrelay", pooledAdded, undefined));
  if (pooledCascade !== null) {
    addedRows.push(addedRow("all C − A cascade", pooledCascade.added, undefined));
  }
  log(table(
    ["", "p50", "p99", "paired p50", "paired p90", "paired p99", "paired max", "CPU µs/commit"],
    addedRows,
  ));
  if (mc !== null && pooledCascade !== null) {
    log(
      `\nadded by the cascading standby / added by walrelay, (C − A) / (B − A): > 1 means ` +
        `walrelay adds less; n/a when either is ≤ 0; median of rounds = ratio of the medians`,
    );
    const x = (n: number): string => fixed(n, 2);
    const ratioRow = (label: string, q: AddedRatio): string[] => [
      label,
      x(q.p50),
      x(q.p99),
      x(q.paired_p50),
      x(q.paired_p99),
    ];
    log(table(
      ["", "p50", "p99", "paired p50", "paired p99"],
      [
        ...rounds.map((r) => ratioRow(`round ${r.round}`, r.cascade!.vs_relay)),
        ratioRow("median of rounds", mc.vs_relay),
        ratioRow("all commits", pooledCascade.vs_relay),
      ],
    ));
  }
  log(
    `\nmedian p50: A ${ms(summary.median.direct_p50_ms)} ms, B ` +
      `${ms(summary.median.via_relay_p50_ms)} ms` +
      (mc === null ? "" : `, C ${ms(mc.via_cascade_p50_ms)} ms`) +
      `; median p99: A ${ms(summary.median.direct_p99_ms)} ms, B ` +
      `${ms(summary.median.via_relay_p99_ms)} ms` +
      (mc === null ? "" : `, C ${ms(mc.via_cascade_p99_ms)} ms`),
  );
  log(
    `added by walrelay: p50 ${ms(summary.median.added_p50_ms)} ms, p99 ` +
      `${ms(summary.median.added_p99_ms)} ms (median of ${rounds.length} round(s)); target p99 ` +
      `added ≤ 1 ms: ${summary.target_p99_added_le_1ms ? "met" : "not met"}; relay VmHWM ` +
      `${fixed(hwm / (1024 * 1024), 1)} MiB; load average ${loadAtStart} at start, ` +
      `${loadAtEnd} at end`,
  );
  if (mc !== null) {
    log(
      `added by a PostgreSQL cascading standby: p50 ${ms(mc.added_p50_ms)} ms, p99 ` +
        `${ms(mc.added_p99_ms)} ms; cascade / walrelay: p50 ${fixed(mc.vs_relay.p50, 2)}, p99 ` +
        `${fixed(mc.vs_relay.p99, 2)}`,
    );
  }
  if (fsync.skipped === null) {
    log(
      `relay WAL filesystem fdatasync (pg_test_fsync, before the setup): ` +
        `${fixed(fsync.fdatasync_us_per_op, 1)} µs/op`,
    );
  }

  await writer.terminate();
  await pollA.terminate();
  await pollB.terminate();
  await pollC?.terminate();
  await standbyC?.stop("fast");
  await standbyD?.stop("fast");
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
  --no-cascade      leave out PostgreSQL's cascading standby (D) and the standby C on it
  --no-fsync-test   do not run pg_test_fsync -s 1 on the relay's WAL filesystem first
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
      "no-cascade": { type: "boolean", default: false },
      "no-fsync-test": { type: "boolean", default: false },
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
    cascade: !values["no-cascade"],
    fsyncTest: !values["no-fsync-test"],
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
