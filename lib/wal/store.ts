/**
 * A directory of WAL segment files (an archive, a `pg_receivewal` target, the relay's own store):
 * the cluster's identity, the segments of each timeline, the timeline history, and the durable
 * end of WAL that senders may send up to.
 *
 * @module
 */

import { Latch } from "./latch.ts";
import { readFileHead, readFullSync } from "../_io.ts";
import { UnknownTimelineError, WalFileMissingError } from "./errors.ts";
import type { Lsn } from "./lsn.ts";
import {
  majorVersionOfMagic,
  readLongPageHeader,
  SIZE_OF_LONG_PAGE_HEADER,
  unsupportedMagicMessage,
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
import { WalValidator } from "./reader.ts";
import {
  type SegmentCheck,
  type SegmentCheckRequest,
  SegmentValidations,
} from "./segment_validation.ts";
import { ArchivedFiles } from "./_archived_files.ts";
import { MemoryTail } from "./_memory_tail.ts";
import { BytesFile, type SegmentHandle } from "./segment_handle.ts";
import type { ArchiveLayout } from "../archive/layout.ts";
import { ArchiveFormatError } from "../archive/errors.ts";
import { walDirHint } from "../archive/_layout_hint.ts";
import {
  type DecodedSegments,
  type SegmentCacheStats,
  segmentCacheStats,
} from "../archive/segment_cache.ts";
import { decodeArchived } from "../archive/codec.ts";
import { detectFormat } from "../archive/format.ts";

/** Bytes of the tail's segment read at a time for validation. */
const TAIL_READ_BYTES = 128 * 1024;
/** Synchronous reads of the tail between turns of the event loop (1 MiB). */
const TAIL_READS_PER_TURN = 8;

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
  /**
   * The identity to expect, for a directory that may still be empty (relay mode takes it from
   * the upstream). Without it the identity is read from the newest segment.
   */
  identity?: WalIdentity;
  /** Bytes of recent durable WAL kept in memory for fan-out (relay mode). Default 64 MB. */
  memoryTail?: number;
  /** Bytes of decompressed archived segments kept for every sender. Default 256 MiB. */
  cacheSize?: number;
  /**
   * Validate segments in worker threads (default). A sender thread validates in itself: a worker
   * started from a worker validated about three times slower, in wall time, on Deno 2.9.6.
   */
  validationWorkers?: boolean;
  /**
   * Decompressed archived segments read through this instead of a cache of the store's own: a
   * sender thread's store reads through the relay thread's (`RemoteSegments`), so the threads
   * decode each segment once between them.
   */
  decodedSegments?: DecodedSegments;
  /**
   * Asks another store over the same directory (the relay thread's, from a sender thread) for
   * its validation of a complete segment, so the threads validate each segment once between
   * them. `undefined`, or a failure, and the segment is validated here.
   */
  sharedCheck?: (tli: TimelineId, segno: bigint) => Promise<SegmentCheck | undefined>;
  /**
   * Relay mode, a store opened beside the writer (a sender thread): the durable end known now.
   * The files may hold WAL written but not yet fsynced; the end goes past this only as
   * {@linkcode WalStore.noteDurable} says.
   */
  durable?: { tli: TimelineId; end: Lsn };
  /**
   * Relay mode, a sender thread's store: brings the durable end up to date (through
   * {@linkcode WalStore.noteDurable}) before it is read, from where the writer publishes it.
   */
  follow?: () => void;
}

/** The segment at the end of the newest timeline, validated record by record. */
interface Tail {
  tli: TimelineId;
  segno: bigint;
  validator: WalValidator;
}

/**
 * The WAL directory as senders see it. Only whole, non-partial segment files count as durable
 * here; what lies beyond the last of them is not sent.
 *
 * The directory may be an archive as a tool laid it out (pg_receivewal `--compress`, pgBackRest,
 * Barman, WAL-G): its files are listed by their plain names, and a compressed file is decoded
 * (once, for every sender, through a bounded cache) before anything here reads its bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WalStore } from "./store.ts";
 * const store = await WalStore.open("testdata/wal");
 * // The sample switches to timeline 2; its last segment is complete.
 * assert.equal(store.timeline, 2);
 * assert.equal(store.endLsn, 0xC00000n);
 * assert.deepEqual(store.timelines(), [1, 2]);
 * ```
 */
export class WalStore {
  /** The directory. */
  readonly dir: string;
  /** Identity from the segments' long page headers. */
  readonly identity: WalIdentity;
  /** Released whenever the durable end advances or a new timeline appears. */
  readonly latch: Latch = new Latch();
  /** What validation found in complete segments, shared by every sender. */
  readonly validations: SegmentValidations;

  #log: (message: string) => void;
  #files: ArchivedFiles;
  #segments = new Map<TimelineId, Map<bigint, SegmentFile>>();
  #history: TimelineHistory = [{ tli: 1, begin: 0n, end: undefined }];
  #timeline: TimelineId = 1;
  #end: Lsn = 0n;
  #tail: Tail | undefined;
  #headerCache = new Map<string, boolean>();
  /**
   * Files whose header did not pass: looked at again only once written to (a file event) or at
   * the next whole rescan. A live `pg_wal` holds recycled segments above its end, and each commit
   * would otherwise read all their headers again.
   */
  #headerMisses = new Set<string>();
  #tailBuffer: Uint8Array | undefined;
  #warned = new Set<string>();
  #durable: { tli: TimelineId; end: Lsn } | undefined;
  /** Recent durable WAL, so caught-up senders do not each re-read it from disk. */
  #memory = new MemoryTail(0);
  #refreshing: Promise<boolean> | undefined;
  #sharedCheck: WalStoreOptions["sharedCheck"];
  #queued: Promise<boolean> | undefined;
  /** What the queued refresh is to look at: the whole directory, or these files only. */
  #queuedWhole = false;
  #queuedNames = new Set<string>();
  #follow: (() => void) | undefined;

  private constructor(
    dir: string,
    identity: WalIdentity,
    log: (message: string) => void,
    files: ArchivedFiles,
    validationWorkers: boolean,
  ) {
    this.dir = dir;
    this.#files = files;
    this.identity = identity;
    this.#log = log;
    this.validations = new SegmentValidations({ ...identity, log, worker: validationWorkers });
  }

  /**
   * Opens a directory: recognises its layout, reads the identity from the newest segment's long
   * header and scans it. Throws when the directory holds no segment PostgreSQL could have written,
   * mixes layouts (`ArchiveLayoutError`), or holds a file compressed in a format without a decoder
   * here (`ArchiveFormatError`).
   */
  static async open(dir: string, options: WalStoreOptions = {}): Promise<WalStore> {
    const log = options.log ?? (() => {});
    const files = await ArchivedFiles.open(dir, {
      ...(options.cacheSize === undefined ? {} : { cacheSize: options.cacheSize }),
      ...(options.decodedSegments ? { decoded: options.decodedSegments } : {}),
    });
    const identity = options.identity ?? await readIdentity(dir, files);
    const store = new WalStore(dir, identity, log, files, options.validationWorkers ?? true);
    store.#memory = new MemoryTail(options.memoryTail ?? 64 * 1024 * 1024);
    store.#sharedCheck = options.sharedCheck;
    if (options.durable) store.#durable = { ...options.durable };
    store.#follow = options.follow;
    await store.refresh();
    return store;
  }

  /** How the directory is laid out: `plain`, or the archiving tool's layout. */
  get layout(): ArchiveLayout {
    return this.#files.layout;
  }

  /** The decoded-segment cache the store reads archived files through. */
  get decodedSegments(): DecodedSegments {
    return this.#files.cache;
  }

  /** Decompressions of archived files so far, and the cache's bytes (for status). */
  get archiveCache(): SegmentCacheStats {
    return segmentCacheStats(this.#files.cache);
  }

  /**
   * Opens a segment (or other WAL file) by the name the store lists it under, for reading its
   * plain bytes: the file itself, or an archived file's decoded bytes.
   *
   * @throws {Deno.errors.NotFound} when it is gone.
   * @throws {ArchiveFormatError} when an archived file does not decode to what its name promises.
   */
  openSegment(name: string): Promise<SegmentHandle> {
    return this.#open(name, true);
  }

  /**
   * {@linkcode openSegment}; `rescan` says whether a plain file gone from the directory is looked
   * for again after a rescan (never from within one, which would wait on itself).
   */
  async #open(name: string, rescan: boolean): Promise<SegmentHandle> {
    if (this.#files.entry(name)) return await this.#openArchived(name);
    try {
      // Synchronous: each sender opens each segment it reaches, and the tail is opened after
      // each commit in a live directory; an asynchronous open is a turn of the event loop on a
      // thread of its own for one system call.
      return Deno.openSync(this.path(name), { read: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || !rescan) throw e;
      // Compressed since the last rescan (the relay's `--compress`): open the compressed copy.
      await this.refresh();
      if (!this.#files.entry(name)) throw e;
      return await this.#openArchived(name);
    }
  }

  /** An archived file's decoded bytes, lent until the handle is closed. */
  async #openArchived(name: string): Promise<SegmentHandle> {
    const lease = await this.#files.acquire(name, this.identity.segmentSize);
    return new BytesFile(lease.data, lease.info, lease.release);
  }

  /** The newest timeline in the directory. */
  get timeline(): TimelineId {
    this.#follow?.();
    return this.#timeline;
  }

  /** The history of the newest timeline, oldest first. */
  get history(): TimelineHistory {
    return this.#history;
  }

  /** The durable end of WAL on the newest timeline: senders never send past it. */
  get endLsn(): Lsn {
    this.#follow?.();
    return this.#end;
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
   *
   * @throws {UnknownTimelineError} when `tli` is not in the newest timeline's history.
   */
  endOf(tli: TimelineId): Lsn {
    this.#follow?.();
    if (tli === this.#timeline) return this.#end;
    const entry = this.#history.find((h) => h.tli === tli);
    if (!entry || entry.end === undefined) throw new UnknownTimelineError(tli);
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
      const f = next ? this.#segments.get(next.tli)?.get(segno) : undefined;
      if (f && !f.partial) return f;
    }
    // A `.partial` is served too, but never past the valid end computed from its records.
    return this.#segments.get(tli)?.get(segno);
  }

  /**
   * Validates segment `segno` of `tli` before it is served, when it is complete there: every
   * record in it is checked once per file identity, for all senders. `undefined` when the
   * segment is not complete (the tail, whose valid end the store follows itself) or not present.
   */
  checkSegment(tli: TimelineId, segno: bigint): Promise<SegmentCheck> | undefined {
    const file = this.segmentFile(tli, segno);
    if (!file || !this.#complete(file)) return undefined;
    const shared = this.#sharedCheck;
    if (!shared) return this.#checkHere(file, segno);
    // The other store may not have seen the file complete yet; whatever it cannot answer is
    // validated here, so a complete segment is never served unchecked.
    const here = (): Promise<SegmentCheck> =>
      this.#checkHere(file, segno) ?? Promise.reject(new UnknownTimelineError(file.tli));
    return shared(tli, segno).then((r) => r ?? here(), here);
  }

  /** {@linkcode checkSegment} by this store's own validations. */
  #checkHere(file: SegmentFile, segno: bigint): Promise<SegmentCheck> | undefined {
    const segSize = this.identity.segmentSize;
    // The record that runs on is followed on the file's own timeline, whichever timeline a
    // sender streams: the result is remembered per file, the same for every sender.
    const next = this.segmentFile(file.tli, segno + 1n);
    let end: Lsn;
    try {
      end = this.endOf(file.tli);
    } catch {
      return undefined;
    }
    const nextStart = segmentStart(segno + 1n, segSize);
    const nextBytes = end > nextStart
      ? Math.min(segSize, Number(end - nextStart), next?.size ?? 0)
      : 0;
    if (this.#files.entry(file.name) || (next && this.#files.entry(next.name))) {
      return this.#checkArchived(file, next, nextBytes);
    }
    return this.validations.check({
      tli: file.tli,
      segno,
      name: file.name,
      path: this.path(file.name),
      next: next && {
        name: next.name,
        path: this.path(next.name),
        bytes: nextBytes,
        complete: this.#complete(next),
      },
    });
  }

  /**
   * Validates a whole file of an older timeline on its own, following the record that runs on
   * into that timeline's next whole file: the copy of a switch segment that
   * {@linkcode segmentFile} passes over for the next timeline's, which `restore_command` may
   * still ask for by name. `undefined` for a file of the newest timeline or not whole.
   */
  checkOlderTimelineFile(file: SegmentFile): Promise<SegmentCheck> | undefined {
    if (file.tli >= this.#timeline || !this.#complete(file)) return undefined;
    const next = this.#segments.get(file.tli)?.get(file.segno + 1n);
    const nextWhole = next && this.#complete(next) ? next : undefined;
    const nextBytes = nextWhole ? this.identity.segmentSize : 0;
    if (this.#files.entry(file.name) || (nextWhole && this.#files.entry(nextWhole.name))) {
      return this.#checkArchived(file, nextWhole, nextBytes);
    }
    return this.validations.check({
      tli: file.tli,
      segno: file.segno,
      name: file.name,
      path: this.path(file.name),
      next: nextWhole && {
        name: nextWhole.name,
        path: this.path(nextWhole.name),
        bytes: nextBytes,
        complete: true,
      },
    });
  }

  /**
   * {@linkcode checkSegment} for a segment whose file, or the next one's, is archived: validation
   * reads the decoded bytes. A next file that does not decode is left out: the record running on
   * into it is then not followed, and the damage is reported when a sender reaches that file.
   */
  #checkArchived(
    file: SegmentFile,
    next: SegmentFile | undefined,
    nextBytes: number,
  ): Promise<SegmentCheck> {
    const segSize = this.identity.segmentSize;
    const entry = this.#files.entry(file.name);
    const nextEntry = next && this.#files.entry(next.name);
    const request: SegmentCheckRequest = {
      tli: file.tli,
      segno: file.segno,
      name: file.name,
      path: entry?.path ?? this.path(file.name),
      next: next && {
        name: next.name,
        path: nextEntry?.path ?? this.path(next.name),
        bytes: nextBytes,
        complete: this.#complete(next),
      },
    };
    // Decoding runs ahead of validation, itself ahead of the senders: validating a segment needs
    // the one after it decoded, and waiting for both decodes in turn would stall at every
    // segment. Two ahead of the segment checked: the next one was asked for with the previous.
    const ahead = this.segmentFile(file.tli, file.segno + 2n);
    if (ahead && this.#files.entry(ahead.name) && this.#complete(ahead)) {
      this.#files.prefetch(ahead.name, segSize);
    }
    // Decoded only when validation runs: a remembered result needs neither file's bytes, which
    // are lent until validation is done with them.
    request.load = async (): Promise<SegmentCheckRequest> => {
      const { load: _, ...loaded } = request;
      const leases: (() => void)[] = [];
      loaded.release = () => leases.forEach((release) => release());
      try {
        if (entry) {
          const lease = await this.#files.acquire(file.name, segSize);
          leases.push(lease.release);
          loaded.data = lease.data;
        }
        if (loaded.next && nextEntry && nextBytes > 0) {
          try {
            const lease = await this.#files.acquire(next!.name, segSize);
            leases.push(lease.release);
            loaded.next = { ...loaded.next, data: lease.data };
          } catch (e) {
            if (!(e instanceof ArchiveFormatError) && !(e instanceof Deno.errors.NotFound)) {
              throw e;
            }
            delete loaded.next;
          }
        }
      } catch (e) {
        loaded.release();
        throw e;
      }
      return loaded;
    };
    return this.validations.check(request);
  }

  /** Whether a file holds a whole segment that lies below the valid, durable end. */
  #complete(file: SegmentFile): boolean {
    const segSize = this.identity.segmentSize;
    if (file.partial || file.size !== segSize) return false;
    // Files of older timelines are finished; on the newest, a preallocated or growing file is
    // complete only once the end has passed it.
    return file.tli !== this.#timeline ||
      segmentStart(file.segno + 1n, segSize) <= this.#end;
  }

  /** Whether a file that was served is gone from the directory (removed, or recycled away). */
  isRemoved(file: SegmentFile): boolean {
    return !this.#segments.get(file.tli)?.has(file.segno);
  }

  /**
   * Relay mode: the writer reports WAL `[start, start + bytes.length)` on `tli` as fsynced. The
   * durable end advances, the bytes are kept in memory for fan-out, and every caught-up sender
   * wakes. The store keeps a reference to `bytes`: the caller must not reuse the buffer.
   */
  noteDurable(tli: TimelineId, start: Lsn, bytes: Uint8Array): void {
    const end = start + BigInt(bytes.length);
    if (tli > this.#timeline) {
      this.#timeline = tli;
      this.#memory.clear();
    }
    if (tli === this.#timeline && end > this.#end) this.#end = end;
    this.#durable = { tli, end: this.#end };
    this.#memory.add(tli, start, bytes);
    this.latch.set();
  }

  /** Where the in-memory tail of `tli` begins, or `undefined` when none is held. */
  memoryStart(tli: TimelineId): Lsn | undefined {
    return this.#memory.start(tli);
  }

  /**
   * Durable WAL at `lsn` on `tli` still held in memory: a view of up to `max` bytes, or
   * `undefined` when it must be read from disk.
   */
  readMemory(tli: TimelineId, lsn: Lsn, max: number): Uint8Array | undefined {
    return this.#memory.read(tli, lsn, max);
  }

  /** The full path of a file in the directory. */
  path(name: string): string {
    return join(this.dir, name);
  }

  /**
   * Reads a timeline's history file as stored.
   *
   * @throws {WalFileMissingError} when the directory has no such file.
   */
  async historyContent(tli: TimelineId): Promise<Uint8Array> {
    const name = historyFileName(tli);
    try {
      return await this.#readWalFile(name);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new WalFileMissingError(name);
      }
      throw e;
    }
  }

  /**
   * Rescans the directory: new segments, new timelines, and how far the WAL at the end is valid.
   * Concurrent calls share one rescan; a call during a rescan gets the next one. Sets the latch
   * when the durable end or the newest timeline moved.
   *
   * Given `modified`, the names of files written to (a file event said so), it looks at those
   * files only, without listing the directory, when the store lists each of them already as a
   * plain file; anything else (a new file, a history file, an archived one) makes it a whole
   * rescan. A client appending to a `.partial` in a large directory then costs a `stat` and the
   * new bytes' validation per write, not a listing.
   *
   * @param modified Names of files in the directory that were written to.
   * @returns Whether anything a sender cares about changed.
   */
  refresh(modified?: readonly string[]): Promise<boolean> {
    if (modified === undefined) this.#queuedWhole = true;
    else for (const name of modified) this.#queuedNames.add(name);
    if (this.#queued) return this.#queued;
    const previous = this.#refreshing;
    const self: { p?: Promise<boolean> } = {};
    self.p = (async () => {
      // Always yields first, so `self.p` is set before it is read below.
      await previous?.catch(() => {});
      this.#queued = undefined;
      this.#refreshing = self.p;
      const whole = this.#queuedWhole;
      const names = [...this.#queuedNames];
      this.#queuedWhole = false;
      this.#queuedNames.clear();
      try {
        return whole ? await this.#rescan() : await this.#revalidate(names);
      } finally {
        if (this.#refreshing === self.p) this.#refreshing = undefined;
      }
    })();
    this.#queued = self.p;
    return self.p;
  }

  /** A whole WAL file by its listed name (a history file): the file, or the archived one decoded. */
  async #readWalFile(name: string): Promise<Uint8Array> {
    if (this.#files.entry(name)) return await this.#files.read(name, this.identity.segmentSize);
    return await Deno.readFile(this.path(name));
  }

  /**
   * The size of an archived segment's plain bytes: a complete one decodes to a whole segment or
   * fails when read; a `.partial` is decoded now to know. `undefined` when it is gone or does not
   * decode (said once).
   */
  async #archivedSize(name: string, partial: boolean): Promise<number | undefined> {
    const segSize = this.identity.segmentSize;
    if (!partial) return segSize;
    try {
      const lease = await this.#files.acquire(name, segSize);
      lease.release();
      return lease.data.length;
    } catch (e) {
      if (e instanceof ArchiveFormatError) {
        this.#warnOnce(`archive:${name}:${e.message}`, `${e.message}; ignoring it`);
      } else if (!(e instanceof Deno.errors.NotFound)) throw e;
      return undefined;
    }
  }

  async #rescan(): Promise<boolean> {
    const segSize = this.identity.segmentSize;
    this.#headerMisses.clear();
    const known = this.#segments;
    const segments = new Map<TimelineId, Map<bigint, SegmentFile>>();
    const historyTlis: TimelineId[] = [];
    for (const entry of await this.#files.list()) {
      const parsed = parseWalFileName(entry.name, segSize);
      if (!parsed) continue;
      if (parsed.kind === "history") {
        historyTlis.push(parsed.tli);
        continue;
      }
      // Whole files keep their size; only files still short of a segment need a stat.
      const seen = known.get(parsed.tli)?.get(parsed.segno);
      let size = seen?.name === entry.name ? seen.size : -1;
      if (entry.entry) {
        const s = await this.#archivedSize(entry.name, parsed.partial);
        if (s === undefined) continue;
        size = s;
      } else if (size !== segSize) {
        try {
          size = (await Deno.stat(this.path(entry.name))).size;
        } catch {
          continue; // removed between readDir and stat
        }
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
    let history = this.#history;
    if (newest !== this.#timeline || history.at(-1)?.tli !== newest) {
      history = [{ tli: newest, begin: 0n, end: undefined }];
      if (newest > 1) {
        try {
          history = parseHistory(
            newest,
            new TextDecoder().decode(await this.#readWalFile(historyFileName(newest))),
          );
        } catch (e) {
          this.#warnOnce(
            `history:${newest}`,
            `timeline ${newest} has no readable history file: ${(e as Error).message}`,
          );
        }
      }
    }
    this.#segments = segments;
    this.#history = history;
    return await this.#settleEnd(newest);
  }

  /**
   * Looks again at files the store lists, after they were written to: their sizes, and the valid
   * end if one is on the newest timeline. Whatever it cannot tell from them alone is left to a
   * whole rescan.
   */
  async #revalidate(names: readonly string[]): Promise<boolean> {
    const segSize = this.identity.segmentSize;
    let touched = false;
    for (const name of names) {
      const parsed = parseWalFileName(name, segSize);
      if (!parsed) continue; // not WAL: a rescan would not look at it either
      // A history file written to may be a new timeline's.
      if (parsed.kind !== "segment") return await this.#rescan();
      this.#headerMisses.delete(name);
      const known = this.#segments.get(parsed.tli)?.get(parsed.segno);
      // A `.partial` beside its complete segment is ignored, as a rescan ignores it.
      if (known && !known.partial && parsed.partial) continue;
      if (known?.name !== name || this.#files.entry(name)) return await this.#rescan();
      let size: number;
      try {
        // Synchronous, as the tail's reads below: one stat, not a turn of the event loop.
        size = Deno.statSync(this.path(name)).size;
      } catch {
        return await this.#rescan(); // removed or renamed since
      }
      if (size !== known.size) {
        this.#segments.get(known.tli)!.set(known.segno, { ...known, size });
      }
      if (known.tli === this.#timeline) touched = true;
    }
    return touched ? await this.#settleEnd(this.#timeline) : false;
  }

  /** Moves the durable end to what the files of `newest` hold now; sets the latch if it moved. */
  async #settleEnd(newest: TimelineId): Promise<boolean> {
    let end: Lsn;
    if (this.#durable?.tli === newest) {
      // Relay mode: the writer reports what it fsynced; its files need no second reading.
      end = this.#durable.end;
    } else {
      end = await this.#validatedEnd(newest);
    }
    // The durable end never moves back while a timeline is current: what was sent stays sent.
    if (newest === this.#timeline && end < this.#end) end = this.#end;
    const changed = newest !== this.#timeline || end !== this.#end;
    this.#timeline = newest;
    this.#end = end;
    if (changed) this.latch.set();
    return changed;
  }

  /**
   * The valid end of the newest timeline: a whole segment file is complete when the next segment
   * begins with a valid long page header for its own address; the highest such segment (the tail)
   * is validated record by record, as xlogreader would, and the end is where that validation
   * stops. Recycled and preallocated files above the real end fail the header check and are never
   * trusted.
   */
  async #validatedEnd(tli: TimelineId): Promise<Lsn> {
    const segSize = this.identity.segmentSize;
    const begin = this.#history.find((h) => h.tli === tli)?.begin ?? 0n;
    const files = this.segments(tli).reverse();
    let tail: SegmentFile | undefined;
    for (const f of files) {
      if (await this.#validHeader(f)) {
        tail = f;
        break;
      }
    }
    if (!tail) return begin;
    const start = segmentStart(tail.segno, segSize);
    if (!this.#tail || this.#tail.tli !== tli || this.#tail.segno !== tail.segno) {
      this.#tail = {
        tli,
        segno: tail.segno,
        validator: new WalValidator({
          segmentSize: segSize,
          blockSize: this.identity.blockSize,
          magic: this.identity.magic,
          systemId: this.identity.systemId,
          start,
          timeline: tli,
        }),
      };
    }
    await this.#advanceTail(this.#tail, tail);
    let v = this.#tail.validator.validEnd;
    // An XLOG_SWITCH makes the rest of its segment valid padding, but a file still being copied
    // into an archive does not hold that padding yet: never past the bytes the file has.
    const fileEnd = start + BigInt(tail.size);
    if (v > fileEnd) v = fileEnd;
    return v > start ? v : start > begin ? start : begin;
  }

  /** Feeds the tail validator the bytes it has not seen yet; stops at the first invalid record. */
  async #advanceTail(tail: Tail, file: SegmentFile): Promise<void> {
    const segSize = this.identity.segmentSize;
    const segStart = segmentStart(tail.segno, segSize);
    const segEnd = segStart + BigInt(segSize);
    const v = tail.validator;
    let pos = v.resumeLsn;
    if (pos >= segEnd) return;
    let f: SegmentHandle;
    // Opened and read synchronously (an archived segment is decoded first): after each commit
    // in a live directory only the new bytes are read, and an asynchronous open, seek, read and
    // close were four turns of the event loop, each on a thread of its own.
    try {
      f = await this.#open(file.name, false);
    } catch {
      return; // gone or undecodable: the next rescan will not see it either
    }
    // The validator resumes at a record's start and keeps no bytes: one buffer serves every call.
    const buf = this.#tailBuffer ??= new Uint8Array(TAIL_READ_BYTES);
    try {
      for (let reads = 1; pos < segEnd; reads++) {
        // A long stretch (a new tail) lets the event loop turn now and then.
        if (reads % TAIL_READS_PER_TURN === 0) await new Promise((r) => setTimeout(r, 0));
        f.seekSync(Number(pos - segStart), Deno.SeekMode.Start);
        const want = Math.min(buf.length, Number(segEnd - pos));
        const got = readFullSync(f, buf.subarray(0, want));
        if (got === 0) break;
        v.push(pos, buf.subarray(0, got));
        pos += BigInt(got);
        if (v.error || v.resumeLsn < pos || got < want) break;
      }
    } finally {
      f.close();
    }
  }

  /** Whether a segment file starts with a long page header for its own address and cluster. */
  async #validHeader(f: SegmentFile): Promise<boolean> {
    if (this.#headerCache.get(f.name)) return true;
    if (this.#headerMisses.has(f.name)) return false;
    let head: Uint8Array;
    try {
      if (this.#files.entry(f.name)) {
        const lease = await this.#files.acquire(f.name, this.identity.segmentSize);
        head = lease.data.slice(0, SIZE_OF_LONG_PAGE_HEADER);
        lease.release();
      } else {
        head = await readFileHead(this.path(f.name), SIZE_OF_LONG_PAGE_HEADER);
      }
    } catch (e) {
      if (e instanceof ArchiveFormatError) {
        this.#warnOnce(`archive:${f.name}:${e.message}`, `${e.message}; ignoring it`);
      }
      return false;
    }
    const h = readLongPageHeader(head);
    const ok = h !== undefined && h.magic === this.identity.magic &&
      h.pageAddr === segmentStart(f.segno, this.identity.segmentSize) &&
      h.systemId === this.identity.systemId && h.segmentSize === this.identity.segmentSize;
    if (h && h.magic === this.identity.magic && h.systemId !== this.identity.systemId) {
      this.#warnOnce(
        `sysid:${f.name}`,
        `WAL file "${f.name}" is from a different database system: WAL file database system identifier is ${h.systemId}, expected ${this.identity.systemId}; ignoring it`,
      );
    }
    if (
      h && h.magic !== this.identity.magic &&
      h.pageAddr === segmentStart(f.segno, this.identity.segmentSize)
    ) {
      // WAL of another major where this directory's continues: never served, said once.
      const major = majorVersionOfMagic(h.magic);
      this.#warnOnce(
        `magic:${f.name}`,
        `WAL file "${f.name}": ` + (major === undefined
          ? unsupportedMagicMessage(h.magic)
          : `PostgreSQL ${major}'s WAL, the WAL served is PostgreSQL ${this.identity.serverMajor}'s`) +
          "; ignoring it",
      );
    }
    // Only a positive answer is final: a recycled file becomes valid when it is rewritten.
    if (ok) this.#headerCache.set(f.name, true);
    else this.#headerMisses.add(f.name);
    return ok;
  }

  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#log(message);
  }

  /** Renders a segment name in this directory's segment size. */
  fileName(tli: TimelineId, segno: bigint): string {
    return segmentFileName(tli, segno, this.identity.segmentSize);
  }
}

/**
 * Reads the identity from the long header of the newest segment file in `dir` (an archived one
 * decoded: the segment size is not known yet, so not through the cache).
 */
async function readIdentity(dir: string, files: ArchivedFiles): Promise<WalIdentity> {
  const names: string[] = [];
  for (const entry of await files.list()) {
    // The segment size is not known yet; any size parses a name's shape.
    if (parseWalFileName(entry.name, 1 << 20)?.kind === "segment") names.push(entry.name);
  }
  names.sort().reverse();
  const problems: string[] = [];
  const head = async (name: string): Promise<Uint8Array> => {
    const entry = files.entry(name);
    if (!entry) return await readFileHead(join(dir, name), SIZE_OF_LONG_PAGE_HEADER);
    const src = await Deno.readFile(entry.path);
    const format = entry.format ?? detectFormat(entry.name, src.subarray(0, 16));
    const { data } = await decodeArchived(src, format, { file: entry.path });
    return data.subarray(0, SIZE_OF_LONG_PAGE_HEADER);
  };
  for (const name of names) {
    let h;
    try {
      h = readLongPageHeader(await head(name));
    } catch (e) {
      // A file no decoder can read makes the archive unservable, not one segment.
      if (
        e instanceof ArchiveFormatError &&
        (e.problem === "unsupported" || e.problem === "encrypted")
      ) {
        throw e;
      }
      problems.push(`${name}: ${(e as Error).message}`);
      continue;
    }
    if (!h || !isValidSegmentSize(h.segmentSize)) {
      problems.push(`${name}: no valid long page header`);
      continue;
    }
    const serverMajor = majorVersionOfMagic(h.magic);
    // The newest segment says which major's WAL this is: one walrelay cannot serve is an error,
    // not a reason to fall back on older files.
    if (serverMajor === undefined) {
      throw new Error(
        `${unsupportedMagicMessage(h.magic)}: file "${files.entry(name)?.path ?? join(dir, name)}"`,
      );
    }
    return {
      systemId: h.systemId,
      segmentSize: h.segmentSize,
      blockSize: h.blockSize,
      magic: h.magic,
      serverMajor,
    };
  }
  // No WAL file at all: perhaps the directory above the WAL was given.
  const hint = names.length === 0 ? await walDirHint(dir) : undefined;
  throw new Error(
    `no WAL segment with a valid long page header in "${dir}"` +
      (problems.length ? ` (${problems.slice(0, 3).join("; ")})` : "") +
      (hint ? `: ${hint}` : ""),
  );
}
