/**
 * Writes WAL received from an upstream into a directory as `pg_receivewal` does, durably: each
 * segment is first a `<name>.partial` preallocated with zeros to the full segment size, bytes go
 * at their LSN's offset, one `fdatasync` covers everything written so far, and a complete segment
 * is renamed to its final name with the directory fsynced. Only then are the bytes announced to
 * the store as durable.
 *
 * After a crash the directory itself says where to resume: the end of the last complete segment,
 * or the start of the newest `.partial` (its valid prefix, found by the validating reader, is what
 * was durable; its size says nothing).
 *
 * @module
 */

import { readFileHead, readFull, writeAll } from "../_io.ts";
import { flatWalFile } from "../archive/layout.ts";
import type { Lsn } from "../wal/lsn.ts";
import { formatLsn } from "../wal/lsn.ts";
import { readLongPageHeader, SIZE_OF_LONG_PAGE_HEADER } from "../wal/page_header.ts";
import { validateFiles } from "../wal/reader.ts";
import {
  historyFileName,
  parseWalFileName,
  segmentFileName,
  segmentOf,
  segmentOffset,
  segmentStart,
  type TimelineId,
} from "../wal/segment.ts";
import { parseHistory } from "../wal/history.ts";
import { join } from "../wal/_path.ts";
import { SyncBudget } from "./_sync_budget.ts";
import { fileOp, WalFileError } from "./wal_file_error.ts";

/**
 * What the writer tells about durable WAL: the relay's `WalStore` fits. `noteDurable` is
 * optional so the writer also works with a store that only counts complete segment files; it then
 * asks for a rescan whenever a segment completes.
 */
export interface DurableSink {
  /** The bytes `[start, start + bytes.length)` on `tli` are fsynced in the directory. */
  noteDurable?(tli: TimelineId, start: Lsn, bytes: Uint8Array): void;
  /** Rescans the directory (new history files, completed segments). */
  refresh(): Promise<unknown>;
  /** The durable end the sink knows of, on its newest timeline. */
  readonly endLsn: Lsn;
  /** The sink's newest timeline. */
  readonly timeline: TimelineId;
}

/** What a WAL directory holds, as far as resuming a receiver goes. */
export interface LocalWal {
  /** `xlp_sysid` of the newest segment with a valid long page header. */
  systemId: bigint | undefined;
  /** `xlp_seg_size` of that segment. */
  segmentSize: number | undefined;
  /** The newest timeline (segments or history files). */
  timeline: TimelineId | undefined;
  /** Where streaming resumes on `timeline`: a segment start. */
  resumeLsn: Lsn | undefined;
  /** The end of WAL durable in the directory on `timeline` (≥ `resumeLsn`). */
  durableEnd: Lsn | undefined;
}

/**
 * Looks at a WAL directory and finds where a receiver resumes: after the last complete segment of
 * the newest timeline, or at the start of the oldest `.partial` above it (validated to find how much of it
 * is durable WAL), or, on a timeline with only its history file, at the segment holding the
 * switch point.
 *
 * @param segmentSize The upstream's `wal_segment_size` (names are parsed with it).
 * @throws {Error} when a segment's long page header disagrees with `segmentSize`.
 *
 * @example
 * ```ts
 * import { scanLocalWal } from "./durable_writer.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const local = await scanLocalWal(dir, 1 << 20);
 * assert.equal(local.resumeLsn, undefined); // empty: the upstream decides
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function scanLocalWal(dir: string, segmentSize: number): Promise<LocalWal> {
  const segs: { tli: TimelineId; segno: bigint; name: string; partial: boolean; size: number }[] =
    [];
  const histories: TimelineId[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile) continue;
    // `--compress` stores complete segments compressed, and only complete ones.
    const flat = flatWalFile(e.name);
    const p = parseWalFileName(flat?.name ?? e.name, segmentSize);
    if (!p) continue;
    if (p.kind === "history") {
      histories.push(p.tli);
      continue;
    }
    const size = flat && flat.format !== "plain"
      ? segmentSize
      : (await Deno.stat(join(dir, e.name))).size;
    segs.push({ tli: p.tli, segno: p.segno, name: e.name, partial: p.partial, size });
  }
  const result: LocalWal = {
    systemId: undefined,
    segmentSize: undefined,
    timeline: undefined,
    resumeLsn: undefined,
    durableEnd: undefined,
  };
  // Identity from the newest file with a readable long header (a zeroed .partial has none).
  const byAge = [...segs].sort((a, b) =>
    a.segno === b.segno ? b.tli - a.tli : a.segno < b.segno ? 1 : -1
  );
  for (const s of byAge) {
    const h = readLongPageHeader(await readFileHead(join(dir, s.name), SIZE_OF_LONG_PAGE_HEADER));
    if (!h) continue;
    if (h.segmentSize !== segmentSize) {
      throw new Error(
        `WAL file "${s.name}" in "${dir}" has segment size ${h.segmentSize}, ` +
          `the upstream ${segmentSize}`,
      );
    }
    result.systemId = h.systemId;
    result.segmentSize = h.segmentSize;
    break;
  }
  if (segs.length === 0 && histories.length === 0) return result;
  const tli = Math.max(...segs.map((s) => s.tli), ...histories);
  result.timeline = tli;
  const mine = segs.filter((s) => s.tli === tli);
  let lastComplete: bigint | undefined;
  for (const s of mine) {
    if (
      !s.partial && s.size === segmentSize && (lastComplete === undefined || s.segno > lastComplete)
    ) {
      lastComplete = s.segno;
    }
  }
  // The oldest `.partial` above it: the writer opens the next segment's `.partial` before the
  // completed one is renamed at the next flush, so a crash between leaves two, and resuming at
  // the newer would leave the older one a `.partial` for good. The upstream sends the segment
  // again from its start; the newer file is written over.
  const partial =
    mine.filter((s) => s.partial && (lastComplete === undefined || s.segno > lastComplete))
      .sort((a, b) => (a.segno < b.segno ? -1 : 1))[0];
  if (partial) {
    const start = segmentStart(partial.segno, segmentSize);
    let validEnd = start;
    try {
      const v = await validateFiles([join(dir, partial.name)]);
      if (result.systemId !== undefined && v.systemId !== result.systemId) {
        throw new Error(`"${partial.name}" belongs to database system ${v.systemId}`);
      }
      validEnd = v.validEnd;
    } catch (e) {
      // No valid long header yet (created, crashed before the first sync): nothing in it counts.
      if (!(e instanceof Error) || !/long page header/.test(e.message)) throw e;
    }
    const segEnd = segmentStart(partial.segno + 1n, segmentSize);
    result.resumeLsn = start;
    result.durableEnd = validEnd < segEnd ? validEnd : segEnd;
    return result;
  }
  if (lastComplete !== undefined) {
    result.resumeLsn = result.durableEnd = segmentStart(lastComplete + 1n, segmentSize);
    return result;
  }
  // Only a history file on the newest timeline: it begins at its parent's switch point.
  try {
    const history = parseHistory(tli, await Deno.readTextFile(join(dir, historyFileName(tli))));
    const begin = history.at(-1)!.begin;
    result.resumeLsn = segmentStart(segmentOf(begin, segmentSize), segmentSize);
    result.durableEnd = begin;
  } catch {
    result.timeline = undefined; // unreadable: let the upstream decide
  }
  return result;
}

/**
 * Fsyncs a directory, so renames and new files in it survive a crash.
 *
 * @throws {WalFileError} naming the directory, as PostgreSQL's `fsync_fname` does.
 */
export async function syncDir(dir: string): Promise<void> {
  using d = await fileOp("open", dir, () => Deno.open(dir, { read: true }));
  await fileOp("fsync_directory", dir, () => d.sync());
}

/**
 * Writes a small file so that it is either absent or complete after a crash: a temporary file,
 * fsync, rename, fsync of the directory.
 *
 * @example
 * ```ts
 * import { writeFileDurably } from "./durable_writer.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeFileDurably(dir, "00000002.history", new TextEncoder().encode("1\t0/3000000\tx\n"));
 * assert.equal(await Deno.readTextFile(`${dir}/00000002.history`), "1\t0/3000000\tx\n");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeFileDurably(
  dir: string,
  name: string,
  content: Uint8Array,
): Promise<void> {
  const tmp = join(dir, `${name}.tmp`);
  const path = join(dir, name);
  {
    using f = await fileOp(
      "create",
      tmp,
      () => Deno.open(tmp, { write: true, create: true, truncate: true }),
    );
    await fileOp("write", tmp, () => writeAll(f, content));
    await fileOp("fsync", tmp, () => f.sync());
  }
  await fileOp("rename", tmp, () => Deno.rename(tmp, path), path);
  await syncDir(dir);
}

/**
 * The writer's WAL writes and syncs, counted and timed as PostgreSQL's `pg_stat_wal` counts its
 * own (`wal_write`, `wal_write_time`, `wal_sync`, `wal_sync_time`). The sync time is the disk's
 * share of the lag the relay adds: nothing is sent before it.
 */
export interface WalIoStats {
  /** `write` calls putting WAL into segment files. */
  writes: number;
  /** Seconds spent in them. */
  writeSeconds: number;
  /** `fdatasync` calls of segment files. */
  syncs: number;
  /** Seconds spent in them. */
  syncSeconds: number;
}

/**
 * A {@linkcode WalIoStats} with nothing written or synced yet.
 *
 * @example
 * ```ts
 * import { newWalIoStats } from "./durable_writer.ts";
 * import assert from "node:assert/strict";
 * assert.equal(newWalIoStats().syncs, 0);
 * ```
 */
export function newWalIoStats(): WalIoStats {
  return { writes: 0, writeSeconds: 0, syncs: 0, syncSeconds: 0 };
}

/** Options of {@linkcode DurableWriter.open}. */
export interface DurableWriterOptions {
  /** `wal_segment_size`. */
  segmentSize: number;
  /** Log lines (segment completed, …). */
  log?: (message: string) => void;
  /** Called after a segment was completed and renamed (retention hooks in here). */
  onSegmentComplete?: (tli: TimelineId, segno: bigint) => void | Promise<void>;
  /** Where the writes and syncs are counted, across writers (default: a fresh record). */
  stats?: WalIoStats;
}

interface OpenSegment {
  tli: TimelineId;
  segno: bigint;
  file: Deno.FsFile;
  partialName: string;
  finalName: string;
  complete: boolean;
  /** Where the next write lands without a seek; -1 when unknown. */
  pos: number;
}

const ZEROS = new Uint8Array(1 << 20);

/**
 * The durable segment writer of relay mode.
 *
 * @example
 * ```ts ignore
 * import { DurableWriter } from "./durable_writer.ts";
 * const w = await DurableWriter.open("/var/lib/walrelay", { segmentSize: 16 << 20 });
 * w.position(1, 0x1000000n);
 * await w.write(1, 0x1000000n, bytes);
 * await w.flush(); // fdatasync, rename complete segments, announce to the store
 * ```
 */
export class DurableWriter {
  /** The directory. */
  readonly dir: string;
  /** `wal_segment_size`. */
  readonly segmentSize: number;
  /** The writes and syncs so far. */
  readonly stats: WalIoStats;

  #log: (message: string) => void;
  #onComplete: DurableWriterOptions["onSegmentComplete"];
  #tli: TimelineId = 0;
  #written: Lsn = 0n;
  #flushed: Lsn = 0n;
  #pending: { start: Lsn; bytes: Uint8Array }[] = [];
  #pendingBytes = 0;
  #syncBudget = new SyncBudget({ windowMs: 100, share: 0.25 });
  #current: OpenSegment | undefined;
  #dirty: OpenSegment[] = [];
  #sink: DurableSink | undefined;
  #announcedTli: TimelineId = 0;
  #announced: Lsn = 0n;
  #lock: Promise<unknown> = Promise.resolve();
  /** A failed flush: no more writes until the receiver positions the writer again. */
  #failed: WalFileError | undefined;

  private constructor(dir: string, options: DurableWriterOptions) {
    this.dir = dir;
    this.segmentSize = options.segmentSize;
    this.stats = options.stats ?? newWalIoStats();
    this.#log = options.log ?? (() => {});
    this.#onComplete = options.onSegmentComplete;
  }

  /** Creates a writer for `dir` (which must exist). Call {@linkcode position} before writing. */
  static open(dir: string, options: DurableWriterOptions): Promise<DurableWriter> {
    return Promise.resolve(new DurableWriter(dir, options));
  }

  /** Serialises flushes, attaching and timeline switches: each sees the others' effects. */
  #locked<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#lock.then(fn);
    this.#lock = p.catch(() => {});
    return p;
  }

  /** The timeline being written. */
  get timeline(): TimelineId {
    return this.#tli;
  }

  /** End of what was written (not necessarily synced). */
  get writtenLsn(): Lsn {
    return this.#written;
  }

  /** End of what is durable: written and fdatasynced (and renamed when complete). */
  get flushedLsn(): Lsn {
    return this.#flushed;
  }

  /** Bytes written since the last flush. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Sets where the next write goes. `durableEnd` is how much from `lsn` on is already durable
   * in the directory (a resumed `.partial`'s valid prefix); it is what gets announced first.
   */
  position(tli: TimelineId, lsn: Lsn, durableEnd: Lsn = lsn): void {
    if (this.#pending.length > 0) throw new Error("position() with unflushed writes");
    this.#failed = undefined;
    this.#tli = tli;
    this.#written = lsn;
    this.#flushed = durableEnd > lsn ? durableEnd : lsn;
  }

  /**
   * Writes WAL bytes at their LSN. They must continue what was written (the upstream resends a
   * resumed segment from its start, so a write may begin before the durable end).
   */
  async write(tli: TimelineId, start: Lsn, bytes: Uint8Array): Promise<void> {
    if (this.#failed) throw this.#failed;
    if (tli !== this.#tli || start !== this.#written) {
      throw new Error(
        `got WAL data at ${formatLsn(start)} on timeline ${tli}, expected ` +
          `${formatLsn(this.#written)} on timeline ${this.#tli}`,
      );
    }
    let off = 0;
    while (off < bytes.length) {
      const lsn = start + BigInt(off);
      const segno = segmentOf(lsn, this.segmentSize);
      const inSeg = segmentOffset(lsn, this.segmentSize);
      const n = Math.min(bytes.length - off, this.segmentSize - inSeg);
      const seg = await this.#segment(tli, segno);
      const piece = bytes.subarray(off, off + n);
      // Synchronous, and a seek only when not already there: a write into the page cache takes
      // microseconds, and on the commit-to-standby path every trip to the blocking-thread pool
      // is latency. Only the fdatasync in flush() waits for the disk.
      if (!this.#dirty.includes(seg)) this.#dirty.push(seg);
      const began = performance.now();
      try {
        if (seg.pos !== inSeg) seg.file.seekSync(inSeg, Deno.SeekMode.Start);
        let w = 0;
        while (w < n) {
          w += seg.file.writeSync(piece.subarray(w));
          this.stats.writes++;
        }
      } catch (e) {
        // What was written before stays pending and is synced by the next flush; this piece
        // comes again from the upstream.
        seg.pos = -1;
        throw new WalFileError("write", join(this.dir, seg.partialName), e);
      }
      this.stats.writeSeconds += (performance.now() - began) / 1000;
      seg.pos = inSeg + n;
      if (inSeg + n === this.segmentSize) {
        seg.complete = true;
        this.#current = undefined;
      }
      off += n;
    }
    this.#pending.push({ start, bytes });
    this.#pendingBytes += bytes.length;
    this.#written = start + BigInt(bytes.length);
  }

  async #segment(tli: TimelineId, segno: bigint): Promise<OpenSegment> {
    const cur = this.#current;
    if (cur && cur.tli === tli && cur.segno === segno) return cur;
    const finalName = segmentFileName(tli, segno, this.segmentSize);
    const partialName = `${finalName}.partial`;
    let file: Deno.FsFile;
    let name = partialName;
    const finalPath = join(this.dir, finalName);
    try {
      // Rewriting a segment that is already complete (same bytes again): in place.
      file = await Deno.open(finalPath, { write: true });
      name = finalName;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw new WalFileError("open", finalPath, e);
      const path = join(this.dir, partialName);
      file = await fileOp("create", path, () => Deno.open(path, { write: true, create: true }));
      try {
        await this.#extend(file, path);
      } catch (e) {
        file.close();
        throw e;
      }
    }
    const seg: OpenSegment = {
      tli,
      segno,
      file,
      partialName: name,
      finalName,
      complete: false,
      // The zero fill and opening leave the position somewhere; the first write seeks.
      pos: -1,
    };
    // A segment left open by a timeline switch stays a .partial, as pg_receivewal leaves it.
    if (this.#current && !this.#dirty.includes(this.#current)) this.#current.file.close();
    this.#current = seg;
    return seg;
  }

  /**
   * Fills a new `.partial` with zeros up to the segment size and makes that durable, as
   * `XLogFileInit` does; a fill cut short by a full disk is continued from where it stopped.
   */
  async #extend(file: Deno.FsFile, path: string): Promise<void> {
    const size = (await fileOp("open", path, () => file.stat())).size;
    if (size < this.segmentSize) {
      // Real zeros, not a sparse file: later fdatasyncs then never update allocation metadata,
      // and a crash leaves zeros (the end of valid WAL), never garbage.
      await fileOp("extend", path, async () => {
        await file.seek(size, Deno.SeekMode.Start);
        for (let at = size; at < this.segmentSize; at += ZEROS.length) {
          await writeAll(file, ZEROS.subarray(0, Math.min(ZEROS.length, this.segmentSize - at)));
        }
      });
      await fileOp("fsync", path, () => file.sync());
      await syncDir(this.dir);
    } else if (size > this.segmentSize) {
      await fileOp("truncate", path, () => file.truncate(this.segmentSize));
    }
  }

  /**
   * Makes everything written durable: fdatasync of each file written to, rename of completed
   * segments and fsync of the directory; then announces the bytes to the sink.
   *
   * @throws {WalFileError} when any step fails. Nothing written since the last flush then counts
   * as durable: the writer takes no more writes until {@linkcode position} places it at the
   * durable end again, and the WAL is written anew from there.
   */
  flush(): Promise<void> {
    return this.#locked(() => this.#flush());
  }

  async #flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    // What this flush covers is taken now: a write landing while a sync waits in the pool is
    // the next flush's, since the sync may have passed its pages already.
    const dirty = this.#dirty;
    const pending = this.#pending;
    const pendingBytes = this.#pendingBytes;
    const written = this.#written;
    this.#dirty = [];
    this.#pending = [];
    this.#pendingBytes = 0;
    try {
      // A small flush (a commit or two while the upstream is quiet) syncs in place: the disk's
      // latency is the relay's added lag, and a round trip through the blocking-thread pool
      // adds to it. A large one (catching up), or one when in-place syncs already hold the loop
      // a quarter of the time, goes to the pool, so senders keep streaming meanwhile.
      const now = performance.now();
      if (this.#syncBudget.allows(now, pendingBytes)) {
        for (const seg of dirty) {
          try {
            seg.file.syncDataSync();
          } catch (e) {
            throw new WalFileError("fdatasync", join(this.dir, seg.partialName), e);
          }
        }
        this.#syncBudget.record(now, performance.now() - now);
      } else {
        for (const seg of dirty) {
          await fileOp("fdatasync", join(this.dir, seg.partialName), () => seg.file.syncData());
        }
      }
      this.stats.syncs += dirty.length;
      this.stats.syncSeconds += (performance.now() - now) / 1000;
      let completed = false;
      for (const seg of dirty) {
        if (!seg.complete) continue;
        seg.file.close();
        if (seg.partialName !== seg.finalName) {
          const from = join(this.dir, seg.partialName);
          const to = join(this.dir, seg.finalName);
          await fileOp("rename", from, () => Deno.rename(from, to), to);
          completed = true;
        }
      }
      if (completed) {
        await syncDir(this.dir);
        // The store finds the final names now, not at its next periodic rescan; a sender that
        // opens the old `.partial` name meanwhile looks again itself.
        if (this.#sink?.noteDurable) this.#sink.refresh().catch(() => {});
      }
    } catch (e) {
      this.#forgetUnflushed(dirty);
      this.#failed = e instanceof WalFileError ? e : new WalFileError("fdatasync", this.dir, e);
      throw this.#failed;
    }
    if (written > this.#flushed) this.#flushed = written;
    for (const p of pending) this.#announce(this.#tli, p.start, p.bytes);
    for (const seg of dirty) {
      if (!seg.complete || seg.partialName === seg.finalName) continue;
      this.#log(`finished segment ${seg.finalName}`);
      if (!this.#sink?.noteDurable) await this.#sink?.refresh();
      await this.#onComplete?.(seg.tli, seg.segno);
    }
  }

  /**
   * After a failed fdatasync, rename or directory fsync, nothing written since the last flush
   * may count as durable: Linux drops dirty pages it could not write back and reports the error
   * once, so a second fdatasync could succeed over lost data. The files are closed and the WAL
   * is written again from the durable end, which is where the receiver re-streams from.
   */
  #forgetUnflushed(dirty: OpenSegment[]): void {
    for (const seg of new Set([...dirty, ...this.#dirty, this.#current])) {
      try {
        seg?.file.close();
      } catch { /* closed already */ }
    }
    this.#dirty = [];
    this.#current = undefined;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#written = this.#flushed;
  }

  /** Tells the sink about durable bytes it has not heard of yet. */
  #announce(tli: TimelineId, start: Lsn, bytes: Uint8Array): void {
    const sink = this.#sink;
    if (!sink?.noteDurable) return;
    if (tli !== this.#announcedTli) {
      this.#announcedTli = tli;
      this.#announced = sink.timeline === tli ? sink.endLsn : start;
    }
    const end = start + BigInt(bytes.length);
    if (end <= this.#announced) return;
    const skip = this.#announced > start ? Number(this.#announced - start) : 0;
    if (start + BigInt(skip) !== this.#announced) return; // a gap: the sink would not accept it
    sink.noteDurable(tli, this.#announced, bytes.subarray(skip));
    this.#announced = end;
  }

  /**
   * Connects the writer to the store. What is durable in the directory beyond what the store
   * knows (a resumed `.partial`'s valid prefix, WAL received before the store opened) is read
   * back from the files and announced first.
   */
  attach(sink: DurableSink): Promise<void> {
    return this.#locked(async () => {
      this.#sink = sink;
      await sink.refresh();
      if (!sink.noteDurable || this.#tli === 0) return;
      this.#announcedTli = this.#tli;
      this.#announced = sink.timeline === this.#tli ? sink.endLsn : this.#flushed;
      // What is durable on disk but the store does not know of (at most a segment or so).
      let at = this.#announced;
      while (at < this.#flushed) {
        const segno = segmentOf(at, this.segmentSize);
        const off = segmentOffset(at, this.segmentSize);
        const segEnd = segmentStart(segno + 1n, this.segmentSize);
        const to = this.#flushed < segEnd ? this.#flushed : segEnd;
        const bytes = await this.#readBack(this.#tli, segno, off, Number(to - at));
        if (!bytes) break;
        sink.noteDurable(this.#tli, at, bytes);
        this.#announced = at = to;
      }
    });
  }

  async #readBack(
    tli: TimelineId,
    segno: bigint,
    off: number,
    len: number,
  ): Promise<Uint8Array | undefined> {
    const name = segmentFileName(tli, segno, this.segmentSize);
    for (const n of [name, `${name}.partial`]) {
      const path = join(this.dir, n);
      let f: Deno.FsFile;
      try {
        f = await Deno.open(path);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw new WalFileError("open", path, e);
      }
      using _ = f;
      const buf = new Uint8Array(len);
      const got = await fileOp("read", path, async () => {
        await f.seek(off, Deno.SeekMode.Start);
        return await readFull(f, buf);
      });
      if (got === len) return buf;
    }
    return undefined;
  }

  /**
   * Follows a timeline switch: flushes, writes the new timeline's history file durably, lets the
   * sink read it, and positions at the segment holding the switch point on the new timeline.
   * The old timeline's last segment stays a `.partial`, as with `pg_receivewal`.
   */
  switchTimeline(newTli: TimelineId, switchpoint: Lsn, history: Uint8Array): Promise<void> {
    return this.#locked(async () => {
      await this.#flush();
      await writeFileDurably(this.dir, historyFileName(newTli), history);
      if (this.#current) {
        this.#current.file.close();
        this.#current = undefined;
      }
      const segno = segmentOf(switchpoint, this.segmentSize);
      const start = segmentStart(segno, this.segmentSize);
      const prefix = Number(switchpoint - start);
      if (prefix > 0) {
        // As PostgreSQL's XLogInitNewTimeline: the new timeline's first segment begins with the
        // old timeline's bytes up to the switch point. They must be in the file before the store
        // learns of the timeline, since senders read that segment from the new timeline's file.
        const bytes = await this.#readBack(this.#tli, segno, 0, prefix);
        if (!bytes) {
          throw new Error(
            `segment ${segmentFileName(this.#tli, segno, this.segmentSize)} does not hold ` +
              `WAL up to the switch point ${formatLsn(switchpoint)}`,
          );
        }
        const seg = await this.#segment(newTli, segno);
        const path = join(this.dir, seg.partialName);
        seg.pos = -1;
        await fileOp("write", path, async () => {
          await seg.file.seek(0, Deno.SeekMode.Start);
          await writeAll(seg.file, bytes);
        });
        await fileOp("fdatasync", path, () => seg.file.syncData());
      }
      this.#tli = newTli;
      this.#written = start;
      this.#flushed = switchpoint;
      await this.#sink?.refresh();
    });
  }

  /** Flushes and closes the open files. */
  async close(): Promise<void> {
    await this.flush().catch(() => {});
    for (const s of [this.#current, ...this.#dirty]) {
      try {
        s?.file.close();
      } catch { /* closed already */ }
    }
    this.#current = undefined;
    this.#dirty = [];
  }
}
