/**
 * Relay lag benchmark: the lag a relay adds between a commit on the primary and its
 * visibility on a standby fed through it, against a standby fed by the primary directly, with
 * PostgreSQL's own relay (a cascading standby) measured side by side in the same run.
 *
 * ```
 * deno run -A bench/relay_lag.ts [--commits 1000] [--rounds 3] [--warmup 50]
 *                                [--interval-ms 5] [--seg-mb 16] [--probe lsn|row]
 *                                [--poll-from ack|send] [--no-cascade] [--no-fsync-test]
 *                                [--no-floor] [--steady-s 10]
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
 * processes doing the relay's work; D's replay is not counted). The relay's `fdatasync`s of the
 * round, and their mean time, come from its `/status` (`--http`): nothing is sent before its
 * sync, so that mean is the disk's share of what the relay adds.
 *
 * Before the setup, `pg_test_fsync -s 1` runs on the filesystem of the relay's WAL directory
 * (`--no-fsync-test` skips it), stopped after its first section (one 8 kB write per sync); the
 * header prints its `fdatasync` µs/op: the price of the relay's durability on that disk, alone.
 * The relay's and D's syncs during the rounds compete with the primary's and the standbys'.
 *
 * After the rounds, a steady phase (`--steady-s`, 10 s by default) commits one row every
 * `--interval-ms` at a fixed pace with no standby polled, and prints the relay's CPU per commit
 * beside D's walreceiver and walsender: what relaying costs without the rounds' three poll loops
 * competing for the two cores (the standbys still replay every commit).
 *
 * Then `_relay_floor.ts` does what the relay's system calls per commit are (read the
 * upstream's XLogData, write, `fdatasync`, send to the standby, send a status update, read the
 * standby's replies) from a bare Deno loop, as many commits paced the same way, and its CPU per
 * commit is printed beside the relay's and the cascade's (`--no-floor` skips it): what no Deno
 * program relaying and syncing each commit gets below on this machine.
 *
 * Used by `bench.ts` through {@linkcode runRelayLagBenchmark}; run alone, it writes its JSON into
 * `bench/out/relay_lag.json` (or `--out FILE`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  basebackup,
  delay,
  type PgCluster,
  REPO_ROOT,
  startPrimary,
  startStandby,
  tempDir,
} from "../tests/_pg.ts";
import { PgClient } from "../lib/pgwire/client.ts";
import {
  type AddedLag,
  addedLag,
  type AddedRatio,
  addedRatio,
  type CommitSample,
  type LagStats,
  lagStats,
  type Seen,
} from "./_lag_stats.ts";
import { type FsyncTest, runFsyncTest, skippedFsyncTest } from "./_pg_test_fsync.ts";
import { measureRelayFloor, type RelayFloor } from "./_relay_floor.ts";
import {
  childPids,
  cpuBetween,
  cpuOf,
  loadAverage,
  postmasterPid,
  procCpu,
  procMemory,
} from "./_proc.ts";
import { type DenoRelay, startDenoRelay } from "./_setup.ts";
import { median, percentile, ratio } from "./_stats.ts";
import {
  fixed,
  formatLsn,
  interruptOnSigint,
  intOption,
  mib,
  parseLsn,
  table,
  usageError,
} from "./_util.ts";

export type { AddedLag, AddedRatio, FsyncTest, LagStats, RelayFloor };

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
  /** More arguments for the relay (the bench's `--workers`). */
  relayArgs?: string[];
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
  /**
   * After the rounds, measures what the relay's system calls per commit cost a bare Deno loop
   * (`_relay_floor.ts`), paced as the commits were, with its file beside the relay's WAL
   * directory (default true).
   */
  floor: boolean;
  /**
   * After the rounds, seconds of commits at a fixed pace (one every `intervalMs`) with no
   * standby polled, for the relay's and the cascade's CPU per commit without the polls'
   * competition (default 10; 0 leaves it out).
   */
  steadySeconds: number;
  /** Gives up on a commit a standby has not shown after this many milliseconds (default 10000). */
  timeoutMs: number;
  /** Where progress lines and tables go (default `console.log`). */
  log: (line: string) => void;
  /** Throws when the run was interrupted (default: never). */
  checkInterrupted: () => void;
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
  /**
   * The relay's `fdatasync` calls during the round and their mean and total time (its `/status`
   * `upstream.wal_syncs`, `wal_sync_seconds`): the disk's share of what it adds, since nothing is
   * sent before its sync. Null for a relay that does not report them.
   */
  relay_syncs: { count: number; mean_ms: number; total_s: number } | null;
  /** Bytes of WAL of the round (first to last commit's flush LSN). */
  wal_bytes: number;
  /** Duration of the round. */
  wall_s: number;
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
    /** Whether the floor was measured. */
    floor: boolean;
    /** Seconds of the steady phase; 0 when left out. */
    steady_s: number;
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
    /** Median of the rounds' mean `fdatasync` time of the relay; null when it reports none. */
    relay_sync_mean_ms: number | null;
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
  /** A bare Deno loop's CPU for the relay's system calls per commit; null when not measured. */
  floor: RelayFloor | null;
  /** The steady phase; null when left out. */
  steady: SteadyCpu | null;
}

/** Commits at a fixed pace with no standby polled, and what the relays spent on them. */
export interface SteadyCpu {
  /** Commits made. */
  commits: number;
  /** How long they took. */
  wall_s: number;
  /** The relay process's CPU (user + system) per commit. */
  relay_cpu_us_per_commit: number;
  /** D's walreceiver and walsender to C per commit; null without the cascade arm. */
  cascade_cpu_us_per_commit: number | null;
  /** cascade / relay CPU per commit: ≥ 1 when the relay costs no more; null without the arm. */
  cpu_cascade_over_relay: number | null;
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
  cascade: true,
  fsyncTest: true,
  floor: true,
  steadySeconds: 10,
  timeoutMs: 10_000,
  log: (line) => console.log(line),
  checkInterrupted: () => {},
};

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

/**
 * D's walreceiver and its walsenders (the one to C): the children of the postmaster whose
 * process title says so.
 */
async function cascadeSenderPids(cluster: PgCluster): Promise<{ pid: number; title: string }[]> {
  const postmaster = await postmasterPid(cluster.dataDir);
  const found: { pid: number; title: string }[] = [];
  for (const pid of await childPids(postmaster)) {
    try {
      const title = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).replaceAll("\0", " ").trim();
      if (/^postgres: (walreceiver|walsender)\b/.test(title)) found.push({ pid, title });
    } catch { /* gone */ }
  }
  return found;
}

/** The servers of one run, and the in-process connections that write and poll. */
interface Topology extends AsyncDisposable {
  pg: PgCluster;
  relay: DenoRelay;
  /** The relay's `/status`, for its WAL syncs. */
  relayStatusUrl: string;
  /** The relay's WAL directory. */
  walDir: string;
  fsync: FsyncTest;
  commands: RelayLagSummary["commands"];
  /** The connection that commits, on the primary. */
  writer: PgClient;
  /** One connection per polled standby: A, B and, with the cascade arm, C. */
  pollers: PgClient[];
  /** D's walreceiver and walsender to C, whose CPU is measured; empty without the arm. */
  cascadePids: number[];
  /** Closes the connections and stops the servers in order; returns the relay's exit status. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * The relay's WAL directory, under `relayWalParent` when given (removed again at the end), and
 * the `pg_test_fsync` figures of its filesystem, measured before any server starts.
 */
async function prepareRelayWalDir(
  opts: RelayLagOptions,
  stack: AsyncDisposableStack,
): Promise<{ walDir: string; fsync: FsyncTest }> {
  const work = stack.use(await tempDir("walrelay-bench-lag-"));
  let parent = work.path;
  if (opts.relayWalParent !== undefined) {
    const dir = await Deno.makeTempDir({ dir: opts.relayWalParent, prefix: "walrelay-lag-" });
    stack.defer(() => Deno.remove(dir, { recursive: true }).catch(() => {}));
    parent = dir;
  }
  const walDir = join(parent, "relay-wal");
  await Deno.mkdir(walDir);
  const fsync = opts.fsyncTest
    ? await runFsyncTest(parent)
    : await skippedFsyncTest(parent, "not asked for (--no-fsync-test)");
  return { walDir, fsync };
}

/**
 * Starts the primary, the relay following it, and the standbys: A on the primary, B on the relay,
 * and with the cascade arm D on the primary and C on D. Returns once every polled standby has
 * replayed up to the primary's position after the setup.
 */
async function startServers(
  opts: RelayLagOptions,
  stack: AsyncDisposableStack,
  walDir: string,
): Promise<{
  pg: PgCluster;
  relay: DenoRelay;
  relayStatusUrl: string;
  standbys: PgCluster[];
  d: PgCluster | undefined;
  commands: RelayLagSummary["commands"];
  dMaxWalSenders: number;
}> {
  const pg = stack.use(
    await startPrimary({
      walSegSize: opts.segMb,
      conf: {
        synchronous_commit: "on",
        autovacuum: "off",
        checkpoint_timeout: "1h",
        max_wal_size: "1GB",
        wal_keep_size: "512MB",
      },
    }),
  );
  await pg.sql("CREATE TABLE relay_lag (id int PRIMARY KEY, t timestamptz)");
  const relay = stack.use(
    await startDenoRelay({
      cli: opts.relayCli,
      walDir,
      args: [
        "--upstream",
        pg.conninfo({ application_name: "walrelay" }),
        "--log-format",
        "text",
        ...(opts.relayArgs ?? []),
      ],
      cpuProfDir: opts.cpuProfDir,
      http: true,
    }),
  );
  // After the relay started, so the backups' WAL is in the relay's directory.
  const backupA = stack.use(await basebackup(pg));
  const backupB = stack.use(await basebackup(pg));
  const backupD = opts.cascade ? stack.use(await basebackup(pg)) : undefined;
  const backupC = opts.cascade ? stack.use(await basebackup(pg)) : undefined;
  const standbyConf: Record<string, string | number> = {
    hot_standby: "on",
    wal_receiver_status_interval: "1s",
    recovery_min_apply_delay: 0,
    shared_buffers: "32MB",
  };
  const directConninfo = pg.conninfo({ application_name: "standby_direct" });
  const relayConninfo = `host=127.0.0.1 port=${relay.port} user=postgres ` +
    `application_name=standby_via_relay`;
  const cascadingConninfo = pg.conninfo({ application_name: "standby_cascading" });
  const standby = async (
    dataDir: string,
    primaryConninfo: string,
    conf = standbyConf,
  ): Promise<PgCluster> => stack.use(await startStandby({ dataDir, primaryConninfo, conf }));
  const a = await standby(backupA.dataDir, directConninfo);
  const b = await standby(backupB.dataDir, relayConninfo);
  // A standby must allow at least as many walsenders as its primary, and needs some to cascade.
  const dMaxWalSenders = Math.max(Number(await pg.sql("SHOW max_wal_senders")), 1);
  const d = backupD === undefined ? undefined : await standby(
    backupD.dataDir,
    cascadingConninfo,
    { ...standbyConf, max_wal_senders: dMaxWalSenders },
  );
  const ready = await pg.sql("SELECT pg_current_wal_flush_lsn()");
  const waitReplay = async (s: PgCluster, name: string): Promise<void> => {
    await s.waitForReplay(ready, 60_000).catch((e) => {
      throw new Error(`${name}: ${(e as Error).message}\n--- relay ---\n${relay.stderr()}`);
    });
  };
  // C starts once D holds the WAL up to C's backup end: asked for WAL beyond its flush position,
  // D would refuse, and C retry only after wal_retrieve_retry_interval.
  if (d !== undefined) await waitReplay(d, "standby D (cascading)");
  const cascadeConninfo = d?.conninfo({ application_name: "standby_via_cascade" });
  const c = backupC === undefined || cascadeConninfo === undefined
    ? undefined
    : await standby(backupC.dataDir, cascadeConninfo);
  await waitReplay(a, "standby A (direct)");
  await waitReplay(b, "standby B (via relay)");
  if (c !== undefined) await waitReplay(c, "standby C (via cascade)");
  return {
    pg,
    relay,
    relayStatusUrl: new URL("status", relay.httpUrl).href,
    standbys: c === undefined ? [a, b] : [a, b, c],
    d,
    commands: {
      relay: relay.command,
      standby_direct: directConninfo,
      standby_via_relay: relayConninfo,
      standby_cascading: d === undefined ? null : cascadingConninfo,
      standby_via_cascade: cascadeConninfo ?? null,
    },
    dMaxWalSenders,
  };
}

/**
 * D's walreceiver and walsender to C, whose CPU stands for the cascading relay's work; empty (and
 * said so) when D does not run exactly those two.
 */
async function cascadeCpuPids(d: PgCluster, log: (line: string) => void): Promise<number[]> {
  const senders = await cascadeSenderPids(d);
  const kinds = senders.map((p) => p.title.split(" ")[1]).sort().join(", ");
  if (kinds !== "walreceiver, walsender") {
    log(`D's CPU not measured: expected a walreceiver and one walsender, found [${kinds}]`);
    return [];
  }
  return senders.map((p) => p.pid);
}

/** The header line on the relay WAL directory's filesystem and its fdatasync cost. */
function fsyncLine(fsync: FsyncTest): string {
  return `fsync:   ${fsync.filesystem} holds the relay's WAL directory; ` +
    (fsync.skipped === null
      ? `pg_test_fsync -s 1: fdatasync ${fixed(fsync.fdatasync_us_per_op, 1)} µs/op ` +
        `(one 8 kB write; ${
          Object.entries(fsync.one_8kb_write_us_per_op)
            .filter(([k]) => k !== "fdatasync")
            .map(([k, v]) => `${k} ${fixed(v, 1)}`)
            .join(", ")
        } µs/op; load average ${fsync.load_average})`
      : `no pg_test_fsync figure: ${fsync.skipped}`);
}

/** Sets up everything a run measures, printing what it started. */
async function setUp(opts: RelayLagOptions): Promise<Topology> {
  const { log } = opts;
  await using stack = new AsyncDisposableStack();
  const { walDir, fsync } = await prepareRelayWalDir(opts, stack);
  const { pg, relay, relayStatusUrl, standbys, d, commands, dMaxWalSenders } = await startServers(
    opts,
    stack,
    walDir,
  );
  log(`primary: PostgreSQL on ${pg.port}, ${opts.segMb} MB segments, synchronous_commit on`);
  log(`relay:   ${commands.relay}`);
  log(`A:       standby, primary_conninfo '${commands.standby_direct}'`);
  log(`B:       standby, primary_conninfo '${commands.standby_via_relay}'`);
  let cascadePids: number[] = [];
  if (d !== undefined && commands.standby_via_cascade !== null) {
    log(
      `D:       standby, max_wal_senders ${dMaxWalSenders}, primary_conninfo ` +
        `'${commands.standby_cascading}' (not polled)`,
    );
    log(`C:       standby, primary_conninfo '${commands.standby_via_cascade}'`);
    cascadePids = await cascadeCpuPids(d, log);
  }
  log(fsyncLine(fsync));

  const writer = stack.use(await sqlClient(pg.port, "relay_lag_writer"));
  const pollers: PgClient[] = [];
  for (const s of standbys) pollers.push(stack.use(await sqlClient(s.port, "relay_lag_poll")));
  const owned = stack.move();
  return {
    pg,
    relay,
    relayStatusUrl,
    walDir,
    fsync,
    commands,
    writer,
    pollers,
    cascadePids,
    async stop(): Promise<Deno.CommandStatus> {
      await writer.terminate();
      for (const c of pollers) await c.terminate();
      // C, D, B, A: each standby before the server it streams from.
      const [a, b, c] = standbys;
      for (const s of [c, d, b, a]) await s?.stop("fast");
      return await relay.stop("SIGTERM", 10_000);
    },
    [Symbol.asyncDispose]: () => owned.disposeAsync(),
  };
}

/** Commits one by one and times each on every polled standby. */
class Committer {
  #nextId = 1;

  constructor(readonly top: Topology, readonly opts: RelayLagOptions) {}

  /** One commit, timed on every polled standby. */
  async commitOnce(): Promise<CommitSample> {
    const { writer, pollers } = this.top;
    const { opts } = this;
    const id = this.#nextId++;
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
  }

  /**
   * `count` commits, each followed by a pause of [0.5, 1.5] × `intervalMs` once every polled
   * standby saw it, so commits do not queue behind each other.
   */
  async commits(count: number): Promise<CommitSample[]> {
    const samples: CommitSample[] = [];
    for (let i = 0; i < count; i++) {
      this.opts.checkInterrupted();
      samples.push(await this.commitOnce());
      await delay(this.opts.intervalMs * (0.5 + Math.random()));
    }
    return samples;
  }
}

/** The relay's WAL syncs so far, from its `/status`; null if it does not report them. */
async function relaySyncs(url: string): Promise<{ count: number; seconds: number } | null> {
  const u = (await (await fetch(url)).json()).upstream;
  return typeof u?.wal_syncs === "number"
    ? { count: u.wal_syncs, seconds: u.wal_sync_seconds }
    : null;
}

/** The syncs between two readings of {@linkcode relaySyncs}; null without any. */
function syncsBetween(
  before: { count: number; seconds: number } | null,
  after: { count: number; seconds: number } | null,
): RelayLagRound["relay_syncs"] {
  if (!before || !after || after.count <= before.count) return null;
  const count = after.count - before.count;
  const total = after.seconds - before.seconds;
  return { count, mean_ms: (1000 * total) / count, total_s: total };
}

/**
 * Starts measuring the CPU of the relay and of D's walreceiver and walsender (none without the
 * cascade arm); the function returned gives each one's seconds since.
 */
async function relaysCpu(
  top: Topology,
): Promise<() => Promise<{ relay: number; cascade: number | null }>> {
  const relay = await procCpu(top.relay.pid);
  const cascade = await cpuOf(top.cascadePids);
  return async () => ({
    relay: (await procCpu(top.relay.pid)).self - relay.self,
    cascade: top.cascadePids.length > 0 ? cpuBetween(cascade, await cpuOf(top.cascadePids)) : null,
  });
}

/**
 * The steady phase: commits one every `intervalMs` for `steadySeconds`, none of them polled
 * for (the standbys replay them all the same), and the relay's and D's CPU over them.
 */
async function runSteady(top: Topology, opts: RelayLagOptions): Promise<SteadyCpu> {
  const cpuSince = await relaysCpu(top);
  const t0 = performance.now();
  const until = t0 + opts.steadySeconds * 1000;
  let commits = 0;
  let id = -1;
  for (let next = t0; performance.now() < until;) {
    opts.checkInterrupted();
    // Negative ids: the rounds' rows keep their numbering.
    await top.writer.query(`INSERT INTO relay_lag VALUES (${id--}, now())`);
    commits++;
    // A fixed pace, not a pause after each: a slow commit does not slow the rate.
    next += opts.intervalMs;
    const wait = next - performance.now();
    if (wait > 0) await delay(wait);
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = await cpuSince();
  const relayUs = (cpu.relay / commits) * 1e6;
  const cascadeUs = cpu.cascade === null ? null : (cpu.cascade / commits) * 1e6;
  return {
    commits,
    wall_s: wall,
    relay_cpu_us_per_commit: relayUs,
    cascade_cpu_us_per_commit: cascadeUs,
    cpu_cascade_over_relay: cascadeUs === null ? null : ratio(cascadeUs, relayUs),
  };
}

/** The line printed after the steady phase. */
function steadyLine(s: SteadyCpu): string {
  return `steady: ${s.commits} commits in ${fixed(s.wall_s, 1)} s, none polled; relay CPU ` +
    `${fixed(s.relay_cpu_us_per_commit, 0)} µs/commit` +
    (s.cascade_cpu_us_per_commit === null
      ? ""
      : `, the cascading standby's ${
        fixed(s.cascade_cpu_us_per_commit, 0)
      } µs/commit (walreceiver + walsender); cpu cascade/relay ${
        fixed(s.cpu_cascade_over_relay ?? NaN)
      }`);
}

/** One round: `commits` commits and the relay's (and D's) CPU over them. */
async function runRound(
  round: number,
  committer: Committer,
): Promise<{ figures: RelayLagRound; samples: CommitSample[] }> {
  const { top, opts } = committer;
  const syncsBefore = await relaySyncs(top.relayStatusUrl);
  const cpuSince = await relaysCpu(top);
  const t0 = performance.now();
  const samples = await committer.commits(opts.commits);
  const wall = (performance.now() - t0) / 1000;
  const cpu = await cpuSince();
  const syncsAfter = await relaySyncs(top.relayStatusUrl);
  const direct = lagStats(samples, "direct");
  const viaRelay = lagStats(samples, "relay");
  const added = addedLag(samples, "relay", direct, viaRelay);
  let cascade: CascadeRound | null = null;
  if (top.pollers.length > 2) {
    const viaCascade = lagStats(samples, "cascade");
    const addedCascade = addedLag(samples, "cascade", direct, viaCascade);
    const cascadeCpu = cpu.cascade ?? NaN;
    cascade = {
      via_cascade: viaCascade,
      added: addedCascade,
      vs_relay: addedRatio(addedCascade, added),
      cpu_s: cascadeCpu,
      cpu_us_per_commit: (cascadeCpu / opts.commits) * 1e6,
    };
  }
  const commitMs = samples.map((s) => s.acked - s.sent);
  const relayCpu = cpu.relay;
  const figures: RelayLagRound = {
    round,
    commit_p50_ms: percentile(commitMs, 50),
    commit_p99_ms: percentile(commitMs, 99),
    direct,
    via_relay: viaRelay,
    added,
    cascade,
    relay_cpu_s: relayCpu,
    relay_cpu_us_per_commit: (relayCpu / opts.commits) * 1e6,
    relay_syncs: syncsBetween(syncsBefore, syncsAfter),
    wal_bytes: Number(samples.at(-1)!.lsn - samples[0]!.lsn),
    wall_s: wall,
  };
  return { figures, samples };
}

/** The progress line after a round. */
function roundLine(r: RelayLagRound, samples: CommitSample[]): string {
  return `round ${r.round}: ${fixed(r.wall_s, 1)} s, WAL ${formatLsn(samples[0]!.lsn)} .. ` +
    `${formatLsn(samples.at(-1)!.lsn)}, commit p50 ${fixed(r.commit_p50_ms, 3)} ms; added ` +
    `by walrelay p50 ${fixed(r.added.p50_ms, 3)} ms, p99 ${fixed(r.added.p99_ms, 3)} ms` +
    (r.cascade === null
      ? ""
      : `, by the cascading standby p50 ${fixed(r.cascade.added.p50_ms, 3)} ms, p99 ${
        fixed(r.cascade.added.p99_ms, 3)
      } ms`) +
    `; relay CPU ${fixed(r.relay_cpu_us_per_commit, 0)} µs/commit` +
    (r.relay_syncs === null
      ? ""
      : `; relay fdatasync ${r.relay_syncs.count} × ${fixed(r.relay_syncs.mean_ms, 3)} ms`);
}

/** Medians over the rounds of the per-round figures; the cascade's when its arm ran. */
function medians(rounds: RelayLagRound[], cascade: boolean): RelayLagSummary["median"] {
  const med = (f: (r: RelayLagRound) => number): number => median(rounds.map(f));
  const m: RelayLagSummary["median"] = {
    direct_p50_ms: med((r) => r.direct.p50_ms),
    direct_p99_ms: med((r) => r.direct.p99_ms),
    via_relay_p50_ms: med((r) => r.via_relay.p50_ms),
    via_relay_p99_ms: med((r) => r.via_relay.p99_ms),
    added_p50_ms: med((r) => r.added.p50_ms),
    added_p99_ms: med((r) => r.added.p99_ms),
    added_paired_p50_ms: med((r) => r.added.paired_p50_ms),
    added_paired_p99_ms: med((r) => r.added.paired_p99_ms),
    relay_cpu_us_per_commit: med((r) => r.relay_cpu_us_per_commit),
    relay_sync_mean_ms: rounds.every((r) => r.relay_syncs !== null)
      ? med((r) => r.relay_syncs!.mean_ms)
      : null,
    cascade: null,
  };
  if (!cascade) return m;
  const medC = (f: (c: CascadeRound) => number): number => med((r) => f(r.cascade!));
  const c = {
    via_cascade_p50_ms: medC((c) => c.via_cascade.p50_ms),
    via_cascade_p99_ms: medC((c) => c.via_cascade.p99_ms),
    added_p50_ms: medC((c) => c.added.p50_ms),
    added_p99_ms: medC((c) => c.added.p99_ms),
    added_paired_p50_ms: medC((c) => c.added.paired_p50_ms),
    added_paired_p99_ms: medC((c) => c.added.paired_p99_ms),
    cpu_us_per_commit: medC((c) => c.cpu_us_per_commit),
  };
  m.cascade = {
    ...c,
    vs_relay: {
      p50: ratio(c.added_p50_ms, m.added_p50_ms),
      p99: ratio(c.added_p99_ms, m.added_p99_ms),
      paired_p50: ratio(c.added_paired_p50_ms, m.added_paired_p50_ms),
      paired_p99: ratio(c.added_paired_p99_ms, m.added_paired_p99_ms),
    },
  };
  return m;
}

/** Every round's commits together. */
function pooled(all: CommitSample[], cascade: boolean): RelayLagSummary["pooled"] {
  const direct = lagStats(all, "direct");
  const viaRelay = lagStats(all, "relay");
  const added = addedLag(all, "relay", direct, viaRelay);
  let c: RelayLagSummary["pooled"]["cascade"] = null;
  if (cascade) {
    const viaCascade = lagStats(all, "cascade");
    const addedC = addedLag(all, "cascade", direct, viaCascade);
    c = { via_cascade: viaCascade, added: addedC, vs_relay: addedRatio(addedC, added) };
  }
  return { direct, via_relay: viaRelay, added, cascade: c };
}

const ms = (n: number): string => fixed(n, 3);

/** The table of each standby's lag, per round and over all commits. */
function standbyTable(summary: RelayLagSummary): string {
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
  for (const r of summary.rounds) {
    rows.push(statRow(`round ${r.round} A direct`, r.direct));
    rows.push(statRow(`round ${r.round} B via walrelay`, r.via_relay));
    if (r.cascade !== null) {
      rows.push(statRow(`round ${r.round} C via cascade`, r.cascade.via_cascade));
    }
  }
  const all = summary.pooled;
  rows.push(statRow("all A direct", all.direct));
  rows.push(statRow("all B via walrelay", all.via_relay));
  if (all.cascade !== null) rows.push(statRow("all C via cascade", all.cascade.via_cascade));
  return table(
    ["standby", "n", "p50", "p90", "p99", "max", "p50 send", "p99 send", "poll rtt", "polls"],
    rows,
  );
}

/** The table of what each relay added: per round, medians of the rounds, all commits. */
function addedTable(summary: RelayLagSummary): string {
  const { rounds, median: m, pooled: all } = summary;
  const med = (f: (r: RelayLagRound) => number): number => median(rounds.map(f));
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
  const rows: string[][] = [];
  for (const r of rounds) {
    rows.push(addedRow(`round ${r.round} B − A walrelay`, r.added, r.relay_cpu_us_per_commit));
    if (r.cascade !== null) {
      rows.push(
        addedRow(`round ${r.round} C − A cascade`, r.cascade.added, r.cascade.cpu_us_per_commit),
      );
    }
  }
  rows.push(addedRow(
    "median B − A walrelay",
    {
      p50_ms: m.added_p50_ms,
      p99_ms: m.added_p99_ms,
      paired_p50_ms: m.added_paired_p50_ms,
      paired_p90_ms: med((r) => r.added.paired_p90_ms),
      paired_p99_ms: m.added_paired_p99_ms,
      paired_max_ms: med((r) => r.added.paired_max_ms),
    },
    m.relay_cpu_us_per_commit,
  ));
  const mc = m.cascade;
  if (mc !== null) {
    rows.push(addedRow(
      "median C − A cascade",
      {
        p50_ms: mc.added_p50_ms,
        p99_ms: mc.added_p99_ms,
        paired_p50_ms: mc.added_paired_p50_ms,
        paired_p90_ms: med((r) => r.cascade!.added.paired_p90_ms),
        paired_p99_ms: mc.added_paired_p99_ms,
        paired_max_ms: med((r) => r.cascade!.added.paired_max_ms),
      },
      mc.cpu_us_per_commit,
    ));
  }
  rows.push(addedRow("all B − A walrelay", all.added, undefined));
  if (all.cascade !== null) rows.push(addedRow("all C − A cascade", all.cascade.added, undefined));
  return table(
    ["", "p50", "p99", "paired p50", "paired p90", "paired p99", "paired max", "CPU µs/commit"],
    rows,
  );
}

/** The table of (C − A) / (B − A); only with the cascade arm. */
function ratioTable(summary: RelayLagSummary, mc: CascadeMedian, all: AddedRatio): string {
  const x = (n: number): string => fixed(n, 2);
  const ratioRow = (label: string, q: AddedRatio): string[] => [
    label,
    x(q.p50),
    x(q.p99),
    x(q.paired_p50),
    x(q.paired_p99),
  ];
  return table(
    ["", "p50", "p99", "paired p50", "paired p99"],
    [
      ...summary.rounds.map((r) => ratioRow(`round ${r.round}`, r.cascade!.vs_relay)),
      ratioRow("median of rounds", mc.vs_relay),
      ratioRow("all commits", all),
    ],
  );
}

/** Prints the tables and the closing lines of a run. */
function printSummary(summary: RelayLagSummary, log: (line: string) => void): void {
  const { median: m, pooled: all } = summary;
  const mc = m.cascade;
  log(
    `\nlag = visible on the standby − commit returned to the writer (ms); "from send" = − ` +
      `INSERT sent; poll rtt = resolution`,
  );
  log(standbyTable(summary));
  log(
    mc === null
      ? `\nadded by walrelay (B − A, ms): p50/p99 of B minus those of A; paired = per commit; ` +
        `CPU = the relay process`
      : `\nadded lag (ms): B − A by walrelay, C − A by a PostgreSQL cascading standby; p50/p99 ` +
        `of B (C) minus those of A; paired = per commit; CPU = the relay process (B rows), D's ` +
        `walreceiver + walsender (C rows)`,
  );
  log(addedTable(summary));
  if (mc !== null && all.cascade !== null) {
    log(
      `\nadded by the cascading standby / added by walrelay, (C − A) / (B − A): > 1 means ` +
        `walrelay adds less; n/a when either is ≤ 0; median of rounds = ratio of the medians`,
    );
    log(ratioTable(summary, mc, all.cascade.vs_relay));
  }
  log(
    `\nmedian p50: A ${ms(m.direct_p50_ms)} ms, B ${ms(m.via_relay_p50_ms)} ms` +
      (mc === null ? "" : `, C ${ms(mc.via_cascade_p50_ms)} ms`) +
      `; median p99: A ${ms(m.direct_p99_ms)} ms, B ${ms(m.via_relay_p99_ms)} ms` +
      (mc === null ? "" : `, C ${ms(mc.via_cascade_p99_ms)} ms`),
  );
  log(
    `added by walrelay: p50 ${ms(m.added_p50_ms)} ms, p99 ${ms(m.added_p99_ms)} ms (median of ` +
      `${summary.rounds.length} round(s)); target p99 added ≤ 1 ms: ` +
      `${summary.target_p99_added_le_1ms ? "met" : "not met"}` +
      (m.relay_sync_mean_ms === null
        ? ""
        : `; the relay's fdatasync ${ms(m.relay_sync_mean_ms)} ms on average`) +
      `; relay VmHWM ` +
      `${mib(summary.relay_hwm_bytes)} MiB; load average ${summary.load_average_at_start} at ` +
      `start, ${summary.load_average_at_end} at end`,
  );
  if (mc !== null) {
    log(
      `added by a PostgreSQL cascading standby: p50 ${ms(mc.added_p50_ms)} ms, p99 ` +
        `${ms(mc.added_p99_ms)} ms; cascade / walrelay: p50 ${fixed(mc.vs_relay.p50, 2)}, p99 ` +
        `${fixed(mc.vs_relay.p99, 2)}`,
    );
  }
  const floor = summary.floor;
  if (floor !== null) {
    log(
      `a bare Deno loop of the relay's system calls per commit (_relay_floor.ts): ` +
        `${fixed(floor.cpu_us_per_commit, 0)} µs CPU per commit (user ` +
        `${fixed(floor.user_us_per_commit, 0)}, system ${fixed(floor.system_us_per_commit, 0)}); ` +
        `relay / floor ${fixed(m.relay_cpu_us_per_commit / floor.cpu_us_per_commit)}` +
        (mc === null
          ? ""
          : `, cascade / floor ${fixed(mc.cpu_us_per_commit / floor.cpu_us_per_commit)}`),
    );
  }
  const fsync = summary.relay_fsync;
  if (fsync.skipped === null) {
    log(
      `relay WAL filesystem fdatasync (pg_test_fsync, before the setup): ` +
        `${fixed(fsync.fdatasync_us_per_op, 1)} µs/op`,
    );
  }
}

/**
 * Runs the relay lag benchmark: a primary, a relay following it, a standby on each, by default a
 * cascading standby and a standby on it, and `commits × rounds` commits timed to their visibility
 * on every polled standby. Prints its tables through `log` and returns the figures; never asserts
 * a time.
 *
 * @example
 * ```ts ignore
 * import { runRelayLagBenchmark } from "./relay_lag.ts";
 * const summary = await runRelayLagBenchmark({ commits: 100, rounds: 1, cascade: false });
 * console.log(summary.median.added_p99_ms);
 * ```
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
  await using top = await setUp(opts);
  const cascade = top.pollers.length > 2;
  const committer = new Committer(top, opts);
  log(
    `${opts.rounds} round(s) × ${opts.commits} commits (+${opts.warmup} warm-up), one every ` +
      `~${opts.intervalMs} ms; probe ${opts.probe}, polling from ${opts.pollFrom}; ` +
      `${top.pollers.length} standbys polled; load average ${await loadAverage()}`,
  );
  await committer.commits(opts.warmup);

  const rounds: RelayLagRound[] = [];
  const all: CommitSample[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const { figures, samples } = await runRound(round, committer);
    rounds.push(figures);
    all.push(...samples);
    log(roundLine(figures, samples));
  }
  let steady: SteadyCpu | null = null;
  if (opts.steadySeconds > 0) {
    steady = await runSteady(top, opts);
    log(steadyLine(steady));
  }
  const loadAtEnd = await loadAverage();
  const hwm = (await procMemory(top.relay.pid)).peak;
  let floor: RelayFloor | null = null;
  if (opts.floor) {
    log(`floor: ${opts.warmup} + ${opts.commits} commits through _relay_floor.ts`);
    // The rounds' figures stand without it: a floor that fails is reported, not fatal.
    floor = await measureRelayFloor({
      dir: join(top.walDir, ".."),
      commits: opts.commits,
      warmup: opts.warmup,
      intervalMs: opts.intervalMs,
    }).catch((e) => {
      log(`floor failed, left out: ${(e as Error).message}`);
      return null;
    });
  }
  const med = medians(rounds, cascade);
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
      relay_wal_dir: top.walDir,
      cascade: opts.cascade,
      fsync_test: opts.fsyncTest,
      floor: opts.floor,
      steady_s: opts.steadySeconds,
    },
    commands: top.commands,
    relay_fsync: top.fsync,
    load_average_at_start: loadAtStart,
    load_average_at_end: loadAtEnd,
    rounds,
    median: med,
    pooled: pooled(all, cascade),
    target_p99_added_le_1ms: med.added_p99_ms <= 1,
    relay_hwm_bytes: hwm,
    floor,
    steady,
  };
  printSummary(summary, log);

  const status = await top.stop();
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
  --no-floor        do not measure the bare Deno loop of the relay's system calls per commit
                    (_relay_floor.ts) after the rounds
  --steady-s N      after the rounds, N seconds of commits one every --interval-ms with no
                    standby polled, for the CPU per commit alone (default 10; 0 leaves it out)
  --relay-cli PATH  the walrelay entry point (default: this repository's cli.ts)
  --cpu-prof DIR    run the relay under deno --cpu-prof, the profile written into DIR at exit
  --relay-wal-parent DIR
                    create the relay's WAL directory under DIR (e.g. /dev/shm: a tmpfs takes
                    the relay's fdatasync out of the path, leaving the relay's own overhead)
  --out FILE        the JSON report (default bench/out/relay_lag.json)
`;

/** The command line as options of {@linkcode runRelayLagBenchmark}, and where the JSON goes. */
function parseRelayLagArgs(
  args: string[],
): { options: Partial<RelayLagOptions>; out: string } {
  const { values } = parseArgs({
    args,
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
      "no-floor": { type: "boolean", default: false },
      "steady-s": { type: "string", default: "10" },
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
  const int = intOption("relay_lag", USAGE);
  const segMb = int("seg-mb", values["seg-mb"], 1);
  if ((segMb & (segMb - 1)) !== 0 || segMb > 1024) {
    usageError("relay_lag", "--seg-mb must be a power of two from 1 to 1024", USAGE);
  }
  const probe = values.probe;
  if (probe !== "row" && probe !== "lsn") {
    usageError("relay_lag", `invalid --probe "${probe}"`, USAGE);
  }
  const pollFrom = values["poll-from"];
  if (pollFrom !== "send" && pollFrom !== "ack") {
    usageError("relay_lag", `invalid --poll-from "${pollFrom}"`, USAGE);
  }
  return {
    options: {
      commits: int("commits", values.commits, 100),
      rounds: int("rounds", values.rounds, 1),
      warmup: int("warmup", values.warmup, 0),
      intervalMs: int("interval-ms", values["interval-ms"], 0),
      segMb,
      probe,
      pollFrom,
      cascade: !values["no-cascade"],
      fsyncTest: !values["no-fsync-test"],
      floor: !values["no-floor"],
      steadySeconds: int("steady-s", values["steady-s"], 0),
      ...(values["relay-cli"] !== undefined ? { relayCli: values["relay-cli"] } : {}),
      ...(values["cpu-prof"] !== undefined ? { cpuProfDir: values["cpu-prof"] } : {}),
      ...(values["relay-wal-parent"] !== undefined
        ? { relayWalParent: values["relay-wal-parent"] }
        : {}),
    },
    out: values.out ?? join(REPO_ROOT, "bench", "out", "relay_lag.json"),
  };
}

/** `deno run -A bench/relay_lag.ts`: runs the benchmark alone and writes its JSON. */
async function main(args: string[]): Promise<void> {
  const { options, out } = parseRelayLagArgs(args);
  using interrupt = interruptOnSigint("stopping");
  const tStart = performance.now();
  const summary = await runRelayLagBenchmark({ ...options, checkInterrupted: interrupt.check });
  await Deno.mkdir(join(out, ".."), { recursive: true });
  const report = {
    command: `deno run -A bench/relay_lag.ts ${args.join(" ")}`.trimEnd(),
    date: new Date().toISOString(),
    duration_s: (performance.now() - tStart) / 1000,
    environment: { deno: Deno.version.deno, cpus: navigator.hardwareConcurrency },
    relay_lag: summary,
  };
  await Deno.writeTextFile(out, JSON.stringify(report, null, 2) + "\n");
  console.log(`wrote ${out}`);
}

if (import.meta.main) await main(Deno.args);
