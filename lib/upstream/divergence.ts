/**
 * Divergence: the upstream's history forks below the relay's end (a standby that was behind its
 * primary was promoted, and the relay holds WAL of the old primary that the new one never had).
 * The relay's WAL above the fork point is set aside in `.walrelay/diverged/`, never deleted, so
 * that the directory holds only WAL the upstream's history agrees with and the receiver can
 * continue on the new timeline from the fork point, as a cascading standby would.
 *
 * @module
 */

import { pathExists, readFull, writeAll } from "../_io.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import type { TimelineHistory } from "../wal/history.ts";
import {
  parseWalFileName,
  segmentFileName,
  segmentOf,
  segmentOffset,
  type TimelineId,
} from "../wal/segment.ts";
import { join } from "../wal/_path.ts";
import { syncDir } from "./durable_writer.ts";

/** Where diverged WAL goes, inside the WAL directory; a name no WAL file can have. */
export const DIVERGED_DIR = ".walrelay/diverged";

/** Where the relay's history and the upstream's part. */
export interface Fork {
  /** The last timeline both histories share; the relay's WAL on it above `lsn` diverged. */
  tli: TimelineId;
  /** The fork point: where `tli` ends in the upstream's history. */
  lsn: Lsn;
  /** The relay's timelines after `tli`, which the upstream never had: diverged as a whole. */
  divergedTimelines: TimelineId[];
  /** The upstream's timeline that continues from the fork point. */
  next: TimelineId;
}

/**
 * Compares the relay's history (its newest timeline's, with `localEnd` the end of its WAL) with
 * the upstream's, and returns the fork when the relay holds WAL the upstream's history does not
 * contain. Timelines are the same when their IDs and beginnings agree.
 *
 * @returns The fork, or `undefined` when the relay's WAL lies within the upstream's history (or
 * the histories share nothing, which only the upstream's errors can settle).
 *
 * @example
 * ```ts
 * import { findFork } from "./divergence.ts";
 * import { parseHistory } from "../wal/history.ts";
 * import assert from "node:assert/strict";
 * const local = parseHistory(1, undefined);
 * const upstream = parseHistory(2, "1\t0/5000060\tno recovery target specified\n");
 * // The relay got WAL up to 0/5100000 on timeline 1; the upstream's timeline 1 ended earlier.
 * assert.deepEqual(findFork(local, 0x5100000n, upstream), {
 *   tli: 1,
 *   lsn: 0x5000060n,
 *   divergedTimelines: [],
 *   next: 2,
 * });
 * assert.equal(findFork(local, 0x5000060n, upstream), undefined);
 * ```
 */
export function findFork(
  local: TimelineHistory,
  localEnd: Lsn,
  upstream: TimelineHistory,
): Fork | undefined {
  let k = -1;
  for (let i = 0; i < Math.min(local.length, upstream.length); i++) {
    if (local[i]!.tli !== upstream[i]!.tli || local[i]!.begin !== upstream[i]!.begin) break;
    k = i;
  }
  if (k < 0) return undefined;
  const forkAt = upstream[k]!.end;
  const next = upstream[k + 1];
  if (forkAt === undefined || next === undefined) return undefined;
  // The relay's WAL on the shared timeline ends at its own switch point, or at its end.
  const localTop = local[k]!.end ?? localEnd;
  if (localTop <= forkAt) return undefined;
  return {
    tli: local[k]!.tli,
    lsn: forkAt,
    divergedTimelines: local.slice(k + 1).map((e) => e.tli),
    next: next.tli,
  };
}

/** What was set aside, for logs and `/status`. */
export interface Divergence {
  /** The timeline the relay's history forked from. */
  timeline: TimelineId;
  /** The fork point. */
  forkLsn: Lsn;
  /** The relay's end of WAL before: the top of the range set aside. */
  endLsn: Lsn;
  /** The upstream's timeline the relay continues on. */
  newTimeline: TimelineId;
  /** The directory the files went to, relative to the WAL directory. */
  path: string;
  /** The files moved (or, for the fork point's segment, copied) there. */
  files: string[];
  /**
   * Whether the directory holds the fork timeline's WAL from the fork point's segment start up
   * to the fork point (the new timeline's first segment begins with it); false when that segment
   * was never received or was already removed.
   */
  prefixKept: boolean;
  /** When it happened. */
  time: Date;
}

/** The name of the directory diverged WAL of `tli` from `lsn` goes to, as `%08X-%016X`. */
export function divergedDirName(tli: TimelineId, lsn: Lsn): string {
  return `${tli.toString(16).toUpperCase().padStart(8, "0")}-${
    lsn.toString(16).toUpperCase().padStart(16, "0")
  }`;
}

const ZEROS = new Uint8Array(1 << 20);

/**
 * Sets the WAL above `fork.lsn` aside in `dir/.walrelay/diverged/<tli>-<fork LSN>/`: segments of
 * the fork's timeline above the fork point's segment, and every file of the diverged timelines,
 * are moved there; the segment holding the fork point is copied there whole, then replaced by a
 * `.partial` that holds its bytes below the fork point and zeros after, which is what a durable
 * writer resuming at that segment validates as durable. Every step is fsynced, and each can be
 * repeated after a crash: a file already set aside is not set aside again.
 *
 * @param endLsn The relay's end of WAL (for the record only).
 *
 * @example
 * ```ts
 * import { setAside } from "./divergence.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const seg = 1 << 20;
 * await Deno.writeFile(`${dir}/000000010000000000000005`, new Uint8Array(seg).fill(7));
 * await Deno.writeFile(`${dir}/000000010000000000000006`, new Uint8Array(seg).fill(8));
 * // 1 MB segments: 0/500100 lies in segment 5.
 * const fork = { tli: 1, lsn: 0x500100n, divergedTimelines: [], next: 2 };
 * const d = await setAside(dir, seg, fork, 0x610000n);
 * assert.equal(d.path, ".walrelay/diverged/00000001-0000000000500100");
 * assert.deepEqual(d.files, ["000000010000000000000005", "000000010000000000000006"]);
 * const kept = await Deno.readFile(`${dir}/000000010000000000000005.partial`);
 * assert.equal(kept[0xFF], 7);
 * assert.equal(kept[0x100], 0);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function setAside(
  dir: string,
  segmentSize: number,
  fork: Fork,
  endLsn: Lsn,
): Promise<Divergence> {
  const path = `${DIVERGED_DIR}/${divergedDirName(fork.tli, fork.lsn)}`;
  const target = join(dir, path);
  await Deno.mkdir(target, { recursive: true, mode: 0o700 });
  await syncDir(join(dir, DIVERGED_DIR));
  await syncDir(join(dir, ".walrelay"));
  await syncDir(dir);

  const forkSeg = segmentOf(fork.lsn, segmentSize);
  const keep = segmentOffset(fork.lsn, segmentSize);
  const diverged = new Set(fork.divergedTimelines);
  const move: string[] = [];
  const forkFiles: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile) continue;
    const p = parseWalFileName(e.name, segmentSize);
    if (!p) continue;
    if (p.kind === "history") {
      if (diverged.has(p.tli)) move.push(e.name);
      continue;
    }
    if (diverged.has(p.tli)) move.push(e.name);
    else if (p.tli !== fork.tli || p.segno < forkSeg) continue;
    else if (p.segno > forkSeg || keep === 0) move.push(e.name);
    else forkFiles.push(e.name);
  }
  const files: string[] = [];
  // The fork point's segment first: its copy must be safe before the original is cut short.
  forkFiles.sort(); // the complete name before its `.partial`: the complete one is the source
  if (forkFiles.length > 0) {
    const source = forkFiles[0]!;
    const name = segmentFileName(fork.tli, forkSeg, segmentSize);
    // Set aside before (a crash, or a divergence met again after a restart): what is here now
    // is the cut copy, and the original is already safe.
    const preserved = await pathExists(join(target, name)) ||
      await pathExists(join(target, `${name}.partial`));
    for (const n of preserved ? [] : forkFiles) {
      if (await copyOnce(join(dir, n), join(target, n))) files.push(n);
    }
    await syncDir(target);
    await writePrefix(join(dir, source), join(dir, `${name}.partial`), keep, segmentSize);
    // The complete name would win over the `.partial`, in the store and when resuming.
    for (const n of forkFiles) if (n !== `${name}.partial`) await Deno.remove(join(dir, n));
    await syncDir(dir);
  }
  for (const name of move.sort()) {
    if (await pathExists(join(target, name))) {
      // Set aside before a crash: the first copy is the one that counts.
      await Deno.remove(join(dir, name));
    } else {
      await Deno.rename(join(dir, name), join(target, name));
      files.push(name);
    }
  }
  await syncDir(target);
  await syncDir(dir);
  return {
    timeline: fork.tli,
    forkLsn: fork.lsn,
    endLsn,
    newTimeline: fork.next,
    path,
    files: files.sort(),
    prefixKept: keep === 0 || forkFiles.length > 0,
    time: new Date(),
  };
}

/** Copies `from` to `to` durably unless `to` exists; returns whether it copied. */
async function copyOnce(from: string, to: string): Promise<boolean> {
  if (await pathExists(to)) return false;
  const tmp = `${to}.tmp`;
  await Deno.copyFile(from, tmp);
  {
    using f = await Deno.open(tmp, { write: true });
    await f.sync();
  }
  await Deno.rename(tmp, to);
  return true;
}

/**
 * Writes `to` as a whole segment holding the first `keep` bytes of `from` and zeros after it,
 * through a temporary file, so a crash leaves either the old file or the new one.
 */
async function writePrefix(
  from: string,
  to: string,
  keep: number,
  segmentSize: number,
): Promise<void> {
  const prefix = new Uint8Array(keep);
  {
    using f = await Deno.open(from, { read: true });
    const got = await readFull(f, prefix);
    if (got < keep) prefix.fill(0, got);
  }
  const tmp = `${to}.tmp`;
  {
    using f = await Deno.open(tmp, { write: true, create: true, truncate: true });
    await writeAll(f, prefix);
    for (let at = keep; at < segmentSize; at += ZEROS.length) {
      await writeAll(f, ZEROS.subarray(0, Math.min(ZEROS.length, segmentSize - at)));
    }
    await f.sync();
  }
  await Deno.rename(tmp, to);
}

/**
 * The log line of a divergence: the LSN range set aside, on which timeline, and where it went.
 *
 * @example
 * ```ts
 * import { divergenceMessage } from "./divergence.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   divergenceMessage({
 *     timeline: 1, forkLsn: 0x5000100n, endLsn: 0x6100000n, newTimeline: 2,
 *     path: ".walrelay/diverged/00000001-0000000005000100", files: [], prefixKept: true,
 *     time: new Date(0),
 *   }),
 *   "upstream history forked from timeline 1 at 0/5000100, below the end of WAL 0/6100000: " +
 *     "set aside WAL from 0/5000100 to 0/6100000 on timeline 1 in " +
 *     "\".walrelay/diverged/00000001-0000000005000100\"; following timeline 2",
 * );
 * ```
 */
export function divergenceMessage(d: Divergence): string {
  return `upstream history forked from timeline ${d.timeline} at ${formatLsn(d.forkLsn)}, ` +
    `below the end of WAL ${formatLsn(d.endLsn)}: set aside WAL from ${formatLsn(d.forkLsn)} ` +
    `to ${formatLsn(d.endLsn)} on timeline ${d.timeline} in "${d.path}"; ` +
    `following timeline ${d.newTimeline}`;
}
