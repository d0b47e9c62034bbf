/**
 * A directory of WAL segment files (an archive, a `pg_receivewal` target, the relay's own store):
 * the cluster's identity, the segments of each timeline, the timeline history, and the durable
 * end of WAL that senders may send up to.
 *
 * @module
 */

import { Latch } from "../stream/latch.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import type { Lsn } from "./lsn.ts";
import {
  majorVersionOfMagic,
  readLongPageHeader,
  SIZE_OF_LONG_PAGE_HEADER,
} from "./page_header.ts";
import {
  historyFileName,
  isValidSegmentSize,
  parseWalFileName,
  segmentFileName,
  segmentOf,
  segmentStart,
  type TimelineId,
} from "./segment.ts";
import { parseHistory, type TimelineHistory } from "./history.ts";
import { join } from "./_path.ts";

/** One segment file found in the directory. */
export interface SegmentFile {
  /** Timeline in the file name. */
  tli: TimelineId;
  /** Segment number. */
  segno: bigint;
  /** File name, e.g. `000000010000000000000003` or `….partial`. */
  name: string;
  /** Whether the name ends in `.partial`. */
  partial: boolean;
  /** Size in bytes when last looked at. */
  size: number;
}

/** The identity every segment in a directory must share. */
export interface WalIdentity {
  /** `xlp_sysid`. */
  systemId: bigint;
  /** `wal_segment_size` in bytes. */
  segmentSize: number;
  /** `XLOG_BLCKSZ`. */
  blockSize: number;
  /** `XLOG_PAGE_MAGIC` of the WAL. */
  magic: number;
  /** The PostgreSQL major version the magic belongs to. */
  serverMajor: number;
}

/** Options of {@linkcode WalStore.open}. */
export interface WalStoreOptions {
  /** Called with a line worth logging (skipped files, identity conflicts). */
  log?: (message: string) => void;
}

/**
 * The WAL directory as senders see it. Only whole, non-partial segment files count as durable
 * here; what lies beyond the last of them is not sent.
 *
 * @example
 * ```ts ignore
 * import { WalStore } from "./store.ts";
 * const store = await WalStore.open("testdata/wal");
 * console.log(store.timeline, store.endLsn);
 * ```
 */
export class WalStore {
  /** The directory. */
  readonly dir: string;
  /** Identity from the segments' long page headers. */
  readonly identity: WalIdentity;
  /** Released whenever the durable end advances or a new timeline appears. */
  readonly latch: Latch = new Latch();

  #log: (message: string) => void;
  #segments = new Map<TimelineId, Map<bigint, SegmentFile>>();
  #history: TimelineHistory = [{ tli: 1, begin: 0n, end: undefined }];
  #timeline: TimelineId = 1;
  #end: Lsn = 0n;
  #generation = 0;

  private constructor(dir: string, identity: WalIdentity, log: (message: string) => void) {
    this.dir = dir;
    this.identity = identity;
    this.#log = log;
  }

  /**
   * Opens a directory: reads the identity from the newest segment's long header and scans it.
   * Throws when the directory holds no segment PostgreSQL could have written.
   */
  static async open(dir: string, options: WalStoreOptions = {}): Promise<WalStore> {
    const log = options.log ?? (() => {});
    const identity = await readIdentity(dir);
    const store = new WalStore(dir, identity, log);
    await store.refresh();
    return store;
  }

  /** The newest timeline in the directory. */
  get timeline(): TimelineId {
    return this.#timeline;
  }

  /** The history of the newest timeline, oldest first. */
  get history(): TimelineHistory {
    return this.#history;
  }

  /** The durable end of WAL on the newest timeline: senders never send past it. */
  get endLsn(): Lsn {
    return this.#end;
  }

  /** Counts rescans that changed something, so watchers can tell a stale view. */
  get generation(): number {
    return this.#generation;
  }

  /** Segment numbers present for a timeline, ascending. */
  segments(tli: TimelineId): SegmentFile[] {
    const m = this.#segments.get(tli);
    if (!m) return [];
    return [...m.values()].sort((a, b) => (a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : 0));
  }

  /** Every timeline with at least one segment, ascending. */
  timelines(): TimelineId[] {
    return [...this.#segments.keys()].sort((a, b) => a - b);
  }

  /**
   * The end of WAL that may be sent on `tli`: its switch point when the timeline is historic, the
   * durable end when it is the newest.
   */
  endOf(tli: TimelineId): Lsn {
    if (tli === this.#timeline) return this.#end;
    const entry = this.#history.find((h) => h.tli === tli);
    if (!entry || entry.end === undefined) {
      throw new PgError(
        SqlState.INTERNAL_ERROR,
        `requested timeline ${tli} is not in this server's history`,
        { routine: "tliSwitchPoint" },
      );
    }
    return entry.end;
  }

  /**
   * The file that holds segment `segno` of timeline `tli`. The segment containing a timeline's
   * switch point is read from the next timeline's file, as the walsender does: the old timeline's
   * copy may be a `.partial` that was never completed.
   */
  segmentFile(tli: TimelineId, segno: bigint): SegmentFile | undefined {
    const idx = this.#history.findIndex((h) => h.tli === tli);
    const entry = this.#history[idx];
    if (entry?.end !== undefined && segmentOf(entry.end, this.identity.segmentSize) === segno) {
      const next = this.#history[idx + 1];
      const f = next ? this.#complete(next.tli, segno) : undefined;
      if (f) return f;
    }
    return this.#complete(tli, segno);
  }

  #complete(tli: TimelineId, segno: bigint): SegmentFile | undefined {
    const f = this.#segments.get(tli)?.get(segno);
    return f && !f.partial && f.size === this.identity.segmentSize ? f : undefined;
  }

  /** Whether a file that was served is gone from the directory (removed or recycled). */
  isRemoved(file: SegmentFile): boolean {
    return this.#segments.get(file.tli)?.get(file.segno)?.name !== file.name;
  }

  /** The full path of a file in the directory. */
  path(name: string): string {
    return join(this.dir, name);
  }

  /**
   * Reads a timeline's history file as stored. Missing → ERROR 58P01 in PostgreSQL's words.
   */
  async historyContent(tli: TimelineId): Promise<Uint8Array> {
    const name = historyFileName(tli);
    try {
      return await Deno.readFile(this.path(name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new PgError(
          SqlState.UNDEFINED_FILE,
          `could not open file "${name}": No such file or directory`,
        );
      }
      throw e;
    }
  }

  /**
   * Rescans the directory. Advances the durable end and the newest timeline, and sets the latch
   * when either moved.
   *
   * @returns Whether anything a sender cares about changed.
   */
  async refresh(): Promise<boolean> {
    const segSize = this.identity.segmentSize;
    const segments = new Map<TimelineId, Map<bigint, SegmentFile>>();
    const historyTlis: TimelineId[] = [];
    for await (const entry of Deno.readDir(this.dir)) {
      if (!entry.isFile) continue;
      const parsed = parseWalFileName(entry.name, segSize);
      if (!parsed) continue;
      if (parsed.kind === "history") {
        historyTlis.push(parsed.tli);
        continue;
      }
      let size: number;
      try {
        size = (await Deno.stat(this.path(entry.name))).size;
      } catch {
        continue; // removed between readDir and stat
      }
      let m = segments.get(parsed.tli);
      if (!m) segments.set(parsed.tli, m = new Map());
      const prev = m.get(parsed.segno);
      // A complete file wins over a `.partial` of the same segment.
      if (prev && !prev.partial) continue;
      m.set(parsed.segno, { ...parsed, name: entry.name, size });
    }
    // A timeline never disappears: a rescan that sees fewer files (cleanup, a copy in progress)
    // must not send a sender back to an older timeline.
    const newest = Math.max(this.#timeline, ...segments.keys(), ...historyTlis);
    let history: TimelineHistory = [{ tli: newest, begin: 0n, end: undefined }];
    if (newest > 1) {
      try {
        const text = await Deno.readTextFile(this.path(historyFileName(newest)));
        history = parseHistory(newest, text);
      } catch (e) {
        this.#log(`timeline ${newest} has no readable history file: ${(e as Error).message}`);
      }
    }
    this.#segments = segments;
    if (history.length > 1 || newest !== this.#timeline) this.#history = history;
    let end = this.#computeEnd(newest);
    // The durable end never moves back while a timeline is current: what was sent stays sent.
    if (newest === this.#timeline && end < this.#end) end = this.#end;
    const changed = newest !== this.#timeline || end !== this.#end;
    this.#timeline = newest;
    this.#end = end;
    if (changed) {
      this.#generation++;
      this.latch.set();
    }
    return changed;
  }

  /**
   * The end of the last complete segment of the newest timeline, or the timeline's start when it
   * has none yet. Only whole files are durable for certain; a `.partial` says nothing by its size.
   */
  #computeEnd(tli: TimelineId): Lsn {
    const m = this.#segments.get(tli);
    let best: bigint | undefined;
    for (const f of m?.values() ?? []) {
      if (f.partial || f.size !== this.identity.segmentSize) continue;
      if (best === undefined || f.segno > best) best = f.segno;
    }
    if (best !== undefined) return segmentStart(best + 1n, this.identity.segmentSize);
    const begin = this.#history.find((h) => h.tli === tli)?.begin ?? 0n;
    return begin;
  }

  /** Renders a segment name in this directory's segment size. */
  fileName(tli: TimelineId, segno: bigint): string {
    return segmentFileName(tli, segno, this.identity.segmentSize);
  }
}

/** Reads the identity from the long header of the newest segment file in `dir`. */
async function readIdentity(dir: string): Promise<WalIdentity> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    // The segment size is not known yet; any size parses a name's shape.
    if (entry.isFile && parseWalFileName(entry.name, 1 << 20)?.kind === "segment") {
      names.push(entry.name);
    }
  }
  names.sort().reverse();
  const problems: string[] = [];
  for (const name of names) {
    const head = new Uint8Array(SIZE_OF_LONG_PAGE_HEADER);
    let file: Deno.FsFile | undefined;
    try {
      file = await Deno.open(join(dir, name));
      let got = 0;
      while (got < head.length) {
        const n = await file.read(head.subarray(got));
        if (n === null) break;
        got += n;
      }
      const h = got === head.length ? readLongPageHeader(head) : undefined;
      const serverMajor = h ? majorVersionOfMagic(h.magic) : undefined;
      if (!h || serverMajor === undefined || !isValidSegmentSize(h.segmentSize)) {
        problems.push(`${name}: no valid long page header`);
        continue;
      }
      return {
        systemId: h.systemId,
        segmentSize: h.segmentSize,
        blockSize: h.blockSize,
        magic: h.magic,
        serverMajor,
      };
    } catch (e) {
      problems.push(`${name}: ${(e as Error).message}`);
    } finally {
      file?.close();
    }
  }
  throw new Error(
    `no WAL segment with a valid long page header in "${dir}"` +
      (problems.length ? ` (${problems.slice(0, 3).join("; ")})` : ""),
  );
}
