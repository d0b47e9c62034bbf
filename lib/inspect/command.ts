/**
 * `walrelay inspect DIR|FILE [--json]`: prints what a WAL directory holds and exits 0 when it is
 * consistent, 1 when it is not, 2 on a usage or I/O error.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatInspectText, inspectReportJson } from "./format.ts";
import { inspectWal } from "./inspect.ts";
import { ProgressBar } from "./progress_bar.ts";

/** Where the command writes; the defaults are the process's stdout and stderr. */
export interface InspectCommandIo {
  /** Receives the report. */
  stdout?: (text: string) => void;
  /** Receives errors and the progress bar. */
  stderr?: (text: string) => void;
  /** Whether stderr is a terminal, so a progress bar may be drawn on it. */
  stderrIsTerminal?: boolean;
}

/** Exit status: the directory is consistent. */
export const EXIT_CONSISTENT = 0;
/** Exit status: gaps, mixed system identifiers or invalid WAL before the end. */
export const EXIT_INCONSISTENT = 1;
/** Exit status: bad arguments, or the path could not be read. */
export const EXIT_ERROR = 2;

/** Below this much WAL the whole run takes well under a second: no bar. */
const PROGRESS_MIN_BYTES = 32 * 1024 * 1024;

const USAGE = `Usage: walrelay inspect [--json] DIR|FILE

Shows what a WAL directory (or one segment file) holds: per timeline the segments and gaps, the
system identifier, segment and block size, server version, where valid WAL ends and why, and
record counts per resource manager (as pg_waldump --stats=rmgr).

  --json      print the report as JSON
  -h, --help  show this help

Exit status: 0 consistent, 1 inconsistent (gaps, mixed system identifiers, invalid WAL before the
end, WAL of a PostgreSQL major walrelay does not support), 2 error.
`;

function writer(file: { writeSync(p: Uint8Array): number }): (text: string) => void {
  const encoder = new TextEncoder();
  return (text: string) => {
    let bytes = encoder.encode(text);
    while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
  };
}

/**
 * Runs `walrelay inspect` with the arguments after `inspect`; returns the exit status.
 *
 * @example
 * ```ts
 * import { runInspectCommand } from "./command.ts";
 * import assert from "node:assert/strict";
 * let out = "";
 * const dir = new URL("../../testdata/wal", import.meta.url).pathname;
 * const code = await runInspectCommand(["--json", dir], { stdout: (s) => out += s });
 * assert.equal(code, 0);
 * assert.equal(JSON.parse(out).timelines.length, 2);
 * ```
 */
export async function runInspectCommand(
  args: string[],
  io: InspectCommandIo = {},
): Promise<number> {
  const stdout = io.stdout ?? writer(Deno.stdout);
  const stderr = io.stderr ?? writer(Deno.stderr);
  let values: { json?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    stderr(`walrelay inspect: ${(e as Error).message}\n\n${USAGE}`);
    return EXIT_ERROR;
  }
  if (values.help) {
    stdout(USAGE);
    return EXIT_CONSISTENT;
  }
  const path = positionals[0];
  if (path === undefined || positionals.length > 1) {
    stderr(`walrelay inspect: expected one DIR or FILE\n\n${USAGE}`);
    return EXIT_ERROR;
  }
  const terminal = io.stderrIsTerminal ?? Deno.stderr.isTerminal();
  const bar = terminal ? new ProgressBar({ write: stderr }) : undefined;
  let report;
  try {
    report = await inspectWal(path, {
      ...(bar
        ? {
          onProgress: (done: number, total: number) => {
            if (total >= PROGRESS_MIN_BYTES) bar.update(done, total);
          },
        }
        : {}),
    });
  } catch (e) {
    const reason = e instanceof Deno.errors.NotFound
      ? "No such file or directory"
      : (e as Error).message;
    stderr(`walrelay inspect: could not inspect "${path}": ${reason}\n`);
    return EXIT_ERROR;
  } finally {
    bar?.finish();
  }
  stdout(
    values.json
      ? JSON.stringify(inspectReportJson(report), null, 2) + "\n"
      : formatInspectText(report),
  );
  return report.consistent ? EXIT_CONSISTENT : EXIT_INCONSISTENT;
}
