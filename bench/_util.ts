/**
 * Helpers of the sender benchmark: process CPU and memory from `/proc`, LSN text, statistics and
 * table formatting.
 *
 * @module
 */

import { formatLsn as formatLsnText, parseLsn as parseLsnText } from "../lib/wal/lsn.ts";
import { segmentFileName } from "../lib/wal/segment.ts";
import { type PgCluster, waitFor } from "../tests/_pg.ts";

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux). */
export const CLOCK_TICKS = 100;

/** CPU times of one process, in seconds, from `/proc/<pid>/stat`. */
export interface ProcCpu {
  /** utime + stime of the process (all its threads). */
  self: number;
  /** cutime + cstime: CPU of children it has reaped (waited for). */
  children: number;
}

/**
 * Reads a process's CPU times. The command name (field 2) may hold spaces and parentheses, so the
 * fields are counted from the last `)`.
 */
export async function procCpu(pid: number | "self"): Promise<ProcCpu> {
  const text = await Deno.readTextFile(`/proc/${pid}/stat`);
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const field = (n: number): number => Number(rest[n - 3]);
  return {
    self: (field(14) + field(15)) / CLOCK_TICKS,
    children: (field(16) + field(17)) / CLOCK_TICKS,
  };
}

/** Peak and current resident set size of a process, in bytes (`VmHWM`, `VmRSS`). */
export async function procMemory(pid: number): Promise<{ peak: number; current: number }> {
  const text = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  return { peak: kb("VmHWM"), current: kb("VmRSS") };
}

/** Process ids of a process's direct children (all its threads' children). */
export async function childPids(pid: number): Promise<number[]> {
  const out: number[] = [];
  try {
    for await (const t of Deno.readDir(`/proc/${pid}/task`)) {
      try {
        const text = await Deno.readTextFile(`/proc/${pid}/task/${t.name}/children`);
        for (const p of text.trim().split(/\s+/)) if (p) out.push(Number(p));
      } catch { /* thread gone */ }
    }
  } catch { /* process gone */ }
  return out;
}

/** Parses `X/Y` LSN text; a benchmark stops on anything else. */
export function parseLsn(text: string): bigint {
  const lsn = parseLsnText(text.trim());
  if (lsn === undefined) throw new Error(`not an LSN: "${text}"`);
  return lsn;
}

/** Formats an LSN as PostgreSQL does (`X/Y`, upper-case hex). */
export const formatLsn: (lsn: bigint) => string = formatLsnText;

/** The file name of a segment (timeline, segment number, segment size in bytes). */
export const segmentName: (tli: number, segno: bigint, segSize: number) => string = segmentFileName;

/** WAL a benchmark generated on a primary: the complete segments to stream. */
export interface GeneratedWal {
  /** Where generation began. */
  startLsn: bigint;
  /** The primary's position afterwards (inside the in-progress segment). */
  currentLsn: bigint;
  /** Timeline of the segments. */
  tli: number;
  /** Names of the complete segments, from the one holding `startLsn`. */
  segNames: string[];
  /** End of the last complete segment. */
  endLsn: bigint;
  /** Seconds generation took. */
  seconds: number;
}

/**
 * Writes at least `sizeMb` of WAL on `pg` with 256 kB logical messages (the fastest way to make
 * WAL: one memcpy per record; what it holds does not matter to either sender), switches segment,
 * checkpoints, and waits until everything up to the last complete segment is flushed.
 */
export async function generateWal(
  pg: PgCluster,
  sizeMb: number,
  segSize: number,
): Promise<GeneratedWal> {
  const t0 = performance.now();
  const startLsn = parseLsn(await pg.currentLsn());
  const firstName = await pg.sql(`SELECT pg_walfile_name('${formatLsn(startLsn)}')`);
  const tli = parseInt(firstName.slice(0, 8), 16);
  const firstSeg = startLsn / BigInt(segSize);
  const target = startLsn + BigInt(sizeMb) * 1024n * 1024n;
  const messageBytes = 256 * 1024;
  while (true) {
    const lsn = parseLsn(await pg.currentLsn());
    if (lsn >= target) break;
    const count = Math.max(1, Math.ceil(Number(target - lsn) / messageBytes));
    await pg.sql(
      `SELECT count(pg_logical_emit_message(false, 'walrelay-bench', ` +
        `repeat(md5(i::text), ${messageBytes / 32}))) FROM generate_series(1, ${count}) i`,
    );
  }
  await pg.sql("SELECT pg_switch_wal()");
  await pg.sql("CHECKPOINT");
  const currentLsn = parseLsn(await pg.currentLsn());
  const endSeg = currentLsn / BigInt(segSize); // the in-progress segment: not streamed
  const endLsn = endSeg * BigInt(segSize);
  await waitFor(
    async () => parseLsn(await pg.sql("SELECT pg_current_wal_flush_lsn()")) >= endLsn,
    { message: "WAL not flushed up to the end of the last complete segment" },
  );
  const segNames: string[] = [];
  for (let s = firstSeg; s < endSeg; s++) segNames.push(segmentName(tli, s, segSize));
  return {
    startLsn,
    currentLsn,
    tli,
    segNames,
    endLsn,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** The median of a non-empty list (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Renders rows as a fixed-width text table: the first column left-aligned, the rest right. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** A number with a fixed count of decimals. */
export function fixed(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "n/a";
}

/** The `p`-th percentile (0–100) of a non-empty list, by the nearest-rank method. */
export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1]!;
}

/** The first three fields of `/proc/loadavg` (1, 5 and 15 minute load averages). */
export async function loadAverage(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
}
