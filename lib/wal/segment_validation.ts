/**
 * Complete segment files checked record by record before any of their bytes is served, once per
 * file identity (device, inode, size, modification time) for every sender together.
 *
 * A complete segment is trusted by nobody: an archive suffers bit rot and bad copies, and a
 * damaged byte must never reach a client. Each record that begins in the segment passes
 * xlogreader's checks, CRC included; the record that runs on into the next segment is followed
 * there. The head of the segment, the end of a record begun in the previous one, was checked with
 * that segment, so validation starts at the first record that begins in the file, as the tail
 * validator of the store does.
 *
 * @module
 */

import { formatLsn, type Lsn } from "./lsn.ts";
import type { WalReaderError } from "./reader.ts";
import type { TimelineId } from "./segment.ts";
import {
  dependencyKey,
  identityOf,
  type NextDependency,
  statOrUndefined,
  validateSegment,
  type ValidationOutcome,
  type ValidationSettings,
} from "./_segment_check.ts";

/** What validation found in one complete segment. */
export interface SegmentCheck {
  /** The segment file checked. */
  fileName: string;
  /**
   * Where the segment's valid WAL ends: the segment's end when every record in it passed,
   * otherwise the end of the last valid record (or the start of the first invalid one when none
   * before it began in the file).
   */
  validEnd: Lsn;
  /** Why the valid WAL ends before the segment does; `undefined` when all of it is valid. */
  error: WalReaderError | undefined;
  /** The file the failure was found in (the next segment's, when the record ran on into it). */
  errorFile: string | undefined;
}

/** One segment to check, and the next one for the record that may run on into it. */
export interface SegmentCheckRequest {
  /** Timeline of the file name (used in messages). */
  tli: TimelineId;
  /** Segment number. */
  segno: bigint;
  /** File name in the directory. */
  name: string;
  /** Full path. */
  path: string;
  /**
   * The segment's plain bytes, when the file at `path` is archived (compressed, or named with a
   * checksum): validation reads these, and the file's identity still says when it changed.
   */
  data?: Uint8Array;
  /** The next segment's file, if there is one. */
  next?: {
    /** File name in the directory. */
    name: string;
    /** Full path. */
    path: string;
    /** Bytes of it known to be valid and durable, from its start (a tail still growing). */
    bytes: number;
    /** Whether the whole file is complete, so its identity fixes its bytes. */
    complete: boolean;
    /** Its plain bytes, when the file is archived. */
    data?: Uint8Array;
  } | undefined;
  /**
   * Reads the plain bytes of archived files into the request (`data`, `next.data`), called only
   * when validation must run: a remembered result needs no decoding.
   */
  load?: () => Promise<SegmentCheckRequest>;
  /** Called once validation no longer reads `data` and `next.data` (lent bytes). */
  release?: () => void;
}

/** Options of {@linkcode SegmentValidations}. */
export interface SegmentValidationsOptions {
  /** `wal_segment_size`. */
  segmentSize: number;
  /** `XLOG_BLCKSZ`. */
  blockSize: number;
  /** `XLOG_PAGE_MAGIC` of the WAL served. */
  magic: number;
  /** System identifier every long page header must carry. */
  systemId: bigint;
  /** Results remembered; the least recently used go first. Default 4096. */
  capacity?: number;
  /** Bytes per read. Default 1 MiB. */
  chunkSize?: number;
  /** Told once per validation that finds damage. */
  log?: (message: string) => void;
  /**
   * Validate in worker threads (default), so checksumming a segment never holds the event loop
   * that streams WAL to clients; without them (or when they cannot start), in this thread.
   */
  worker?: boolean;
  /**
   * Worker threads validating at once (default 2): validation, checksumming every byte, is the
   * slowest stage of a first pass, and segments validated ahead of a sender are independent.
   */
  workers?: number;
}

interface Entry {
  identity: string;
  promise: Promise<SegmentCheck>;
  /** Set once validation is done; `undefined` when the result does not depend on the next file. */
  next: NextDependency | undefined;
  done: boolean;
}

/**
 * A complete segment's WAL ends early: the message names the file and the LSN in xlogreader's
 * words. The replication layer reports it as `XX001` (`data_corrupted`).
 *
 * @example
 * ```ts
 * import { WalSegmentDamagedError } from "./segment_validation.ts";
 * import assert from "node:assert/strict";
 * const e = new WalSegmentDamagedError("000000010000000000000005", {
 *   lsn: 0x5012345n,
 *   message: "incorrect resource manager data checksum in record at 0/5012345",
 * }, 0x5012345n);
 * assert.equal(
 *   e.message,
 *   'WAL file "000000010000000000000005" is damaged: incorrect resource manager data checksum in record at 0/5012345',
 * );
 * ```
 */
export class WalSegmentDamagedError extends Error {
  /** The damaged file. */
  readonly fileName: string;
  /** Where validation failed, and why. */
  readonly failure: WalReaderError;
  /** End of the valid WAL before the damage: what was served of the file. */
  readonly validEnd: Lsn;

  /**
   * Creates the error for a file and the failure found in it.
   *
   * @param fileName The damaged file.
   * @param failure Where validation failed, and why.
   * @param validEnd End of the valid WAL before the damage.
   */
  constructor(fileName: string, failure: WalReaderError, validEnd: Lsn) {
    super(`WAL file "${fileName}" is damaged: ${failure.message}`);
    this.name = "WalSegmentDamagedError";
    this.fileName = fileName;
    this.failure = failure;
    this.validEnd = validEnd;
  }
}

/**
 * Validation results of complete segments, remembered per file identity and shared by every
 * sender: a segment is read and checked once, concurrent requests for it wait on the same
 * validation, and it is checked again only when the file changes (another inode, size or
 * modification time). Memory is bounded by `capacity` results.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SegmentValidations } from "./segment_validation.ts";
 * import { WalStore } from "./store.ts";
 * const store = await WalStore.open("testdata/wal");
 * const v = new SegmentValidations(store.identity);
 * const name = "000000010000000000000006";
 * const request = { tli: 1, segno: 6n, name, path: store.path(name) };
 * const [a, b] = await Promise.all([v.check(request), v.check(request)]);
 * assert.deepEqual(a, b);
 * assert.equal(a.error, undefined);
 * assert.equal(a.validEnd, 0x700000n);
 * assert.equal(v.runs, 1);
 * ```
 */
export class SegmentValidations {
  readonly #settings: ValidationSettings;
  readonly #capacity: number;
  readonly #log: (message: string) => void;
  readonly #entries = new Map<string, Entry>();
  readonly #workers: ValidationWorker[];
  #runs = 0;

  /**
   * Creates an empty set of results.
   *
   * @param options The WAL's identity, the number of results to keep, where to log damage.
   */
  constructor(options: SegmentValidationsOptions) {
    this.#settings = {
      segmentSize: options.segmentSize,
      blockSize: options.blockSize,
      magic: options.magic,
      systemId: options.systemId,
      chunkSize: options.chunkSize ?? 1 << 20,
    };
    this.#capacity = Math.max(1, options.capacity ?? 4096);
    this.#log = options.log ?? (() => {});
    const useWorker = (options.worker ?? true) && typeof Worker === "function";
    const count = useWorker ? Math.max(1, options.workers ?? 2) : 0;
    this.#workers = Array.from({ length: count }, () => new ValidationWorker(this.#settings));
  }

  /** Validations run so far (a result reused is not counted). */
  get runs(): number {
    return this.#runs;
  }

  /** Results remembered now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The validation result of a complete segment: remembered when the file (and, for a record
   * that runs on into it, the next file) is unchanged, otherwise validated now.
   *
   * @throws {Deno.errors.NotFound} when the segment file is gone (the promise rejects).
   */
  check(request: SegmentCheckRequest): Promise<SegmentCheck> {
    try {
      return this.#check(request);
    } catch (e) {
      // The stats are synchronous; their failures reach the caller as the promise's.
      return Promise.reject(e);
    }
  }

  #check(request: SegmentCheckRequest): Promise<SegmentCheck> {
    // Synchronous, as the stat of the next file below (see `statOrUndefined`).
    const identity = identityOf(Deno.statSync(request.path));
    const entry = this.#entries.get(request.path);
    if (entry && entry.identity === identity && this.#holds(entry, request)) {
      // Most recently used goes last: eviction takes the first.
      this.#entries.delete(request.path);
      this.#entries.set(request.path, entry);
      return entry.promise;
    }
    const fresh: Entry = { identity, promise: undefined!, next: undefined, done: false };
    this.#runs++;
    const run = (request.load ? request.load() : Promise.resolve(request)).then(async (r) => {
      // Functions stay here: the rest of the request crosses to the worker.
      const { release, load: _, ...plain } = r;
      try {
        // The least busy worker; the first when idle, so a second starts only when needed.
        const w = this.#workers.reduce<ValidationWorker | undefined>(
          (a, b) => (a === undefined || b.busy < a.busy ? b : a),
          undefined,
        );
        return await (w?.run(plain) ?? validateSegment(plain, this.#settings));
      } finally {
        release?.();
      }
    });
    fresh.promise = run.then(
      ({ check, next }) => {
        fresh.next = next;
        fresh.done = true;
        if (check.error) {
          this.#log(
            `WAL file "${check.errorFile}" is damaged: ${check.error.message}; ` +
              `valid WAL of segment ${check.fileName} ends at ${formatLsn(check.validEnd)}`,
          );
        }
        return check;
      },
      (e) => {
        if (this.#entries.get(request.path) === fresh) this.#entries.delete(request.path);
        throw e;
      },
    );
    this.#entries.delete(request.path);
    this.#entries.set(request.path, fresh);
    while (this.#entries.size > this.#capacity) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    return fresh.promise;
  }

  /** Whether a remembered result still holds for the next file as it is now. */
  #holds(entry: Entry, request: SegmentCheckRequest): boolean {
    // A validation in progress is shared: it read the files as they are.
    if (!entry.done || entry.next === undefined) return true;
    const dep = entry.next;
    const path = request.next?.path;
    if (dep.kind === "absent") return path === undefined;
    if (path !== dep.path) return false;
    return dependencyKey(dep.kind, statOrUndefined(path)) === dep.key;
  }
}

/** A request handed to the worker, until its answer comes back. */
interface Pending {
  request: SegmentCheckRequest;
  resolve: (outcome: ValidationOutcome) => void;
  reject: (e: unknown) => void;
}

/** What the worker answers. */
type WorkerMessage =
  | { id: number; outcome: ValidationOutcome }
  | { id: number; error: { name: string; message: string } }
  | { bye: true };

/**
 * Validations in a worker thread. The worker ends itself once idle for a while (an idle worker
 * would keep the process alive); a request it never saw goes to the next one. When no worker can
 * run, validation falls back to this thread.
 */
class ValidationWorker {
  readonly #settings: ValidationSettings;
  readonly #pending = new Map<number, Pending>();
  #worker: Worker | undefined;
  #nextId = 1;
  #broken = false;

  constructor(settings: ValidationSettings) {
    this.#settings = settings;
  }

  /** Validations handed to it and not answered yet. */
  get busy(): number {
    return this.#pending.size;
  }

  run(request: SegmentCheckRequest): Promise<ValidationOutcome> {
    if (this.#broken) return validateSegment(request, this.#settings);
    const { promise, resolve, reject } = Promise.withResolvers<ValidationOutcome>();
    const id = this.#nextId++;
    this.#pending.set(id, { request, resolve, reject });
    this.#post(id, request);
    return promise;
  }

  #post(id: number, request: SegmentCheckRequest): void {
    let w = this.#worker;
    if (!w) {
      try {
        w = new Worker(new URL("./_validation_worker.ts", import.meta.url), { type: "module" });
      } catch {
        this.#fallBack(undefined);
        return;
      }
      const worker = w;
      worker.onmessage = (e: MessageEvent<WorkerMessage>) => this.#answer(worker, e.data);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.#fallBack(worker);
      };
      this.#worker = worker;
    }
    w.postMessage({ id, request, settings: this.#settings });
  }

  #answer(worker: Worker, msg: WorkerMessage): void {
    if ("bye" in msg) {
      // Idle and gone: whatever was posted after it said so was never read.
      if (this.#worker === worker) this.#worker = undefined;
      worker.terminate();
      for (const [id, p] of this.#pending) this.#post(id, p.request);
      return;
    }
    const p = this.#pending.get(msg.id);
    if (!p) return;
    this.#pending.delete(msg.id);
    if ("outcome" in msg) {
      p.resolve(msg.outcome);
      return;
    }
    // Errors cross the thread as name and message; the caller tells a file gone by its class.
    const e = msg.error.name === "NotFound"
      ? new Deno.errors.NotFound(msg.error.message)
      : new Error(msg.error.message);
    p.reject(e);
  }

  /** The worker could not start or failed: validate in this thread from now on. */
  #fallBack(worker: Worker | undefined): void {
    this.#broken = true;
    if (worker) {
      if (this.#worker === worker) this.#worker = undefined;
      worker.terminate();
    }
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      validateSegment(p.request, this.#settings).then(p.resolve, p.reject);
    }
  }
}
