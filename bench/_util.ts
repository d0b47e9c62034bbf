/**
 * Helpers of the sender benchmark: process CPU and memory from `/proc`, LSN text, statistics and
 * table formatting.
 *
 * @module
 */

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

/** Parses `X/Y` LSN text. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(text.trim());
  if (!m) throw new Error(`not an LSN: "${text}"`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Formats an LSN as PostgreSQL does (`X/Y`, upper-case hex). */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${
    (lsn & 0xffffffffn).toString(16).toUpperCase()
  }`;
}

/** The file name of a segment (timeline, segment number, segment size in bytes). */
export function segmentName(tli: number, segno: bigint, segSize: number): string {
  const perId = 0x100000000n / BigInt(segSize);
  const hex = (n: bigint | number): string => n.toString(16).toUpperCase().padStart(8, "0");
  return hex(tli) + hex(segno / perId) + hex(segno % perId);
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
