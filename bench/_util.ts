/**
 * Small helpers every benchmark uses: LSN text, number and table formatting, command-line
 * integers, and a Ctrl-C that unwinds instead of killing.
 *
 * Statistics live in `_stats.ts`, `/proc` readings in `_proc.ts`, servers and WAL in
 * `_setup.ts`.
 *
 * @module
 */

import { formatLsn as formatLsnText, parseLsn as parseLsnText } from "../lib/wal/lsn.ts";
import { segmentFileName } from "../lib/wal/segment.ts";

/** Bytes in a MiB. */
export const MIB = 1024 * 1024;

/**
 * Parses `X/Y` LSN text; a benchmark stops on anything else.
 *
 * @example
 * ```ts
 * import { parseLsn } from "./_util.ts";
 * console.assert(parseLsn("0/1000028\n") === 0x1000028n);
 * ```
 */
export function parseLsn(text: string): bigint {
  const lsn = parseLsnText(text.trim());
  if (lsn === undefined) throw new Error(`not an LSN: "${text}"`);
  return lsn;
}

/**
 * Formats an LSN as PostgreSQL does (`X/Y`, upper-case hex).
 *
 * @example
 * ```ts
 * import { formatLsn } from "./_util.ts";
 * console.assert(formatLsn(0x10000A8n) === "0/10000A8");
 * ```
 */
export const formatLsn: (lsn: bigint) => string = formatLsnText;

/**
 * The file name of a segment (timeline, segment number, segment size in bytes).
 *
 * @example
 * ```ts
 * import { segmentName } from "./_util.ts";
 * console.assert(segmentName(1, 3n, 16 * 1024 * 1024) === "000000010000000000000003");
 * ```
 */
export const segmentName: (tli: number, segno: bigint, segSize: number) => string = segmentFileName;

/**
 * A number with a fixed count of decimals; `n/a` for NaN and infinities.
 *
 * @example
 * ```ts
 * import { fixed } from "./_util.ts";
 * console.assert(fixed(1.005, 1) === "1.0" && fixed(NaN) === "n/a");
 * ```
 */
export function fixed(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "n/a";
}

/**
 * Bytes as MiB with one decimal, without the unit.
 *
 * @example
 * ```ts
 * import { mib } from "./_util.ts";
 * console.assert(mib(3 * 1024 * 1024) === "3.0");
 * ```
 */
export function mib(bytes: number): string {
  return fixed(bytes / MIB, 1);
}

/**
 * Renders rows as a fixed-width text table: the first column left-aligned, the rest right.
 *
 * @example
 * ```ts
 * import { table } from "./_util.ts";
 * console.assert(table(["arm", "s"], [["pg", "1.5"]]) === "arm    s\n---  ---\npg   1.5");
 * ```
 */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/**
 * Prints `program: message`, a blank line and the usage, and exits with status 2: what a
 * benchmark's command line does on an option it cannot use.
 *
 * @example
 * ```ts ignore
 * import { usageError } from "./_util.ts";
 * usageError("bench", `unknown suite "x"`, USAGE);
 * ```
 */
export function usageError(program: string, message: string, usage: string): never {
  console.error(`${program}: ${message}\n\n${usage}`);
  Deno.exit(2);
}

/**
 * A parser of integer options for one program: the value of `--name`, at least `min`, or a usage
 * error.
 *
 * @example
 * ```ts
 * import { intOption } from "./_util.ts";
 * const int = intOption("bench", "usage: …");
 * console.assert(int("rounds", "5", 1) === 5);
 * ```
 */
export function intOption(
  program: string,
  usage: string,
): (name: string, text: string, min: number) => number {
  return (name, text, min) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) usageError(program, `invalid --${name} "${text}"`, usage);
    return n;
  };
}

/**
 * Turns the first Ctrl-C into a request to stop: the returned check throws once it came, so the
 * run unwinds through its `await using` disposals (servers, relay, temporary directories) instead
 * of leaving a PostgreSQL server behind. A second Ctrl-C exits at once. Disposing the result
 * removes the listener.
 *
 * @example
 * ```ts
 * import { interruptOnSigint } from "./_util.ts";
 * using interrupt = interruptOnSigint("stopping");
 * interrupt.check(); // throws once Ctrl-C was pressed
 * ```
 */
export function interruptOnSigint(what: string): Disposable & { check: () => void } {
  let interrupted = false;
  const onSigint = (): void => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    console.error(`\ninterrupted: ${what} (Ctrl-C again to exit at once)`);
  };
  Deno.addSignalListener("SIGINT", onSigint);
  return {
    check(): void {
      if (interrupted) throw new Error("interrupted");
    },
    [Symbol.dispose](): void {
      Deno.removeSignalListener("SIGINT", onSigint);
    },
  };
}
