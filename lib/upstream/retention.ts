/**
 * `--retain SIZE`: keeps a relay's WAL directory within a byte budget by removing its oldest
 * complete segments, never one a replication slot on the relay still needs.
 *
 * @module
 */

import type { Lsn } from "../wal/lsn.ts";
import { flatWalFile } from "../archive/layout.ts";
import { parseWalFileName, segmentStart } from "../wal/segment.ts";
import { join } from "../wal/_path.ts";
import { syncDir } from "./durable_writer.ts";

const UNITS: Record<string, number> = {
  "": 1,
  B: 1,
  KB: 1024,
  MB: 1024 ** 2,
  GB: 1024 ** 3,
  TB: 1024 ** 4,
};

/**
 * Parses a size as PostgreSQL writes memory settings: a number and an optional unit `B`, `kB`,
 * `MB`, `GB`, `TB` (powers of 1024, case-insensitive).
 *
 * @throws {Error} for anything else.
 *
 * @example
 * ```ts
 * import { parseSize } from "./retention.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseSize("10GB"), 10 * 1024 ** 3);
 * assert.equal(parseSize("512MB"), 512 * 1024 ** 2);
 * assert.equal(parseSize("16mb"), 16 * 1024 ** 2);
 * ```
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?[bB]?)\s*$/.exec(text);
  const unit = m?.[2]?.toUpperCase() ?? "";
  const factor =
    UNITS[unit === "K" || unit === "M" || unit === "G" || unit === "T" ? unit + "B" : unit];
  if (!m || factor === undefined) {
    throw new Error(`invalid size "${text}": expected a number with B, kB, MB, GB or TB`);
  }
  return Math.floor(Number(m[1]) * factor);
}

/** Options of {@linkcode enforceRetention}. */
export interface RetentionOptions {
  /** The byte budget for segment files (complete and `.partial`). */
  retainBytes: number;
  /** `wal_segment_size`. */
  segmentSize: number;
  /**
   * The oldest LSN still needed (the oldest slot's restart LSN on the relay): the segment holding
   * it and every later one are kept, whatever the budget.
   */
  keepFrom?: Lsn | undefined;
  /**
   * Whether a plain segment file (complete, or a `.partial` already written to its end) is still
   * to be stored compressed (`--compress`). Such a file is neither counted nor removed: its plain
   * size says nothing of what it will take, and the pass that follows its compression counts it.
   */
  awaitsCompression?: (name: string) => boolean;
  /** Log lines (one per removed segment). */
  log?: (message: string) => void;
}

/**
 * Removes the oldest complete segment files of `dir` until the segment files fit in
 * `retainBytes`. `.partial` files count toward the budget but are never removed, nor are history
 * files, nor segments at or after `keepFrom`, nor plain segments awaiting compression (not counted
 * either). The directory is fsynced after removing.
 *
 * @returns The names removed, oldest first.
 *
 * @example
 * ```ts
 * import { enforceRetention } from "./retention.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const seg = new Uint8Array(1 << 20);
 * for (const n of ["000000010000000000000001", "000000010000000000000002",
 *                  "000000010000000000000003"]) await Deno.writeFile(`${dir}/${n}`, seg);
 * const removed = await enforceRetention(dir, { retainBytes: 2 << 20, segmentSize: 1 << 20 });
 * assert.deepEqual(removed, ["000000010000000000000001"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function enforceRetention(dir: string, opts: RetentionOptions): Promise<string[]> {
  const files: { name: string; segno: bigint; tli: number; size: number; complete: boolean }[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile) continue;
    // A segment stored compressed (`--compress`) counts at its size on disk.
    const flat = flatWalFile(e.name);
    const p = parseWalFileName(flat?.name ?? e.name, opts.segmentSize);
    if (p?.kind !== "segment") continue;
    const plain = flat === undefined || flat.format === "plain";
    if (plain && opts.awaitsCompression?.(e.name)) continue;
    let size: number;
    try {
      size = (await Deno.stat(join(dir, e.name))).size;
    } catch {
      continue;
    }
    files.push({ name: e.name, segno: p.segno, tli: p.tli, size, complete: !p.partial });
  }
  let total = files.reduce((s, f) => s + f.size, 0);
  // Oldest WAL first: by segment number, then the older timeline's copy of a segment.
  const candidates = files.filter((f) => f.complete).sort((a, b) =>
    a.segno === b.segno ? a.tli - b.tli : a.segno < b.segno ? -1 : 1
  );
  const removed: string[] = [];
  for (const f of candidates) {
    if (total <= opts.retainBytes) break;
    const end = segmentStart(f.segno + 1n, opts.segmentSize);
    if (opts.keepFrom !== undefined && end > opts.keepFrom) break;
    try {
      await Deno.remove(join(dir, f.name));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    total -= f.size;
    removed.push(f.name);
    opts.log?.(`removed segment ${f.name} (--retain)`);
  }
  if (removed.length > 0) await syncDir(dir);
  return removed;
}
