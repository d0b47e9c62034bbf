/**
 * pg_waldump as the oracle of where PostgreSQL's reader stops: the records it prints, and the end
 * of the last one, computed independently of walrelay's reader. Test-only.
 *
 * @module
 */

import { formatLsn, parseLsn } from "./lsn.ts";
import { runPg } from "../../tests/_pg.ts";

const SEG = 1 << 20;
const BLCKSZ = 8192;

/** A record as pg_waldump prints it, or as we report it in the same terms. */
export interface Rec {
  lsn: string;
  rmgr: string;
  tot: number;
  prev: string;
  xid: number;
}

/** What pg_waldump printed for a range, and where it stopped. */
export interface Dump {
  records: Rec[];
  /** Where pg_waldump stopped reading: EndRecPtr of its last record. */
  end: bigint;
  /** The xlogreader message after "error in WAL record at …: ", if any. */
  error: string | undefined;
  /** pg_waldump's standard error, for failure messages. */
  stderr: string;
}

/** Where a record printed by pg_waldump ends, computed independently of the reader. */
export function recordEnd(lsn: bigint, tot: number, isSwitch: boolean): bigint {
  let pos = lsn;
  let left = BigInt(tot);
  for (;;) {
    const pageEnd = pos - (pos % BigInt(BLCKSZ)) + BigInt(BLCKSZ);
    if (left <= pageEnd - pos) {
      pos += left;
      break;
    }
    left -= pageEnd - pos;
    pos = pageEnd + (pageEnd % BigInt(SEG) === 0n ? 40n : 24n);
  }
  pos = (pos + 7n) & ~7n;
  if (isSwitch) pos = (pos + BigInt(SEG) - 1n) / BigInt(SEG) * BigInt(SEG);
  return pos;
}

/**
 * Runs PostgreSQL 15's pg_waldump on `dir` from `start` (to `end`, with `extra` arguments) and
 * returns its records; a non-zero exit is an answer here (where the WAL stops), not a failure.
 */
export async function waldump(
  dir: string,
  start: bigint,
  end?: bigint,
  extra: string[] = [],
): Promise<Dump> {
  const args = ["-p", dir, "--start", formatLsn(start), ...extra];
  if (end !== undefined) args.push("--end", formatLsn(end));
  const out = await runPg("pg_waldump", args);
  const records: Rec[] = [];
  let last: { lsn: bigint; tot: number; isSwitch: boolean } | undefined;
  const line =
    /^rmgr: (\S+)\s+len \(rec\/tot\):\s*\d+\/\s*(\d+), tx:\s*(\d+), lsn: (\S+), prev (\S+), desc: (\S*)/;
  for (const l of out.stdout.split("\n")) {
    const m = line.exec(l);
    if (!m) continue;
    const lsn = parseLsn(m[4]!)!;
    records.push({
      lsn: formatLsn(lsn),
      rmgr: m[1]!,
      tot: Number(m[2]),
      prev: formatLsn(parseLsn(m[5]!)!),
      xid: Number(m[3]),
    });
    last = { lsn, tot: Number(m[2]), isSwitch: m[1] === "XLOG" && m[6] === "SWITCH" };
  }
  const err = /error in WAL record at [^:]+: (.*)/.exec(out.stderr);
  return {
    records,
    end: last ? recordEnd(last.lsn, last.tot, last.isSwitch) : start,
    error: err?.[1],
    stderr: out.stderr,
  };
}
