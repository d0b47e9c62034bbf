/**
 * The relay lag benchmark's figures of a set of commits: each standby's lag, what a relay added
 * over the direct standby, and how two relays' additions compare.
 *
 * @module
 */

import { distribution, median, percentile, ratio } from "./_stats.ts";

/** When one commit became visible on one standby. */
export interface Seen {
  /** `performance.now()` at the arrival of the first answer showing it; undefined = never. */
  at: number | undefined;
  /** Round trip of that poll. */
  rtt: number;
  /** Polls it took, the one that saw it included. */
  polls: number;
}

/** One measured commit. */
export interface CommitSample {
  /** `performance.now()` when the INSERT was sent. */
  sent: number;
  /** When it returned. */
  acked: number;
  /** The primary's flush LSN read right after: at or past the end of the commit record. */
  lsn: bigint;
  /** Standby A, fed by the primary. */
  direct: Seen;
  /** Standby B, fed by the relay. */
  relay: Seen;
  /** Undefined without the cascade arm. */
  cascade: Seen | undefined;
}

/** A polled standby: A, B or C. */
export type LagArm = "direct" | "relay" | "cascade";

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

/**
 * One standby's figures over some commits: the lag from each commit's return (and its send) to
 * the first answer showing it, the polls' resolution, and the commits it never showed.
 *
 * @example
 * ```ts
 * import { lagStats } from "./_lag_stats.ts";
 * const seen = { at: 12, rtt: 0.1, polls: 3 };
 * const s = lagStats([{ sent: 0, acked: 10, lsn: 1n, direct: seen, relay: seen, cascade: undefined }], "relay");
 * console.assert(s.p50_ms === 2 && s.p50_from_send_ms === 12 && s.polls_p50 === 3);
 * ```
 */
export function lagStats(samples: CommitSample[], which: LagArm): LagStats {
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
  const d = distribution(lag);
  return {
    samples: lag.length,
    missing,
    p50_ms: d.p50,
    p90_ms: d.p90,
    p99_ms: d.p99,
    max_ms: d.max,
    mean_ms: d.mean,
    p50_from_send_ms: percentile(fromSend, 50),
    p99_from_send_ms: percentile(fromSend, 99),
    poll_rtt_p50_ms: median(rtt),
    polls_p50: median(polls),
  };
}

/**
 * `b` − `a`, where `a` is A's figures and `b` those of the standby `which` (B or C): as
 * differences of percentiles, and as percentiles of the per-commit differences.
 *
 * @example
 * ```ts
 * import { addedLag, lagStats } from "./_lag_stats.ts";
 * const samples = [{
 *   sent: 0, acked: 1, lsn: 1n, cascade: undefined,
 *   direct: { at: 2, rtt: 0.1, polls: 1 }, relay: { at: 2.5, rtt: 0.1, polls: 1 },
 * }];
 * const added = addedLag(samples, "relay", lagStats(samples, "direct"), lagStats(samples, "relay"));
 * console.assert(added.p50_ms === 0.5 && added.paired_max_ms === 0.5);
 * ```
 */
export function addedLag(
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

/**
 * (C − A) / (B − A), figure by figure; NaN where either is not positive.
 *
 * @example
 * ```ts ignore
 * const vs = addedRatio(addedCascade, addedRelay);
 * ```
 */
export function addedRatio(cascade: AddedLag, relay: AddedLag): AddedRatio {
  return {
    p50: ratio(cascade.p50_ms, relay.p50_ms),
    p99: ratio(cascade.p99_ms, relay.p99_ms),
    paired_p50: ratio(cascade.paired_p50_ms, relay.paired_p50_ms),
    paired_p99: ratio(cascade.paired_p99_ms, relay.paired_p99_ms),
  };
}
