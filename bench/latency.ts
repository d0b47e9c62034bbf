/**
 * Latency benchmark: how long after a commit on the primary its WAL reaches a client
 * through walrelay, against the same client connected straight to PostgreSQL's walsender.
 *
 * Setup, as deployed: a PostgreSQL 15 primary (synchronous_commit on) → `pg_receivewal
 * --synchronous -D DIR` (which writes and fsyncs every message into a growing, zero-padded
 * `.partial`) → walrelay serving DIR → a downstream client. Three downstream clients stream at once,
 * so each commit is measured on every path under the same conditions:
 *
 * - `postgres`: connected to the primary's walsender directly (the baseline);
 * - `walrelay (watch)`: through `cli.ts serve` (Deno.watchFs plus a 1 s rescan);
 * - `walrelay (no watch)`: through a relay with watching off (`bench/_relay_proc.ts --no-watch`),
 *   which only notices new WAL at its periodic rescan, so its latency is bounded by that period.
 *
 * The writer commits `SELECT pg_logical_emit_message(true, …)` in autocommit on an ordinary
 * connection, notes when the commit returned, then reads `pg_current_wal_flush_lsn()` (the end of
 * the commit record on a quiet server). The downstream clients are in-process protocol clients
 * that timestamp every XLogData message on arrival; a sample's latency on a path is the arrival
 * of the first message whose end covers the commit's flush LSN, minus the commit's return.
 * (On the direct path that can be slightly negative: the walsender is woken by the WAL flush,
 * before the committing backend answers its client.)
 *
 * Run it through `deno task bench --suite latency`; it is also part of the default run.
 *
 * @module
 */

import { join } from "node:path";
import {
  type BackgroundProcess,
  delay,
  pgBin,
  type PgCluster,
  REPO_ROOT,
  spawnBackground,
  startPrimary,
  startRelay,
  tempDir,
  waitFor,
} from "../tests/_pg.ts";
import { PgClient } from "../lib/pgwire/client.ts";
import { readFileHead } from "../lib/_io.ts";
import { distribution, percentile } from "./_stats.ts";
import { fixed, formatLsn, parseLsn, table } from "./_util.ts";

/** Options of {@linkcode runLatency}. */
export interface LatencyOptions {
  /** Measured commits (default 300; at least 200 for a meaningful p99). */
  samples: number;
  /** Untimed commits before the measured ones (default 20). */
  warmup: number;
  /** Mean pause between commits in milliseconds; each pause is drawn from [0.5, 1.5] × this. */
  intervalMs: number;
  /** The no-watch relay's rescan period in milliseconds (the relay's default is 1000). */
  rescanMs: number;
  /** Where progress lines go. */
  log: (line: string) => void;
  /** Throws when the run was interrupted. */
  checkInterrupted: () => void;
}

/** Latency figures of one path, in milliseconds. */
export interface LatencyStats {
  /** Samples that arrived. */
  samples: number;
  /** Samples that never arrived within the wait after the last commit. */
  missing: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  min_ms: number;
  mean_ms: number;
  /** The same p50/p99 measured from when the commit was sent rather than when it returned. */
  p50_from_send_ms: number;
  p99_from_send_ms: number;
}

/** What {@linkcode runLatency} measured. */
export interface LatencyReport {
  config: {
    samples: number;
    warmup: number;
    interval_ms: number;
    rescan_ms: number;
  };
  commands: Record<string, string>;
  /** Commit round trip on the primary (send → return), ms. */
  commit_ms: { p50: number; p99: number };
  paths: Record<string, LatencyStats>;
  /** p50/p99 of each relay path minus the direct path's: the latency the relay adds. */
  added_by_relay_ms: Record<string, { p50: number; p99: number }>;
}

/** One commit: when it was sent, when it returned, and the WAL position that covers it. */
interface Commit {
  sent: number;
  acked: number;
  lsn: bigint;
}

/**
 * A downstream replication client that records, for every XLogData message, the WAL end it
 * reached and when it arrived (`performance.now()`); it answers keepalives that ask for a reply.
 */
class ArrivalRecorder {
  readonly ends: bigint[] = [];
  readonly times: number[] = [];
  #client: PgClient;
  #done: Promise<void>;
  #closing = false;
  error: unknown;

  private constructor(client: PgClient) {
    this.#client = client;
    this.#done = this.#loop();
  }

  /** Connects, starts streaming at the server's current end, and records arrivals. */
  static async start(port: number): Promise<ArrivalRecorder> {
    const client = await PgClient.connect({
      hostname: "127.0.0.1",
      port,
      user: "postgres",
      connectTimeoutMs: 10_000,
    });
    const [ident] = await client.query("IDENTIFY_SYSTEM");
    const xlogpos = ident!.rows[0]![2]!;
    const mode = await client.startReplication(`START_REPLICATION ${xlogpos} TIMELINE 1`);
    if (mode !== "copy") throw new Error(`START_REPLICATION on port ${port} did not stream`);
    return new ArrivalRecorder(client);
  }

  get received(): bigint {
    return this.ends.at(-1) ?? 0n;
  }

  async #loop(): Promise<void> {
    try {
      while (true) {
        const msg = await this.#client.nextRaw();
        const now = performance.now();
        if (msg.type !== "d") continue;
        const body = msg.body;
        const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
        if (body[0] === 0x77) {
          this.ends.push(view.getBigUint64(1) + BigInt(body.length - 25));
          this.times.push(now);
        } else if (body[0] === 0x6b && body[17] === 1) {
          const at = this.received;
          await this.#client.sendStatus(at, at, at);
        }
      }
    } catch (e) {
      if (!this.#closing) this.error = e;
    }
  }

  /** When WAL up to `lsn` had arrived (undefined if it never did). */
  arrivalOf(lsn: bigint): number | undefined {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid]! >= lsn) hi = mid;
      else lo = mid + 1;
    }
    return lo < this.ends.length ? this.times[lo] : undefined;
  }

  async close(): Promise<void> {
    this.#closing = true;
    this.#client.close();
    await this.#done;
  }
}

/** The figures of one path from its latencies (from the commit's return, and from its send). */
function stats(latencies: number[], fromSend: number[], missing: number): LatencyStats {
  const d = distribution(latencies);
  return {
    samples: latencies.length,
    missing,
    p50_ms: d.p50,
    p90_ms: d.p90,
    p99_ms: d.p99,
    max_ms: d.max,
    min_ms: d.min,
    mean_ms: d.mean,
    p50_from_send_ms: percentile(fromSend, 50),
    p99_from_send_ms: percentile(fromSend, 99),
  };
}

/** The chain under test: primary → pg_receivewal → two relays on its directory. */
interface Chain extends AsyncDisposable {
  pg: PgCluster;
  commands: Record<string, string>;
  /** The downstream paths: a name and the port its client connects to. */
  paths: (readonly [string, number])[];
}

/**
 * Starts the primary, `pg_receivewal --synchronous` into a directory, and two relays serving that
 * directory: one watching it, one only rescanning every `rescanMs`.
 */
async function startChain(rescanMs: number, log: (line: string) => void): Promise<Chain> {
  await using stack = new AsyncDisposableStack();
  const work = stack.use(await tempDir("walrelay-bench-latency-"));
  const pg = stack.use(
    await startPrimary({
      walSegSize: 16,
      conf: {
        wal_keep_size: "512MB",
        checkpoint_timeout: "1h",
        autovacuum: "off",
        max_wal_senders: 10,
        synchronous_commit: "on",
      },
    }),
  );
  const dir = join(work.path, "received");
  await Deno.mkdir(dir);
  const receiveCmd = [
    await pgBin("pg_receivewal"),
    "-d",
    `host=127.0.0.1 port=${pg.port} user=postgres`,
    "-D",
    dir,
    "-n",
    "--synchronous",
  ];
  const receiver = stack.use(await spawnBackground(receiveCmd));
  await waitForPageHeader(pg, dir, receiver);

  const relayArgs = ["--log-format", "text"];
  const watching = stack.use(await startRelay({ walDir: dir, args: relayArgs }));
  const procCli = join(REPO_ROOT, "bench", "_relay_proc.ts");
  const procArgs = ["--no-watch", "--rescan-ms", String(rescanMs)];
  const polling = stack.use(await startRelay({ walDir: dir, cli: procCli, args: procArgs }));

  const commands = {
    receiver: receiveCmd.join(" "),
    relay_watch: `deno run -A cli.ts serve --wal-dir ${dir} --listen 127.0.0.1:${watching.port} ` +
      relayArgs.join(" "),
    relay_no_watch: `deno run -A bench/_relay_proc.ts serve --wal-dir ${dir} --listen ` +
      `127.0.0.1:${polling.port} ${procArgs.join(" ")}`,
  };
  log(`primary → ${commands.receiver}`);
  log(`        → ${commands.relay_watch}`);
  log(`        → ${commands.relay_no_watch}`);
  const owned = stack.move();
  return {
    pg,
    commands,
    paths: [
      ["postgres (direct)", pg.port],
      ["walrelay (watch)", watching.port],
      [`walrelay (no watch, rescan ${rescanMs} ms)`, polling.port],
    ],
    [Symbol.asyncDispose]: () => owned.disposeAsync(),
  };
}

/**
 * Waits until pg_receivewal has written the current segment's long page header into its
 * `.partial`: the relay opens the directory from that header.
 */
async function waitForPageHeader(
  pg: PgCluster,
  dir: string,
  receiver: BackgroundProcess,
): Promise<void> {
  const segment = await pg.sql("SELECT pg_walfile_name(pg_current_wal_lsn())");
  const partial = join(dir, `${segment}.partial`);
  await waitFor(async () => {
    if (receiver.exited) throw new Error(`pg_receivewal exited:\n${receiver.stderr()}`);
    try {
      const head = await readFileHead(partial, 8);
      return head.length === 8 && head.some((b) => b !== 0);
    } catch {
      return false;
    }
  }, { timeoutMs: 20_000, message: `pg_receivewal did not write ${partial}` });
}

/**
 * Commits `warmup + samples` logical messages on the primary, each followed by a random pause;
 * returns the measured ones with the flush LSN that covers each.
 */
async function commitSeries(port: number, opts: LatencyOptions): Promise<Commit[]> {
  await using writer = await PgClient.connect({
    hostname: "127.0.0.1",
    port,
    user: "postgres",
    params: { database: "postgres" },
  });
  const commits: Commit[] = [];
  for (let i = 0; i < opts.warmup + opts.samples; i++) {
    opts.checkInterrupted();
    const sent = performance.now();
    await writer.query(`SELECT pg_logical_emit_message(true, 'walrelay-latency', '${i}')`);
    const acked = performance.now();
    const [r] = await writer.query("SELECT pg_current_wal_flush_lsn()");
    const lsn = parseLsn(r!.rows[0]![0]!);
    if (i >= opts.warmup) commits.push({ sent, acked, lsn });
    await delay(opts.intervalMs * (0.5 + Math.random()));
  }
  return commits;
}

/** A path's figures: every commit's arrival on that path's client. */
function pathStats(rec: ArrivalRecorder, commits: Commit[]): LatencyStats {
  const lat: number[] = [];
  const fromSend: number[] = [];
  let missing = 0;
  for (const c of commits) {
    const t = rec.arrivalOf(c.lsn);
    if (t === undefined) {
      missing++;
      continue;
    }
    lat.push(t - c.acked);
    fromSend.push(t - c.sent);
  }
  return stats(lat, fromSend, missing);
}

/** The latency table, one row per path. */
function latencyTable(report: LatencyReport): string {
  return table(
    ["path", "n", "p50", "p90", "p99", "max", "mean", "p50 from send", "p99 from send"],
    Object.entries(report.paths).map(([name, s]) => [
      name,
      s.missing > 0 ? `${s.samples} (${s.missing} missing)` : String(s.samples),
      fixed(s.p50_ms),
      fixed(s.p90_ms),
      fixed(s.p99_ms),
      fixed(s.max_ms),
      fixed(s.mean_ms),
      fixed(s.p50_from_send_ms),
      fixed(s.p99_from_send_ms),
    ]),
  );
}

/** Runs the latency benchmark and prints its table; returns the figures. */
export async function runLatency(opts: LatencyOptions): Promise<LatencyReport> {
  const { log } = opts;
  log(`\n== latency: commit on the primary → arrival at a downstream client ==`);
  await using chain = await startChain(opts.rescanMs, log);
  const { paths } = chain;
  const recorders: ArrivalRecorder[] = [];
  try {
    for (const [, port] of paths) recorders.push(await ArrivalRecorder.start(port));
    log(
      `${opts.samples} commits (+${opts.warmup} warm-up), one every ~${opts.intervalMs} ms; ` +
        `three downstream clients streaming at once`,
    );
    const commits = await commitSeries(chain.pg.port, opts);
    const last = commits.at(-1)!.lsn;
    // Give the slowest path (the rescan) time to deliver the last commit.
    await waitFor(() => recorders.every((r) => r.received >= last), {
      timeoutMs: 3 * opts.rescanMs + 5000,
      intervalMs: 20,
    }).catch(() => {});
    for (const r of recorders) {
      if (r.error) throw new Error(`downstream client failed: ${String(r.error)}`);
    }

    const commitMs = commits.map((c) => c.acked - c.sent);
    const report: LatencyReport = {
      config: {
        samples: opts.samples,
        warmup: opts.warmup,
        interval_ms: opts.intervalMs,
        rescan_ms: opts.rescanMs,
      },
      commands: chain.commands,
      commit_ms: { p50: percentile(commitMs, 50), p99: percentile(commitMs, 99) },
      paths: {},
      added_by_relay_ms: {},
    };
    for (const [i, [name]] of paths.entries()) {
      report.paths[name] = pathStats(recorders[i]!, commits);
    }
    const direct = report.paths[paths[0]![0]]!;
    for (const [name] of paths.slice(1)) {
      const s = report.paths[name]!;
      report.added_by_relay_ms[name] = {
        p50: s.p50_ms - direct.p50_ms,
        p99: s.p99_ms - direct.p99_ms,
      };
    }

    log(
      `WAL ${formatLsn(commits[0]!.lsn)} .. ${formatLsn(last)}; commit round trip p50 ` +
        `${fixed(report.commit_ms.p50)} ms, p99 ${fixed(report.commit_ms.p99)} ms`,
    );
    log(
      `latency = arrival at the client − commit returned to the writer (ms); ` +
        `"from send" = − commit sent`,
    );
    log(latencyTable(report));
    for (const [name, d] of Object.entries(report.added_by_relay_ms)) {
      log(`added by ${name}: p50 ${fixed(d.p50)} ms, p99 ${fixed(d.p99)} ms over the direct path`);
    }
    return report;
  } finally {
    for (const r of recorders) await r.close();
  }
}
