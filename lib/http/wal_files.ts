/**
 * `GET /wal/<file>`: WAL segments and timeline history files for `restore_command`, e.g.
 * `restore_command = 'curl -fsS http://relay:9433/wal/%f -o %p'`.
 *
 * PostgreSQL trusts a file its restore_command delivered as a whole segment; so only complete
 * segments that validation passed record by record are ever sent. A `.partial`, the segment the
 * WAL still grows into, and a damaged segment answer with an error and not one byte of WAL. A
 * segment stored compressed (an archive, or relay mode's `--compress`) is read through the store
 * like every other, and sent as its plain bytes.
 *
 * @module
 */

import { ArchiveFormatError } from "../archive/errors.ts";
import { WalFileMissingError } from "../wal/errors.ts";
import { formatLsn } from "../wal/lsn.ts";
import { parseHistory } from "../wal/history.ts";
import type { SegmentCheck } from "../wal/segment_validation.ts";
import { parseWalFileName } from "../wal/segment.ts";
import type { SegmentHandle } from "../wal/segment_handle.ts";
import type { SegmentFile, WalStore } from "../wal/store.ts";
import { readFull } from "../_io.ts";

/** How a `/wal/` request ended, as counted in `/metrics`. */
export type WalFileOutcome =
  | "served"
  | "bad_name"
  | "not_found"
  | "not_complete"
  | "damaged"
  | "error"
  | "denied";

/** Every outcome, in the order `/metrics` lists them. */
export const WAL_FILE_OUTCOMES: readonly WalFileOutcome[] = [
  "served",
  "bad_name",
  "not_found",
  "not_complete",
  "damaged",
  "error",
  "denied",
];

/** What `GET /wal/<name>` may ask for. */
export type WalFileRequest =
  | { kind: "segment"; name: string }
  | { kind: "history"; name: string };

const SEGMENT = /^[0-9A-F]{24}$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;

/**
 * Checks the file name of a `/wal/` request: 24 upper-case hex digits (a segment) or 8 and
 * `.history`, exactly as PostgreSQL writes `%f`. Anything else, `.partial` and every path
 * separator included, is `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseWalFileRequest } from "./wal_files.ts";
 * assert.deepEqual(parseWalFileRequest("000000010000000000000003"), {
 *   kind: "segment",
 *   name: "000000010000000000000003",
 * });
 * assert.equal(parseWalFileRequest("000000010000000000000003.partial"), undefined);
 * assert.equal(parseWalFileRequest("../../etc/passwd"), undefined);
 * ```
 */
export function parseWalFileRequest(name: string): WalFileRequest | undefined {
  if (SEGMENT.test(name)) return { kind: "segment", name };
  if (HISTORY.test(name)) return { kind: "history", name };
  return undefined;
}

/** Bytes read from the file per chunk of the response body. */
const CHUNK = 1 << 20;

/**
 * Answers `/wal/` requests from a store, and counts them by outcome.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WalStore } from "../wal/store.ts";
 * import { WalFiles } from "./wal_files.ts";
 * const store = await WalStore.open("testdata/wal");
 * const files = new WalFiles(() => store);
 * const res = await files.handle("000000010000000000000007", "GET");
 * assert.equal(res.status, 200);
 * assert.equal((await res.bytes()).length, 1 << 20);
 * const partial = await files.handle("000000010000000000000009.partial", "GET");
 * assert.equal(partial.status, 400);
 * await partial.body?.cancel();
 * assert.equal(files.requests.get("served"), 1);
 * ```
 */
export class WalFiles {
  /** Requests so far, by outcome. */
  readonly requests: Map<WalFileOutcome, number> = new Map();
  readonly #store: () => WalStore;
  readonly #signal: AbortSignal | undefined;

  /**
   * A handler over a store.
   *
   * @param store The store to serve from (asked per request: relay mode opens it late).
   * @param signal Aborted when the server stops: bodies still being sent are broken off, so a
   *   client that stopped reading cannot hold the shutdown.
   */
  constructor(store: () => WalStore, signal?: AbortSignal) {
    this.#store = store;
    this.#signal = signal;
  }

  /** Counts a request refused before it got here (authentication, access rules). */
  count(outcome: WalFileOutcome): void {
    this.requests.set(outcome, (this.requests.get(outcome) ?? 0) + 1);
  }

  /**
   * The response to `GET` or `HEAD /wal/<name>`: the file, or 400 for a name that is no WAL
   * file name, 404 for a file the relay does not have (or not complete yet), 500 for a damaged
   * one. Error bodies are one line of text.
   */
  async handle(name: string, method: "GET" | "HEAD"): Promise<Response> {
    const request = parseWalFileRequest(name);
    if (!request) {
      return this.#fail(
        "bad_name",
        400,
        `invalid WAL file name "${name.slice(0, 64)}": expected a segment (24 hex digits) ` +
          `or a timeline history file (8 hex digits and .history)`,
      );
    }
    let store: WalStore;
    try {
      store = this.#store();
    } catch (e) {
      // Relay mode before the upstream's first WAL: nothing to serve yet.
      return this.#fail(
        "not_found",
        404,
        `WAL file "${name}" is not available: ${(e as Error).message}`,
      );
    }
    try {
      return request.kind === "history"
        ? await this.#history(store, request.name, method)
        : await this.#segment(store, request.name, method);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        return this.#fail("not_found", 404, `WAL file "${name}" is not in the relay's directory`);
      }
      if (e instanceof ArchiveFormatError && e.problem !== "encrypted") {
        // Its message names the archived file as stored, and what is wrong with it.
        return this.#fail("damaged", 500, `WAL file "${name}" is damaged: ${e.message}`);
      }
      return this.#fail(
        "error",
        500,
        `could not read WAL file "${name}": ${(e as Error).message}`,
      );
    }
  }

  async #history(store: WalStore, name: string, method: "GET" | "HEAD"): Promise<Response> {
    const tli = parseInt(name.slice(0, 8), 16);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(await store.historyContent(tli));
    } catch (e) {
      if (e instanceof WalFileMissingError) {
        return this.#fail("not_found", 404, `WAL file "${name}" is not in the relay's directory`);
      }
      throw e;
    }
    try {
      // A history file PostgreSQL could not parse would stop its recovery: refuse it here.
      parseHistory(tli, new TextDecoder("utf-8", { fatal: true }).decode(bytes), name);
    } catch (e) {
      return this.#fail("damaged", 500, `WAL file "${name}" is damaged: ${(e as Error).message}`);
    }
    this.count("served");
    return new Response(method === "HEAD" ? null : bytes, {
      headers: fileHeaders(bytes.length),
    });
  }

  async #segment(store: WalStore, name: string, method: "GET" | "HEAD"): Promise<Response> {
    const parsed = parseWalFileName(name, store.identity.segmentSize);
    if (parsed?.kind !== "segment") {
      // Well formed, but no segment of this size can have the name (low part too high).
      return this.#fail("not_found", 404, `WAL file "${name}" is not in the relay's directory`);
    }
    const find = (s: WalStore): SegmentFile | undefined =>
      s.segments(parsed.tli).find((f) => f.segno === parsed.segno);
    let file = find(store);
    if (!file || file.partial) {
      // Perhaps archived since the last scan: look once more before saying no.
      await store.refresh();
      file = find(store);
    }
    if (!file) {
      return this.#fail("not_found", 404, `WAL file "${name}" is not in the relay's directory`);
    }
    if (file.partial) {
      return this.#fail(
        "not_complete",
        404,
        `WAL file "${name}" is not complete: only "${file.name}" is in the relay's directory`,
      );
    }

    // The file may be swapped for its compressed copy while it is validated (the relay's
    // `--compress`): then the name is looked up once more.
    const served = await this.#serve(store, file, name, method) ??
      await store.refresh().then(() => {
        const again = find(store);
        return again && !again.partial ? this.#serve(store, again, name, method) : undefined;
      });
    return served ?? this.#fail(
      "not_complete",
      404,
      `WAL file "${name}" changed while it was being validated`,
    );
  }

  /**
   * Serves a complete segment file through the store: the file itself, or an archived file's
   * decoded bytes, validated before the response starts. `undefined` when the name no longer
   * opens the file that was validated.
   */
  async #serve(
    store: WalStore,
    file: SegmentFile,
    name: string,
    method: "GET" | "HEAD",
  ): Promise<Response | undefined> {
    const segSize = store.identity.segmentSize;
    // An archived file that does not decode to a whole segment throws here, naming the file.
    const f = await store.openSegment(file.name);
    let handed = false;
    try {
      const opened = identity(await statOf(f));
      // The plain size: an archived file's own size says nothing about its decoded bytes.
      const size = await f.seek(0, Deno.SeekMode.End);
      await f.seek(0, Deno.SeekMode.Start);
      let check = size === segSize ? await checkFile(store, file) : undefined;
      if (!check && size === segSize) {
        // Whole, but not yet below the end the store knows: archived since its last scan?
        await store.refresh();
        const again = store.segments(file.tli).find((s) => s.segno === file.segno);
        if (again?.name === file.name) check = await checkFile(store, again);
      }
      if (!check) {
        return this.#fail(
          "not_complete",
          404,
          `WAL file "${name}" is not complete yet: valid WAL ends at ${
            formatLsn(store.endLsn)
          } on timeline ${store.timeline}`,
        );
      }
      if (check.error) {
        const where = check.errorFile === file.name
          ? `WAL file "${name}" is damaged`
          : `WAL file "${name}" ends in a record that runs on into damaged WAL file "${check.errorFile}"`;
        return this.#fail("damaged", 500, `${where}: ${check.error.message}`);
      }
      // Validation looked the file up by its name: serve only if the name still opens this file.
      if (!(await opensSame(store, file.name, opened))) return undefined;
      this.count("served");
      if (method === "HEAD") return new Response(null, { headers: fileHeaders(segSize) });
      handed = true;
      return new Response(segmentBody(f, segSize, opened, name, this.#signal), {
        headers: fileHeaders(segSize),
      });
    } finally {
      if (!handed) f.close();
    }
  }

  #fail(outcome: WalFileOutcome, status: number, message: string): Response {
    this.count(outcome);
    return new Response(message + "\n", {
      status,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  }
}

/**
 * Validates the exact file asked for. The store's own check covers the file it would stream for
 * the segment; where that is another timeline's copy (the segment a timeline switched in), this
 * older timeline's complete file is validated on its own, archived or not.
 */
function checkFile(store: WalStore, file: SegmentFile): Promise<SegmentCheck> | undefined {
  if (store.segmentFile(file.tli, file.segno)?.name === file.name) {
    return store.checkSegment(file.tli, file.segno);
  }
  return store.checkOlderTimelineFile(file);
}

function fileHeaders(length: number): HeadersInit {
  return {
    "content-type": "application/octet-stream",
    "content-length": String(length),
    "cache-control": "no-store",
  };
}

function identity(s: Deno.FileInfo): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtime?.getTime() ?? "-"}`;
}

/** A handle's metadata: an open file's as it is now, decoded bytes' as they were decoded. */
function statOf(f: SegmentHandle): Promise<Deno.FileInfo> | Deno.FileInfo {
  return f instanceof Deno.FsFile ? f.stat() : f.statSync();
}

/** Whether `name` still opens the file (or the archived file's bytes) with identity `opened`. */
async function opensSame(store: WalStore, name: string, opened: string): Promise<boolean> {
  try {
    using again = await store.openSegment(name);
    return identity(await statOf(again)) === opened;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * The body of a validated segment, read a chunk at a time. A file written to while it is sent
 * (a segment recycled under a live `pg_wal`) breaks the response off: the client sees a short
 * transfer and fails, never a file of mixed content. Decoded bytes never change under it.
 */
function segmentBody(
  f: SegmentHandle,
  size: number,
  validated: string,
  name: string,
  signal: AbortSignal | undefined,
): ReadableStream<Uint8Array> {
  let sent = 0;
  let closed = false;
  let onAbort: (() => void) | undefined;
  const close = (): void => {
    if (!closed) {
      closed = true;
      f.close();
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }
  };
  return new ReadableStream<Uint8Array>({
    start(controller): void {
      if (!signal) return;
      onAbort = () => {
        if (closed) return;
        close();
        controller.error(new Error("the server is stopping"));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    },
    async pull(controller): Promise<void> {
      if (closed) return;
      try {
        const buf = new Uint8Array(Math.min(CHUNK, size - sent));
        const n = await readFull(f, buf);
        if (n !== buf.length) throw new Error(`WAL file "${name}" was cut short while sent`);
        if (identity(await statOf(f)) !== validated) {
          throw new Error(`WAL file "${name}" changed while sent`);
        }
        sent += n;
        controller.enqueue(buf);
        if (sent === size) {
          close();
          controller.close();
        }
      } catch (e) {
        close();
        controller.error(e);
      }
    },
    cancel(): void {
      close();
    },
  }, { highWaterMark: 0 });
}
